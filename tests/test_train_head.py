"""Task heads: a logistic regression on a model's pooled hidden states (train.features, train.head, train.run), as
a voter in the line-up, from the command line and from the Tasks page's service; every refusal's message; and the
real SmolLM2 on the support-ticket task against its zero-shot prompt."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from tiny_gguf import write_tiny_llama

from pocketmind import Model
from pocketmind.__main__ import main
from pocketmind.search.embed import Embedder
from pocketmind.task_service import TaskService
from pocketmind.tasks import Task, parse_rows, read_rows
from pocketmind.tasks.compare import Lineup, LineupModel
from pocketmind.train import HeadError
from pocketmind.train.features import FEATURE_KIND, feature_extractor, features
from pocketmind.train.head import MAX_ROWS, Head, Trainer, check_rows, train_head
from pocketmind.train.run import HeadRun, head_voter, split_rows

REPO = Path(__file__).resolve().parents[1]
SHA = "ab" * 32
LABELS = ("red", "green", "blue")
# three classes the tiny random model can tell apart: each text is made of its class's words
WORDS = {"red": ["the", "and", "of", "to"], "green": ["you", "that", "was", "for"],
         "blue": ["with", "his", "they", "at"]}
TASK = {"name": "colours", "instruction": "Which colour?", "output": {"labels": list(LABELS)}}


def blobs(n: int, seed: int, dim: int = 12, labels=LABELS, offset: float = 40.0):
    """Separable synthetic features: one Gaussian blob per label, far from the origin (standardising matters)."""
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(99).normal(0, 2.5, (len(labels), dim))
    y = rng.integers(0, len(labels), n)
    return centers[y] + rng.normal(0, 1, (n, dim)) + offset, [labels[i] for i in y]


def synthetic_csv(n_per_split: dict[str, int], seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "split", "text", "label"])
    i = 0
    for split, n in n_per_split.items():
        for _ in range(n):
            label = LABELS[i % 3]
            words = rng.choice(WORDS[label], size=int(rng.integers(4, 9)))
            writer.writerow([f"x{i}", split, " ".join(words), label])
            i += 1
    return out.getvalue()


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("heads") / "tiny.gguf", "F32", n_ctx=512)


@pytest.fixture(scope="module")
def tiny(native, tiny_path):
    model = Model.from_file(tiny_path, native)
    yield model
    model.close()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- the head on synthetic features ----

def test_separable_features_reach_high_accuracy_and_the_loss_falls():
    X, y = blobs(150, 1)
    Xd, yd = blobs(50, 2)
    Xt, yt = blobs(200, 3)
    trainer = Trainer(X, y, Xd, yd, LABELS, task="t", model_sha256=SHA, seed=0, l2=0.01)
    head = trainer.run()
    accuracy = np.mean([p == g for p, g in zip(head.predict(Xt), yt)])
    assert accuracy >= 0.95, accuracy
    losses = [e.loss for e in trainer.history]
    assert losses[-1] < 0.5 * losses[0]
    assert losses[10] < losses[0] and min(losses) < losses[5]
    assert sum(b > a for a, b in zip(losses, losses[1:])) <= len(losses) // 4  # momentum may overshoot, rarely
    default = train_head(X, y, Xd, yd, LABELS, task="t", model_sha256=SHA)  # the default, stronger L2
    assert np.mean([p == g for p, g in zip(default.predict(Xt), yt)]) >= 0.95
    assert trainer.history[0].epoch == 1 and len(trainer.history) == head.summary["epochs"]
    assert head.summary["dev_accuracy"] >= 0.95
    probs = head.probs(Xt)
    assert probs.shape == (200, 3) and np.allclose(probs.sum(axis=1), 1.0)


def test_run_to_convergence_the_weights_are_scikit_learns_optimum():
    """An independent reference: scikit-learn's multinomial logistic regression (L-BFGS) minimises the same
    objective, C * sum_i s_i CE_i + |W|^2 / 2 = the head's mean weighted CE + l2/2 |W|^2 with C = 1 / (l2 * sum s)."""
    linear_model = pytest.importorskip("sklearn.linear_model")
    X, y = blobs(150, 21, dim=5, offset=3.0)
    X += np.random.default_rng(22).normal(0, 2.0, X.shape)  # overlapping classes: a finite optimum without the L2
    keep = [i for i, label in enumerate(y) if label != "blue" or i % 3 == 0]  # unbalanced: the class weights matter
    X, y = X[keep], [y[i] for i in keep]
    l2 = 0.05
    trainer = Trainer(X, y, X[:10], y[:10], LABELS, task="t", model_sha256=SHA, l2=l2, max_epochs=5000,
                      patience=5000)
    trainer.run()
    W, b = trainer.final
    ref = linear_model.LogisticRegression(C=1.0 / (l2 * trainer.w.sum()), tol=1e-12, max_iter=100_000)
    ref.fit(trainer.Z, trainer.y, sample_weight=trainer.w)
    assert list(ref.classes_) == [0, 1, 2]
    assert np.allclose(W.T, ref.coef_, atol=1e-4), np.abs(W.T - ref.coef_).max()
    ours = np.exp(trainer.Z @ W + b)
    ours /= ours.sum(axis=1, keepdims=True)
    assert np.allclose(ours, ref.predict_proba(trainer.Z), atol=1e-5)


