"""Fine-tuning (C API pm_trainer_*, engine.Trainer, train.finetune, `python -m pocketmind finetune`) on tiny
random-weight models: the loss falls, the written and quantized model is the trained one, native and wasm train
alike, and every refusal says what to do."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from test_train_head import LABELS, TASK, synthetic_csv
from tiny_gguf import write_tiny_llama

from pocketmind import Model
from pocketmind.__main__ import main
from pocketmind.engine import PocketmindError, convert_model
from pocketmind.tasks import Task, parse_rows
from pocketmind.train import HeadError
from pocketmind.train.finetune import (Example, FinetuneError, FinetuneRun, check_options, example_tokens,
                                      windows)

N_CTX = 256


def rows_csv(n_per_split: dict[str, int], seed: int = 0) -> str:
    return synthetic_csv(n_per_split, seed)  # three labels of separable words: see test_train_head.py


def rows(n_per_split: dict[str, int]):
    return parse_rows(rows_csv(n_per_split).encode(), "text", "label", LABELS)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A tiny Q8_0 model: quantized, as the models people fine-tune are."""
    return write_tiny_llama(tmp_path_factory.mktemp("finetune") / "tiny-q8.gguf", "Q8_0", n_ctx=512)


@pytest.fixture
def trainable(native, source, tmp_path):
    f32 = tmp_path / "tiny.f32.gguf"
    convert_model(source, f32, "F32", 1, native)
    model = Model.trainable(f32, native)
    yield model
    model.close()


def window(model: Model, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, model.n_vocab, N_CTX + 1).astype(np.int32)


def greedy(ctx, tokens, n: int = 16) -> list[int]:
    ctx.kv_clear()
    ctx.decode(list(tokens))
    out = []
    for _ in range(n):
        token = int(np.argmax(ctx.logits()))
        out.append(token)
        ctx.decode([token])
    return out


# ---- the C API through engine.Trainer ----

def test_the_loss_falls_over_a_few_steps(trainable):
    w = window(trainable)
    with trainable.trainer(N_CTX, n_layers=1) as trainer:
        assert trainer.n_params > 0
        before = trainer.step(w, train=False)
        losses = [trainer.step(w, lr=1e-2) for _ in range(6)]
        after = trainer.step(w, train=False)
    assert losses[0] == pytest.approx(before, abs=1e-6)  # a step reports the loss before its update
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert after < 0.8 * before, (before, after)


def step_from_the_start(model: Model, w: np.ndarray, counted: np.ndarray, probe: np.ndarray) -> float:
    """One AdamW step from the model's weights as they are, the loss on `probe` after it, and the weights put back."""
    with model.trainer(N_CTX, n_layers=2) as trainer:
        trainer.checkpoint()
        trainer.step(w, lr=1e-2, counted=counted)
        after = trainer.step(probe, train=False)
        trainer.restore()
    return after


def test_uncounted_predictions_add_neither_loss_nor_gradient(trainable):
    """Counted: only the prediction at position k. A second window differs from the first only after k + 1: the
    loss and the step's gradient must not see it (causal attention: position k reads only tokens up to k). Before
    our patch llama.cpp would mislabel the rows it was given -1 for, and ggml's cross-entropy backward gave a row of
    zero labels the gradient softmax - 0 (it assumed every row sums to 1): built without that half of the patch, this
    test failed here with losses after the step of 6.5535 and 6.5524."""
    k = 100
    w = window(trainable, seed=1)
    other = w.copy()
    other[k + 2:] = window(trainable, seed=2)[k + 2:]
    counted = np.zeros(N_CTX, dtype=bool)
    counted[k] = True
    with trainable.trainer(N_CTX, n_layers=2) as trainer:
        loss = trainer.step(w, train=False, counted=counted)
        assert trainer.step(other, train=False, counted=counted) == loss
    probe = window(trainable, seed=3)
    after = step_from_the_start(trainable, w, counted, probe)
    after_other = step_from_the_start(trainable, other, counted, probe)
    assert after == pytest.approx(after_other, abs=1e-6)
    # ... and the step did move the weights, so equal losses after it mean something
    assert step_from_the_start(trainable, w, None, probe) != pytest.approx(after, abs=1e-3)
    # the loss is the one prediction's cross-entropy, as inference computes it
    with trainable.context(n_ctx=N_CTX) as ctx:
        ctx.decode(w[:k + 1].tolist())
        logits = ctx.logits().astype(np.float64)
    expected = np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[w[k + 1]]
    assert loss == pytest.approx(expected, abs=1e-3)