def test_the_same_seed_gives_identical_weights_and_another_seed_does_not():
    X, y = blobs(90, 4)
    Xd, yd = blobs(30, 5)
    a = train_head(X, y, Xd, yd, LABELS, task="t", model_sha256=SHA, seed=7)
    b = train_head(X, y, Xd, yd, LABELS, task="t", model_sha256=SHA, seed=7)
    c = train_head(X, y, Xd, yd, LABELS, task="t", model_sha256=SHA, seed=8)
    assert np.array_equal(a.weights, b.weights) and np.array_equal(a.bias, b.bias)
    assert a.summary == b.summary
    assert not np.array_equal(a.weights, c.weights)


def test_progress_is_called_once_per_epoch_with_loss_and_dev_accuracy():
    X, y = blobs(60, 6)
    Xd, yd = blobs(20, 7)
    seen = []
    head = train_head(X, y, Xd, yd, LABELS, progress=seen.append, task="t", model_sha256=SHA, max_epochs=25,
                      patience=25)
    assert [e.epoch for e in seen] == list(range(1, 26)) and head.summary["epochs"] == 25
    assert all(np.isfinite(e.loss) and 0 <= e.dev_accuracy <= 1 for e in seen)
    assert not head.summary["stopped_early"]


def test_early_stopping_keeps_the_best_dev_epoch():
    # noisy, overlapping classes with no L2: the dev loss turns up while the training loss keeps falling
    rng = np.random.default_rng(0)
    X, Xd = rng.normal(size=(40, 30)), rng.normal(size=(40, 30))
    y, yd = [LABELS[i % 3] for i in range(40)], [LABELS[i % 3] for i in range(40)]
    trainer = Trainer(X, y, Xd, yd, LABELS, task="t", model_sha256=SHA, l2=0.0, patience=10, max_epochs=2000)
    head = trainer.run()
    best = head.summary["best_epoch"]
    assert head.summary["stopped_early"] and head.summary["epochs"] == best + 10
    assert trainer.history[best - 1].dev_loss == min(e.dev_loss for e in trainer.history)
    assert head.summary["dev_loss"] == trainer.history[best - 1].dev_loss


def test_balanced_class_weights_count_a_rare_label_as_much_as_a_common_one():
    X, y = blobs(200, 8)
    keep = [i for i, label in enumerate(y) if label != "blue" or i % 10 == 0]  # blue: about a tenth of the others
    X, y = X[keep], [y[i] for i in keep]
    Xd, yd = blobs(30, 9)
    head = train_head(X, y, Xd, yd, LABELS, task="t", model_sha256=SHA)
    counts = {label: y.count(label) for label in LABELS}
    for label in LABELS:
        assert head.summary["class_weights"][label] == pytest.approx(len(y) / (3 * counts[label]))
    assert sum(head.summary["class_weights"][label] * counts[label] for label in LABELS) == pytest.approx(len(y))


def test_standardisation_is_stored_and_constant_dimensions_are_harmless():
    X, y = blobs(60, 10)
    X[:, 3] = 5.0  # constant: std 0 would divide by zero
    Xd, yd = blobs(20, 11)
    head = train_head(X, y, Xd, yd, LABELS, task="t", model_sha256=SHA)
    assert np.allclose(head.mean, X.mean(axis=0)) and head.std[3] == 1.0
    assert np.all(np.isfinite(head.probs(Xd)))


# ---- saving and loading ----

def small_head(**kw) -> Head:
    X, y = blobs(40, 12, dim=6)
    Xd, yd = blobs(12, 13, dim=6)
    return train_head(X, y, Xd, yd, LABELS, task="colours", model_sha256=SHA, model_name="tiny", **kw)


def test_a_head_round_trips_through_json_and_a_file(tmp_path):
    head = small_head()
    back = Head.from_json(head.to_json())
    for key in ("weights", "bias", "mean", "std"):
        assert np.array_equal(getattr(back, key), getattr(head, key))
    assert (back.task, back.labels, back.model_sha256, back.model_name, back.feature_kind, back.summary) == \
           (head.task, head.labels, head.model_sha256, head.model_name, head.feature_kind, head.summary)
    path = head.save(tmp_path / "head.json")
    loaded = Head.load(path)
    assert np.array_equal(loaded.weights, head.weights) and loaded.labels == LABELS
    doc = json.loads(path.read_text())
    assert doc["format"] == "pocketmind-head" and doc["version"] == 1 and doc["dim"] == 6
    assert doc["feature_kind"] == FEATURE_KIND and doc["training"]["seed"] == 0
    assert path.stat().st_size < 10_000
    assert not list(tmp_path.glob(".*partial"))


def damaged(change) -> str:
    doc = json.loads(small_head().to_json())
    change(doc)
    return json.dumps(doc)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format="pocketmind-index"), "not a pocketmind head"),
    (lambda d: d.update(version=2), "a version-2 head; this version of pocketmind reads version 1"),
    (lambda d: d.pop("weights"), "the head has no 'weights'"),
    (lambda d: d.update(dim=7), "'weights' has shape [6, 3]; the head says dim 7 and 3 labels, so [7, 3]"),
    (lambda d: d["weights"][0].pop(), "'weights' must be numbers"),
    (lambda d: d.update(bias=[0.0, 0.0]), "'bias' has shape [2], not [3]"),
    (lambda d: d.update(mean=d["mean"][:5]), "'mean' has shape [5], not [6]"),
    (lambda d: d.update(labels=["red", "green"]), "'weights' has shape [6, 3]; 2 labels need [dim, 2]"),
    (lambda d: d.update(labels=["red", "red", "blue"]), "at least 2 distinct non-empty strings"),
    (lambda d: d.update(model_sha256="abc"), "'model_sha256' must be 64 lowercase hex digits"),
    (lambda d: d.update(feature_kind="logits"), "the features are 'logits'"),
    (lambda d: d["std"].__setitem__(0, 0.0), "'std' must be positive in every dimension"),
    (lambda d: d["bias"].__setitem__(1, "x"), "'bias' must be numbers"),
])
def test_a_damaged_head_is_refused_by_name(change, message):
    with pytest.raises(HeadError) as e:
        Head.from_json(damaged(change), "h.json")
    assert str(e.value).startswith("h.json: ") and message in str(e.value)


def test_non_finite_numbers_are_refused():
    text = small_head().to_json().replace('"bias": [', '"bias": [NaN, ', 1)
    doc = json.loads(text)
    doc["bias"] = doc["bias"][:3]
    with pytest.raises(HeadError, match="'bias' holds a number that is not finite"):
        Head.from_json(json.dumps(doc))
    with pytest.raises(HeadError, match="not JSON"):
        Head.from_json("{")
    with pytest.raises(HeadError, match="cannot read the head"):
        Head.load(Path("/nonexistent/head.json"))