def test_a_window_with_nothing_counted_is_refused(trainable):
    with trainable.trainer(N_CTX, n_layers=1) as trainer:
        with pytest.raises(PocketmindError, match="no token of the window is counted"):
            trainer.step(window(trainable), counted=np.zeros(N_CTX, dtype=bool))
        with pytest.raises(ValueError, match="one prediction per token read"):
            trainer.step(window(trainable), counted=np.ones(N_CTX + 1, dtype=bool))


def test_only_the_last_blocks_train(trainable):
    with trainable.trainer(N_CTX, n_layers=1) as one, trainable.trainer(N_CTX, n_layers=2) as two:
        # each block of the tiny llama has the same tensors; the output norm trains in both
        norm = trainable.n_embd
        assert two.n_params - norm == 2 * (one.n_params - norm)


def test_a_checkpoint_is_restored_exactly(trainable):
    w = window(trainable)
    with trainable.trainer(N_CTX, n_layers=2) as trainer:
        trainer.step(w, lr=1e-2)
        trainer.checkpoint()
        kept = trainer.step(w, train=False)
        for _ in range(3):
            trainer.step(w, lr=1e-2)
        assert trainer.step(w, train=False) != kept
        trainer.restore()
        assert trainer.step(w, train=False) == kept


def test_the_written_model_is_the_trained_one_and_its_quantized_copy_answers_alike(native, trainable, tmp_path):
    w = window(trainable)
    prompt = w[:40].tolist()
    with trainable.trainer(N_CTX, n_layers=2) as trainer:
        for _ in range(8):
            trainer.step(w, lr=1e-2)
        trainer.write(trainable.source)
    convert_model(trainable.source, tmp_path / "trained-q8.gguf", "Q8_0", 1, native)
    with trainable.context(n_ctx=128, kv_f32=True) as ctx:
        ctx.decode(prompt)
        trained_logits = ctx.logits().copy()
        trained = greedy(ctx, prompt)
    with Model.from_file(trainable.source, native) as again, again.context(n_ctx=128, kv_f32=True) as ctx:
        ctx.decode(prompt)
        assert np.array_equal(ctx.logits(), trained_logits)  # the F32 file holds exactly the trained weights
    with trainable.context(n_ctx=128, kv_f32=True) as ctx:
        ctx.decode(prompt + trained, all_logits=True)  # the trained model's own greedy answer, teacher-forced
        expected = np.stack([ctx.logits(i).copy() for i in range(len(prompt) - 1, len(prompt) + len(trained))])
    with Model.from_file(tmp_path / "trained-q8.gguf", native) as q8, q8.context(n_ctx=128, kv_f32=True) as ctx:
        ctx.decode(prompt + trained, all_logits=True)
        got = np.stack([ctx.logits(i).copy() for i in range(len(prompt) - 1, len(prompt) + len(trained))])
        assert q8.n_ctx_train == 512  # metadata kept, not llama.cpp's training window
    # Q8_0 rounds each weight to 8 bits per block of 32: logits of size ~1-5 move by at most TOL (measured 0.05),
    # so the quantized model picks the trained model's token wherever that one leads the runner-up by 2 * TOL
    TOL = 0.2
    assert np.abs(got - expected).max() < TOL
    top2 = np.sort(expected, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * TOL
    assert clear.sum() >= len(trained) // 2  # the check is not empty
    assert np.array_equal(got.argmax(1)[clear], expected.argmax(1)[clear])


def test_training_keeps_the_models_context_for_inference(trainable):
    with trainable.trainer(N_CTX, n_layers=1) as trainer:
        trainer.step(window(trainable), lr=1e-3)
        assert trainable.n_ctx_train == 512
        with trainable.context(n_ctx=512) as ctx:  # llama.cpp set its own value to the window; ours still holds
            assert ctx.n_ctx == 512


# ---- refusals ----

def test_a_read_only_or_quantized_model_is_refused_with_what_to_do(native, source, tmp_path):
    with Model.from_file(source, native) as mapped, pytest.raises(PocketmindError, match="pm_model_load_trainable"):
        mapped.trainer(N_CTX, 1)
    with Model.trainable(source, native) as quantized, pytest.raises(PocketmindError,
                                                                     match="is q8_0, not F32: .*convert the model to F32"):
        quantized.trainer(N_CTX, 1)


def test_an_architecture_llama_cpp_cannot_train_fails_cleanly_and_is_refused_up_front(native, source, tmp_path):
    from family_models import write_family
    from pocketmind.task_service import TaskService

    gemma = write_family(tmp_path / "gemma3.gguf", "gemma3")
    convert_model(gemma, tmp_path / "gemma3.f32.gguf", "F32", 1, native)
    with Model.trainable(tmp_path / "gemma3.f32.gguf", native) as model, model.trainer(N_CTX, 1) as trainer:
        w = np.zeros(N_CTX + 1, dtype=np.int32)
        for train in (False, True):  # the optimizer's graphs are built with their backward pass, even to measure
            with pytest.raises(PocketmindError, match="unsupported glu op for backward pass: GEGLU"):
                trainer.step(w, train=train)  # an error, not an abort: the process (the page's worker) goes on
    # so the page's service refuses it before converting or measuring anything
    service = TaskService(n_ctx=512)
    service.add_model(Model.from_file(gemma, native), "gemma")
    service.load_task(json.dumps(TASK))
    with pytest.raises(FinetuneError, match="llama.cpp cannot fine-tune gemma3 models: its backward pass has no GEGLU"):
        service.start_finetune(json.dumps({"file": "csv"}), rows_csv({"dev": 12}).encode())
    service.close()
    # and the library still trains a llama afterwards
    f32 = tmp_path / "tiny.f32.gguf"
    convert_model(source, f32, "F32", 1, native)
    with Model.trainable(f32, native) as model, model.trainer(N_CTX, 1) as trainer:
        assert np.isfinite(trainer.step(window(model), lr=1e-3))


@pytest.mark.parametrize("n_ctx, n_layers, message", [
    (128, 1, "not a multiple of 256 in 256..512"), (300, 1, "not a multiple of 256"),
    (1024, 1, "not a multiple of 256 in 256..512"), (N_CTX, 0, "n_layers 0 is outside 1..2"),
    (N_CTX, 3, "n_layers 3 is outside 1..2"),
])
def test_bad_trainer_arguments_are_refused(trainable, n_ctx, n_layers, message):
    with pytest.raises(PocketmindError, match=message):
        trainable.trainer(n_ctx, n_layers)


def test_bad_windows_are_refused(trainable):
    with trainable.trainer(N_CTX, 1) as trainer:
        with pytest.raises(ValueError, match="n_ctx \\+ 1 = 257 tokens, not 256"):
            trainer.step(np.zeros(N_CTX, dtype=np.int32))
        bad = window(trainable)
        bad[7] = trainable.n_vocab
        with pytest.raises(PocketmindError, match=f"token {trainable.n_vocab} at 7 is outside the vocabulary"):
            trainer.step(bad)
        with pytest.raises(PocketmindError, match="learning rate"):
            trainer.step(window(trainable), lr=5.0)


def test_writing_into_another_models_file_is_refused_and_leaves_it_unchanged(native, trainable, tmp_path):
    other = write_tiny_llama(tmp_path / "other.gguf", "F32", n_embd=32, n_head=2, n_head_kv=1, n_ff=64)
    before = other.read_bytes()
    with trainable.trainer(N_CTX, 1) as trainer, pytest.raises(PocketmindError, match="is not the model being "
                                                                                        "trained"):
        trainer.write(other)
    assert other.read_bytes() == before


def test_conversion_refusals_leave_nothing_behind(native, source, tmp_path):
    with pytest.raises(PocketmindError, match="unknown weight type 'Q3_X'"):
        convert_model(source, tmp_path / "x.gguf", "Q3_X", 1, native)
    (tmp_path / "junk.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(PocketmindError, match="cannot convert"):
        convert_model(tmp_path / "junk.gguf", tmp_path / "y.gguf", "F32", 1, native)
    assert not (tmp_path / "x.gguf").exists() and not (tmp_path / "y.gguf").exists()


# ---- the run: task rows to a fine-tuned file ----

def ex(length: int, answer: int, first: int = 0) -> Example:
    return Example(np.arange(first, first + length, dtype=np.int32), answer)


def test_windows_pack_whole_examples_and_count_only_their_answers():
    examples = [ex(100, 97), ex(100, 98, 1000), ex(100, 96, 2000), ex(300, 297, 5000)]
    ws = windows(examples, 256, pad=7)
    assert [w.tokens.size for w in ws] == [257, 257, 257] and [w.counted.size for w in ws] == [256, 256, 256]
    # two whole examples, then padding; the third would not fit
    assert np.array_equal(ws[0].tokens[:200], np.concatenate([examples[0].tokens, examples[1].tokens]))
    assert (ws[0].tokens[200:] == 7).all()
    # counted[i] is the prediction of token i + 1: the answers' tokens 97..99 and 198..199
    assert np.flatnonzero(ws[0].counted).tolist() == [96, 97, 98, 197, 198] and ws[0].n_counted == 5
    # an example longer than a window keeps its end: the answer and the prompt's last tokens
    assert np.array_equal(ws[2].tokens, examples[3].tokens[-257:])
    assert np.flatnonzero(ws[2].counted).tolist() == [253, 254, 255]


def test_an_example_is_the_task_prompt_then_the_label_then_the_end_of_the_turn(native, source):
    task = Task.from_dict(TASK)
    with Model.from_file(source, native) as model:
        example = example_tokens(model, task, "the and of", "green")
        prompt = task.prompt_tokens(model, "the and of")
        label = model.tokenize("green", add_special=False)
        end = model.eot if model.eot >= 0 else model.eos
        assert np.array_equal(example.tokens, np.concatenate([prompt, label, [end]]))
        assert example.answer == len(prompt)


def test_a_run_lowers_the_dev_loss_and_writes_a_model_that_loads(native, source, tmp_path):
    task = Task.from_dict(TASK)
    (tmp_path / "work").mkdir()
    run = FinetuneRun(task, rows({"dev": 24, "test": 9}), source, tmp_path / "out.gguf", tmp_path / "work",
                      backend=native, layers=2, epochs=2, lr=3e-3)
    events = list(run)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "progress" and kinds[-1] == "progress" and "step" in kinds
    r = run.result()
    json.dumps(r)  # JSON-ready for the page
    assert r["written"] and not r["stopped"] and r["n"] == {"train": 18, "dev": 6, "test": 9}
    epochs = [e for e in events if e["type"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [0, 1, 2]
    assert min(e["dev_loss"] for e in epochs[1:]) < epochs[0]["dev_loss"]
    assert r["best_epoch"] == min(epochs, key=lambda e: e["dev_loss"])["epoch"]
    assert r["accuracy"]["before"] is not None and r["accuracy"]["after"] is not None
    assert r["tokens_per_s"] > 0 and r["tokens_trained"] == N_CTX * sum(1 for k in kinds if k == "step")
    assert not list((tmp_path / "work").iterdir())  # the F32 file is gone
    with Model.from_file(tmp_path / "out.gguf", native) as model:
        assert model.meta("general.file_type") == "7"  # Q8_0


def test_a_stop_keeps_the_best_weights_and_still_writes_them(native, source, tmp_path):
    task = Task.from_dict(TASK)
    steps = 0

    def stop() -> bool:
        return steps >= 2

    run = FinetuneRun(task, rows({"dev": 24}), source, tmp_path / "out.gguf", tmp_path, backend=native,
                      measure=False, epochs=5, lr=3e-3, stop=stop)
    for event in run:
        steps += event["type"] == "step"
    r = run.result()
    assert r["stopped"] and r["written"] and steps == 2
    assert r["epochs"][-1]["partial"] and len(r["epochs"]) == 2
    assert (tmp_path / "out.gguf").exists() and not (tmp_path / "out.gguf.part").exists()


def test_a_stop_before_the_first_window_writes_nothing(native, source, tmp_path):
    run = FinetuneRun(Task.from_dict(TASK), rows({"dev": 12}), source, tmp_path / "out.gguf", tmp_path,
                      backend=native, measure=False, stop=lambda: True)
    kinds = [e["type"] for e in run]
    r = run.result()
    assert r["stopped"] and not r["written"] and r["out"] is None and "step" not in kinds
    assert list(tmp_path.iterdir()) == []  # neither the F32 file nor an output


@pytest.mark.parametrize("splits, labels, message", [
    ({"dev": 1}, None, "fine-tuning needs at least 4 labelled rows"),
    ({"dev": 9}, ["red"] * 9, "every training row has the label 'red': fine-tuning needs examples of at least two"),
    ({"dev": 9}, ["red", None] + ["blue"] * 7, "row 2 has no label"),
    ({"dev": 100_000}, None, "100000 labelled rows: fine-tuning trains on at most 5000"),
])
def test_bad_rows_are_refused_before_any_work(native, source, tmp_path, splits, labels, message):
    task = Task.from_dict(TASK)
    data = rows(splits)
    if labels is not None:
        data = [dataclasses.replace(r, label=label) for r, label in zip(data, labels)]
    with pytest.raises(HeadError, match=message):
        FinetuneRun(task, data, source, tmp_path / "o.gguf", tmp_path, backend=native)
    assert not (tmp_path / "o.gguf").exists()


def test_bad_options_are_refused():
    for options, message in [({"layers": 0}, "layers must be an integer from 1"),
                             ({"n_ctx": 300}, "n_ctx must be a multiple of 256"),
                             ({"lr": -1}, "lr must be a number from 0"), ({"weight_type": "Q2"}, "weight_type must"),
                             ({"rank": 4}, "unknown fine-tuning option")]:
        with pytest.raises(FinetuneError, match=message):
            check_options(0, **options)


def test_a_json_task_is_refused(native, source, tmp_path):
    task = Task.from_dict({"name": "x", "instruction": "Extract.", "output": {"json_schema": {"type": "object"}}})
    with pytest.raises(FinetuneError, match="needs a task with labels"):
        FinetuneRun(task, [], source, tmp_path / "o.gguf", tmp_path, backend=native)


def test_the_command_line_fine_tunes_and_reports(native, source, tmp_path, capsys):
    (tmp_path / "task.json").write_text(json.dumps(TASK))
    (tmp_path / "data.csv").write_text(rows_csv({"dev": 12, "test": 6}))
    out = tmp_path / "tuned.gguf"
    code = main(["finetune", str(tmp_path / "task.json"), str(tmp_path / "data.csv"), "--model", str(source),
                 "--epochs", "1", "--layers", "1", "--out", str(out), "--json", "--no-progress"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["written"] and result["out"] == str(out) and out.exists()
    assert set(result["accuracy"]) == {"before", "after"}
    code = main(["finetune", str(tmp_path / "task.json"), str(tmp_path / "data.csv"), "--model",
                 str(tmp_path / "missing.gguf")])
    assert code == 2 and "no model file at" in capsys.readouterr().err


# ---- the same training in the wasm modules ----

@pytest.mark.parametrize("variant", ["wasm-st", "wasm-mt"])
def test_native_and_wasm_loss_curves_agree(native, source, run_wasm, tmp_path, variant):
    rng = np.random.default_rng(3)
    with Model.from_file(source, native) as model:
        n_vocab = model.n_vocab
    ws = [rng.integers(0, n_vocab, N_CTX + 1).astype(np.int32) for _ in range(3)] * 2  # each twice: it is learned
    counted = [rng.random(N_CTX) < 0.5 for _ in range(3)] * 2  # half the predictions count, as answers do
    f32 = tmp_path / "native.f32.gguf"
    convert_model(source, f32, "F32", 1, native)
    with Model.trainable(f32, native) as model, model.trainer(N_CTX, n_layers=2) as trainer:
        expected = [trainer.step(w, lr=1e-2, counted=c) for w, c in zip(ws, counted)]
    got = run_wasm(variant, source, [{"op": "train", "windows": [w.tolist() for w in ws], "layers": 2, "lr": 1e-2,
                                      "counted": [c.astype(int).tolist() for c in counted]}], n_ctx=N_CTX)[1]["losses"]
    assert expected[3] < expected[0] and expected[-1] < expected[2]  # the curve has a shape to agree on
    # the same steps from the same weights: wasm and x86 sum in other orders (measured over these six steps: at
    # most 1.2e-5 apart in both builds, losses of 5-7 per counted token)
    assert np.allclose(got, expected, rtol=0, atol=1e-4), (got, expected)


# ---- the Tasks page's service ----

class SmallHeap:
    """The native backend, claiming the little room a crowded page's wasm heap would have left."""

    def __init__(self, inner, room: int):
        self.inner, self.room = inner, room

    def heap_room(self) -> int:
        return self.room

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_the_service_fine_tunes_a_loaded_model_and_hands_over_its_file(native, source):
    from pocketmind.task_service import TaskService

    service = TaskService(n_ctx=512)
    service.add_model(Model.from_file(source, native), "tiny")
    service.load_task(json.dumps(TASK))
    with pytest.raises(ValueError, match="unknown key\\(s\\) in the request: rank; the keys are: csv, epochs"):
        service.start_finetune(json.dumps({"file": "csv", "rank": 4}), rows_csv({"dev": 12}).encode())
    service.start_finetune(json.dumps({"file": "csv", "epochs": 1, "layers": 1, "measure": False}),
                           rows_csv({"dev": 12}).encode())
    events = []
    while (event := service.step()) is not None:
        events.append(json.loads(event))
    done = events[-1]
    assert done["type"] == "done" and done["base"] == "tiny" and done["written"]
    out = Path(done["out"])
    assert out.exists() and out.parent == Path("/tmp")
    with Model.from_file(out, native) as tuned:
        assert tuned.n_vocab == service.contexts["tiny"].model.n_vocab
    with pytest.raises(ValueError, match="not a fine-tuned model's file"):
        service.take_finetuned("/etc/passwd")
    service.take_finetuned(str(out))
    assert not out.exists()
    service.close()


def test_the_page_refuses_a_fine_tuning_its_memory_cannot_hold(native, source):
    from pocketmind.task_service import TaskService

    service = TaskService(n_ctx=512)
    service.add_model(Model.from_file(source, SmallHeap(native, 1 << 20)), "tiny")
    service.load_task(json.dumps(TASK))
    with pytest.raises(FinetuneError, match=r"needs about \d+ MB of the page's memory .* and 1 MB are left of the 4 GB"):
        service.start_finetune(json.dumps({"file": "csv"}), rows_csv({"dev": 12}).encode())
    assert not list(Path("/tmp").glob("finetuned-*.gguf.part"))
    service.close()


def test_the_pages_memory_estimate_covers_training_smollm2_in_wasm(native, smollm2, run_wasm):
    """What the page's refusal rule (train.finetune.training_bytes) assumes, against the wasm heap's growth while
    the real SmolLM2 trains 2 blocks on a 256-token window (wasm memory only grows: its size after is the peak)."""
    from pocketmind.train.finetune import training_bytes

    with Model.from_file(smollm2, native) as model:
        estimate = training_bytes(model, 2, N_CTX)
        f32_weights = 4 * model.n_params
        w = np.random.default_rng(0).integers(0, model.n_vocab, N_CTX + 1).tolist()
    result = run_wasm("wasm-st", smollm2, [{"op": "train", "windows": [w], "layers": 2, "lr": 1e-4}],
                      n_ctx=N_CTX)[1]
    growth = result["heap_after"] - result["heap_before"]
    print(f"wasm heap growth {growth / 2**20:.0f} MiB, estimate {estimate / 2**20:.0f} MiB")
    assert f32_weights < growth <= estimate  # measured: 1,112 MiB grown, 1,371 MiB estimated