def test_a_head_for_another_model_or_label_set_is_refused():
    head = small_head()
    head.check(model_sha256=SHA, labels=LABELS, dim=6)  # its own: fine
    with pytest.raises(HeadError, match=r"trained on the features of another model \(tiny, sha256 abababababab…\), "
                                        r"not this one \(sha256 cdcdcdcdcdcd…\)"):
        head.check(model_sha256="cd" * 32)
    with pytest.raises(HeadError, match=r"this head's labels are \['red', 'green', 'blue'\]; the task's are "
                                        r"\['red', 'blue', 'green'\]"):
        head.check(labels=["red", "blue", "green"])
    with pytest.raises(HeadError, match="this head takes features of size 6; the model gives 64"):
        head.check(dim=64)
    with pytest.raises(HeadError, match=r"the features have shape \[2, 5\]; this head takes 6 per text"):
        head.probs(np.zeros((2, 5)))


# ---- bad training input ----

def test_bad_training_rows_are_refused_with_what_is_wrong():
    X, y = blobs(20, 14)
    Xd, yd = blobs(8, 15)
    with pytest.raises(HeadError, match="row 3 has no label: every training row needs one of"):
        check_rows(5, ["red", "blue", "", "red", "blue"], LABELS)
    with pytest.raises(HeadError, match="row 2 has no label"):
        check_rows(5, ["red", None, "green", "red", "blue"], LABELS)
    with pytest.raises(HeadError, match="row 1 has the label 'pink', which is not one of"):
        check_rows(5, ["pink", "red", "green", "red", "blue"], LABELS)
    with pytest.raises(HeadError, match="every training row has the label 'red': a head needs examples of at least "
                                        "two labels"):
        train_head(X, ["red"] * 20, Xd, ["red"] * 8, LABELS, task="t", model_sha256=SHA)
    with pytest.raises(HeadError, match="a head needs at least 4 labelled rows to train and stop on; got 1"):
        train_head(X[:1], y[:1], Xd[:0], [], LABELS, task="t", model_sha256=SHA)
    with pytest.raises(HeadError, match="needs training rows and dev rows to stop on; got 20 and 0"):
        train_head(X, y, Xd[:0], [], LABELS, task="t", model_sha256=SHA)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(HeadError, match="not finite"):
        train_head(bad, y, Xd, yd, LABELS, task="t", model_sha256=SHA)
    for option, message in [({"seed": -1}, "the seed must be a non-negative integer"),
                            ({"seed": "1"}, "the seed must be a non-negative integer"),
                            ({"l2": -1.0}, "l2 must be a number >= 0"), ({"l2": float("nan")}, "l2 must be"),
                            ({"max_epochs": 0}, "max_epochs must be an integer from 1 to 5000"),
                            ({"patience": 10**6}, "patience must be an integer from 1 to 5000")]:
        with pytest.raises(HeadError) as e:
            train_head(X, y, Xd, yd, LABELS, task="t", model_sha256=SHA, **option)
        assert message in str(e.value)


class CountingEmbedder:
    """Stands in for the feature extractor: counts the texts it is asked to embed (there must be none)."""

    normalize = False
    dim = 8

    def __init__(self):
        self.texts = 0

    def embed(self, texts, progress=None):
        self.texts += len(texts)
        return np.zeros((len(texts), self.dim), dtype=np.float32)


def rows_of(text: str):
    return parse_rows(text.encode(), labels=LABELS)


def test_bad_data_is_refused_before_any_feature_is_computed():
    task = Task.load(TASK)
    embedder = CountingEmbedder()
    one_class = "id,split,text,label\n" + "".join(f"x{i},dev,some text,red\n" for i in range(10))
    with pytest.raises(HeadError, match="every training row has the label 'red'"):
        HeadRun(task, rows_of(one_class), embedder, SHA)
    with pytest.raises(HeadError, match="at least 4 labelled rows .* got 1"):
        HeadRun(task, rows_of("id,split,text,label\nx1,dev,a text,red\n"), embedder, SHA)
    # rows without a label (read with no label set): named by their row number in the file
    unlabelled = parse_rows(b"id,split,text,label\nx1,test,a,red\nx2,dev,b,red\nx3,dev,c,\nx4,dev,d,blue\n")
    with pytest.raises(HeadError, match="row 3 has no label: every training row needs one of"):
        HeadRun(task, unlabelled, embedder, SHA)
    # a label missing from some rows: parse_rows names the row (the label '' is not in the set)
    with pytest.raises(ValueError, match=r"row 2 \(line 3\) has the label '', which is not one of: red, green, blue"):
        rows_of("id,split,text,label\nx1,dev,a,red\nx2,dev,b,\nx3,dev,c,blue\n")
    # 100 000 rows: refused by the constructor, before a single text is embedded (that starts when iterating)
    many = "id,split,text,label\n" + "".join(f"x{i},dev,text {i},{LABELS[i % 3]}\n" for i in range(100_000))
    rows = rows_of(many)
    with pytest.raises(HeadError, match=f"100000 labelled rows: a head trains on at most {MAX_ROWS}"):
        HeadRun(task, rows, embedder, SHA)
    with pytest.raises(HeadError, match="the seed must be a non-negative integer"):
        HeadRun(task, rows_of(synthetic_csv({"dev": 12})), embedder, SHA, seed="x")
    assert embedder.texts == 0
    with pytest.raises(HeadError, match="a head needs a task with labels"):
        HeadRun(Task.load({"name": "j", "instruction": "x", "output": {"json_schema": {"type": "string"}}}),
                rows_of(synthetic_csv({"dev": 12})), embedder, SHA)


def test_feature_steps_go_a_decode_batch_at_a_time_and_equal_the_features_in_one_go(tiny):
    from pocketmind.train.features import feature_extractor, feature_steps, features

    texts = [f"text number {i} " * (1 + i % 7) for i in range(40)]
    with feature_extractor(tiny, max_tokens=64) as embedder:
        out = np.full((40, tiny.n_embd), np.nan, dtype=np.float32)
        steps = list(feature_steps(embedder, texts, out))
        assert steps == list(np.cumsum([len(b) for b in embedder.batches(texts)])) and len(steps) > 2
        assert np.array_equal(out, features(embedder, texts))  # the same batches: the same bits


def test_split_rows_is_stratified_seeded_and_keeps_test_rows_apart():
    rows = rows_of(synthetic_csv({"dev": 40, "test": 30}))
    train, dev, test = split_rows(rows, seed=3)
    assert [r.split for r in test] == ["test"] * 30 and len(train) + len(dev) == 40
    assert sorted(r.number for r in train + dev) == [r.number for r in rows if r.split == "dev"]
    for label in LABELS:  # a quarter of each label's rows stop training
        n = sum(r.label == label for r in rows if r.split == "dev")
        assert sum(r.label == label for r in dev) == round(0.25 * n)
    assert split_rows(rows, seed=3) == (train, dev, test)
    assert split_rows(rows, seed=4)[1] != dev
    explicit = rows_of(synthetic_csv({"train": 20, "dev": 9, "test": 6}))
    train, dev, test = split_rows(explicit, seed=0)
    assert {r.split for r in train} == {"train"} and {r.split for r in dev} == {"dev"} and len(test) == 6


# ---- with a model: features, the run, the voter ----

def test_features_are_the_unnormalised_pooled_states_of_the_search_embedder(tiny):
    texts = ["the and of", "you that was for"]
    with feature_extractor(tiny) as fx, Embedder(tiny) as unit:
        X = features(fx, texts)
        U = unit.embed(texts)
    assert X.shape == (2, tiny.n_embd) and X.dtype == np.float32
    norms = np.linalg.norm(X, axis=1)
    assert not np.allclose(norms, 1.0)
    assert np.allclose(X / norms[:, None], U, atol=1e-6)  # the same vectors, only not scaled to unit length


def test_a_head_on_the_tiny_model_learns_a_separable_task(tiny):
    task = Task.load(TASK)
    rows = rows_of(synthetic_csv({"dev": 60, "test": 45}))
    events = []
    with feature_extractor(tiny) as fx:
        run = HeadRun(task, rows, fx, SHA, "tiny", seed=1)
        events = list(run)
        again = HeadRun(task, rows, fx, SHA, "tiny", seed=1)
        list(again)
    progress = [e for e in events if e["type"] == "progress"]
    epochs = [e for e in events if e["type"] == "epoch"]
    assert progress[-1] == {"type": "progress", "phase": "features", "done": 105, "total": 105}
    assert len(epochs) == run.head.summary["epochs"] and epochs[-1]["loss"] < epochs[0]["loss"]
    assert run.accuracy["test"] >= 0.9 and run.accuracy["dev"] >= 0.9, run.accuracy
    assert np.array_equal(run.head.weights, again.head.weights)
    result = run.result()
    assert result["n"] == {"train": 45, "dev": 15, "test": 45} and result["training"]["test_accuracy"] == \
        run.accuracy["test"]
    assert "test      45" in run.table()


def test_the_head_votes_in_the_line_up_with_ensembles_and_the_cascade(tiny):
    task = Task.load(TASK)
    rows = rows_of(synthetic_csv({"dev": 45, "test": 24}))
    ctx = tiny.context(n_ctx=512)
    with feature_extractor(tiny) as fx:
        run = HeadRun(task, rows, fx, SHA, "tiny")
        list(run)
        voter = head_voter(run.head, fx, SHA, "tiny head", cost=lambda n, s: n * tiny.n_params)
        vote = voter("the and of the")
        assert vote.label == "red" and len(vote.probs) == 3 and vote.n_tokens > 0
        lineup = Lineup(task, [("tiny", ctx)])
        lineup.add_voter(voter, LineupModel("tiny", tiny.n_params, tiny.size))
        dev = [r for r in rows if r.split == "dev"]
        test = [r for r in rows if r.split == "test"]
        lineup.fit(dev)
        evaluation = lineup.evaluation(test)
        list(evaluation)
        summary = lineup.summary(evaluation.report, test)
    names = [s["name"] for s in summary["setups"]]
    assert names == ["tiny 0-shot", "tiny head", "ensemble majority", "ensemble mean", "ensemble weighted",
                     "cascade"]
    assert summary["fitted"]["cascade"]["voters"] == ["tiny head", "tiny 0-shot"]  # the head first: no prompt
    by_name = {s["name"]: s for s in summary["setups"]}
    assert by_name["tiny head"]["accuracy"] >= 0.9 and by_name["tiny head"]["models"] == ["tiny"]
    assert by_name["tiny head"]["cost_per_item"] < by_name["tiny 0-shot"]["cost_per_item"]
    assert summary["fitted"]["ensemble weighted"]["weights"][1] > summary["fitted"]["ensemble weighted"]["weights"][0]
    assert len(summary["models"]) == 1
    assert "tiny head" not in json.dumps(lineup.answers([test[0].text]))  # a head is not a prompt's answer
    with pytest.raises(ValueError, match="add voters before fitting"):
        lineup.add_voter(voter, LineupModel("tiny", 1, 1))
    with pytest.raises(HeadError, match="another model"):
        head_voter(run.head, fx, "cd" * 32)
    ctx.close()


def test_a_head_of_another_label_set_cannot_join_the_line_up(tiny):
    task = Task.load({**TASK, "output": {"labels": ["red", "green"]}})
    ctx = tiny.context(n_ctx=512)
    voter = head_voter(small_head(), CountingEmbedderLike(6), SHA, "h")
    lineup = Lineup(task, [("tiny", ctx)])
    with pytest.raises(ValueError, match=r"voter 'h' has labels \['red', 'green', 'blue'\]; the task's are "
                                         r"\['red', 'green'\]"):
        lineup.add_voter(voter, LineupModel("tiny", 1, 1))
    ctx.close()


class CountingEmbedderLike(CountingEmbedder):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim


# ---- command line ----

def test_the_command_line_trains_reports_and_saves_a_head(tiny_path, tmp_path, capsys):
    task_file = tmp_path / "task.json"
    task_file.write_text(json.dumps(TASK))
    data = tmp_path / "data.csv"
    data.write_text(synthetic_csv({"dev": 45, "test": 30}))
    out = tmp_path / "head.json"
    assert main(["train-head", str(task_file), str(data), "--model", str(tiny_path), "--seed", "2", "--out", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert lines[0].split() == ["split", "rows", "accuracy", "macro-F1"]
    test_line = next(line for line in lines if line.startswith("test"))
    assert float(test_line.split()[2]) >= 0.9, printed
    assert "features" in printed and "epochs" in printed and f"wrote {out}" in printed
    head = Head.load(out)
    assert head.model_sha256 == sha256_of(tiny_path) and head.labels == LABELS and head.summary["seed"] == 2
    assert head.model_name == "tiny" and head.summary["test_accuracy"] >= 0.9

    assert main(["train-head", str(task_file), str(data), "--model", str(tiny_path), "--json", "--no-progress",
                 "--max-epochs", "5"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["training"]["epochs"] == 5 and result["n"]["test"] == 30

    one = tmp_path / "one.csv"
    one.write_text("id,split,text,label\nx1,dev,the and,red\n")
    assert main(["train-head", str(task_file), str(one), "--model", str(tiny_path), "--no-progress"]) == 2
    assert "error: a head needs at least 4 labelled rows" in capsys.readouterr().err


# ---- the page's service ----

@pytest.fixture
def service(native, tiny_path):
    service = TaskService(n_ctx=512)
    service.add_model(Model.from_file(tiny_path, native), "tiny", sha256=sha256_of(tiny_path))
    service.load_task(json.dumps(TASK))
    yield service
    service.close()


def events_of(service) -> list[dict]:
    out = []
    while (event := service.step()) is not None:
        out.append(json.loads(event))
    return out


def test_the_service_trains_exports_imports_and_evaluates_with_a_head(service, native, tiny_path):
    data = synthetic_csv({"dev": 45, "test": 24})
    service.start_train_head(json.dumps({"csv": data, "seed": 1, "name": "h"}))
    events = events_of(service)
    assert events[0]["type"] == "progress" and events[0]["phase"] == "features"
    epochs = [e for e in events if e["type"] == "epoch"]
    assert epochs and set(epochs[0]) == {"type", "epoch", "loss", "train_accuracy", "dev_loss", "dev_accuracy"}
    done = events[-1]
    assert done["type"] == "done" and done["head"] == "h" and not done["stopped"]
    assert done["accuracy"]["test"] >= 0.9 and done["n"] == {"train": 33, "dev": 12, "test": 24}
    assert done["training"]["epochs"] == len(epochs)

    exported = service.export_head("h")
    assert Head.from_json(exported).model_sha256 == sha256_of(tiny_path)
    info = json.loads(service.import_head(exported, "again"))
    assert info["model"] == "tiny" and info["labels"] == list(LABELS) and info["dim"] == 64
    assert np.array_equal(service.heads["again"].weights, service.heads["h"].weights)

    service.start_eval(json.dumps({"csv": data, "heads": ["h"]}))
    summary = events_of(service)[-1]
    names = [s["name"] for s in summary["setups"]]
    assert "h" in names and "cascade" in names
    assert {s["name"]: s for s in summary["setups"]}["h"]["accuracy"] >= 0.9


def test_the_service_refuses_heads_it_cannot_use(service, native, tmp_path):
    data = synthetic_csv({"dev": 45, "test": 6})
    other = Head.from_json(small_head().to_json())
    with pytest.raises(HeadError, match=r"trained on the features of model tiny \(sha256 abababababab…\), which is "
                                        "not loaded"):
        service.import_head(other.to_json())
    service.start_train_head(json.dumps({"csv": data, "name": "h", "max_epochs": 3}))
    events_of(service)
    service.load_task(json.dumps({**TASK, "output": {"labels": ["blue", "green", "red"]}}))
    with pytest.raises(HeadError, match="this head's labels are"):
        service.import_head(service.export_head("h"))
    with pytest.raises(HeadError, match="this head's labels are"):
        service.start_eval(json.dumps({"csv": data, "heads": ["h"]}))
    with pytest.raises(ValueError, match="no head named 'nope'; the heads are: 'h'"):
        service.export_head("nope")
    with pytest.raises(HeadError, match="the seed must be a non-negative integer"):
        service.start_train_head(json.dumps({"csv": data, "seed": -2}))
    with pytest.raises(HeadError, match="unknown key.s. in the request: learning_rate; the keys are: csv, file"):
        service.start_train_head(json.dumps({"csv": data, "learning_rate": 2}))
    unknown = TaskService(n_ctx=512)
    try:
        unknown.add_model(Model.from_file(write_tiny_llama(tmp_path / "other.gguf", "F32", n_ctx=512, seed=5),
                                          native), "m")  # loaded without its sha256
        unknown.load_task(json.dumps(TASK))
        with pytest.raises(HeadError, match="the sha256 of model 'm' is unknown"):
            unknown.start_train_head(json.dumps({"csv": data}))
    finally:
        unknown.close()


def test_a_stop_while_computing_features_keeps_no_head_and_while_training_keeps_the_best(service):
    data = synthetic_csv({"dev": 150, "test": 6})  # more rows than one decode batch takes (64 texts at most)
    service.start_train_head(json.dumps({"csv": data, "name": "h"}))
    first = json.loads(service.step())
    assert first["phase"] == "features" and first["done"] < first["total"]
    service.stop()
    rest = events_of(service)
    assert rest[-1]["type"] == "done" and rest[-1]["stopped"] and rest[-1]["head"] is None
    assert "h" not in service.heads
    service.start_train_head(json.dumps({"csv": data, "name": "h", "patience": 5000, "max_epochs": 5000}))
    while json.loads(service.step())["type"] != "epoch":
        pass
    service.stop()
    rest = events_of(service)
    assert rest[-1]["stopped"] and rest[-1]["head"] == "h" and rest[-1]["training"]["epochs"] <= 2
    assert "h" in service.heads


# ---- the real models ----

@pytest.mark.parametrize("which, dim", [("smollm2", 576), ("gemma3", 640), ("minilm", 384)])
def test_real_models_give_finite_features_of_their_width(native, request, which, dim):
    import deps

    path = deps.minilm_gguf("Q8_0") if which == "minilm" else request.getfixturevalue(which)
    model = Model.from_file(path, native)
    try:
        with feature_extractor(model) as fx:
            X = features(fx, ["My parcel never arrived.", "I was charged twice.", "The app crashes on start."])
    finally:
        model.close()
    assert X.shape == (3, dim) and np.all(np.isfinite(X))
    assert len({round(float(n), 3) for n in np.linalg.norm(X, axis=1)}) == 3  # as the model gives them, not unit
    assert np.min(np.linalg.norm(X[:, None] - X[None], axis=2) + np.eye(3)) > 0  # three different texts



def test_smollm2_head_on_support_tickets_beats_its_zero_shot_prompt(native, smollm2):
    """The measured figures are printed (pytest -s); only a floor is asserted: far above chance (20 %) and the
    zero-shot prompt's 30 % on this split (docs/task_accuracy.md)."""
    task = Task.load(REPO / "data" / "tasks" / "support_tickets.json")
    rows = read_rows(task.data, labels=task.labels)
    model = Model.from_file(smollm2, native)
    try:
        with feature_extractor(model) as fx:
            run = HeadRun(task, rows, fx, sha256_of(smollm2), "SmolLM2", seed=0)
            list(run)
            test = [r for r in rows if r.split == "test"][:20]
            predicted = run.head.predict(features(fx, [r.text for r in test]))
            head_on_those = np.mean([p == r.label for p, r in zip(predicted, test)])
        ctx = model.context(n_ctx=1024)
        t = time.perf_counter()
        zero_shot = np.mean([task.run(ctx, r.text).label == r.label for r in test])
        zero_seconds = time.perf_counter() - t
    finally:
        model.close()
    print(f"\nSmolLM2 head, support_tickets: train {run.accuracy['train']:.3f}, dev {run.accuracy['dev']:.3f}, "
          f"test {run.accuracy['test']:.3f} ({len(run.test)} rows); features {run.seconds['features']:.1f} s for "
          f"{len(rows)} texts, training {run.seconds['training']:.2f} s ({run.head.summary['epochs']} epochs); "
          f"on the first {len(test)} test rows: head {head_on_those:.3f}, zero-shot prompt {zero_shot:.3f} "
          f"({zero_seconds:.1f} s)")
    assert run.accuracy["test"] >= 0.5


def test_every_subpackage_ships_in_the_wheel_the_pages_run():
    """pocketmind.train (this file's subject) was nearly left out of the wheel: the pages' worker imports it."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO / "py").parts) for p in (REPO / "py").rglob("__init__.py")}
    assert found == listed
