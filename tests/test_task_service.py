"""The tasks page's service under CPython: runs, evaluation equal to evaluate(), stop, every refusal's message,
downloads that round-trip, and the buffer rule of from_buffer."""
from __future__ import annotations

import csv
import gc
import io
import json
from pathlib import Path

import pytest
from counting_backend import CountingBackend, load_like_the_worker, refused_load
from tiny_gguf import write_tiny_llama

from pocketmind import Model
from pocketmind.tasks import DataError, Ensemble, Task, TaskError, Voter, evaluate, parse_rows
from pocketmind.tasks.compare import Answers, Lineup
from pocketmind.tasks.data import eval_rows
from pocketmind.task_service import TaskService

REPO = Path(__file__).resolve().parents[1]
TASK_JSON = (REPO / "data" / "tasks" / "review_sentiment.json").read_text(encoding="utf-8")
CSV = (REPO / "data" / "review_sentiment.csv").read_text(encoding="utf-8")
LABELS = ["positive", "negative", "neutral"]


def first_test_rows(n: int) -> str:
    """The header and the first n test rows of the shipped CSV, as CSV text."""
    lines = CSV.splitlines()
    return "\n".join([lines[0]] + [line for line in lines[1:] if ",test," in line][:n]) + "\n"


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> Path:
    """A tiny random model with room for three shots (the shared ones have 256 tokens)."""
    return write_tiny_llama(tmp_path_factory.mktemp("task-service") / "tiny.gguf", "F32", n_ctx=2048)


@pytest.fixture
def service(native, tiny_path):
    service = TaskService(n_ctx=1024)
    service.add_model(Model.from_file(tiny_path, native), "tiny")
    service.load_task(TASK_JSON)
    yield service
    service.close()


def events(service) -> list[dict]:
    out = []
    while (event := service.step()) is not None:
        out.append(json.loads(event))
    return out


def test_load_task_describes_the_task():
    service = TaskService(n_ctx=1024)
    assert json.loads(service.load_task(TASK_JSON)) == {"name": "review_sentiment", "labels": LABELS,
                                                         "json_schema": None, "n_examples": 3}
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    doc = {"name": "count", "instruction": "How many?", "output": {"json_schema": schema}}
    assert json.loads(service.load_task(json.dumps(doc))) == {"name": "count", "labels": None,
                                                              "json_schema": schema, "n_examples": 0}


def test_a_run_gives_one_item_event_per_text_then_done(service):
    texts = [f"review {i}: the lid broke but the pot is fine" for i in range(10)]
    service.start_run(json.dumps({"items": texts, "shots": 1}))
    got = events(service)
    assert [e["type"] for e in got] == ["item"] * 10 + ["done"]
    for i, item in enumerate(got[:10]):
        assert item["index"] == i and item["text"] == texts[i] and item["label"] in LABELS
        assert set(item["probs"]) == set(LABELS) and abs(sum(item["probs"].values()) - 1) < 1e-9
        assert item["confidence"] == item["probs"][item["label"]] == max(item["probs"].values())
    done = got[-1]
    assert done["stopped"] is False and done["n_done"] == done["total"] == 10
    assert sum(done["label_counts"].values()) == 10 and list(done["label_counts"]) == LABELS
    assert service.step() is None


def test_a_run_over_csv_takes_the_text_column_and_max_items(service):
    service.start_run(json.dumps({"csv": CSV, "max_items": 4}))
    got = events(service)
    rows = parse_rows(CSV.encode(), label_column=None)
    assert [e["text"] for e in got[:-1]] == [r.text for r in rows[:4]]
    assert got[-1]["total"] == 4


def test_the_same_text_gets_the_same_answer_as_task_run(service):
    text = "Arrived broken, the seller never answered."
    service.start_run(json.dumps({"items": [text], "shots": 2}))
    item = events(service)[0]
    expected = Task.parse(TASK_JSON).run(service.contexts["tiny"], text, 2)
    assert item["label"] == expected.label and list(item["probs"].values()) == list(expected.probs)


def test_an_eval_gives_the_numbers_evaluate_gives(service, native, tiny_path):
    data = first_test_rows(10)  # no dev rows: the ensembles are not fitted, and there is no cascade
    service.start_eval(json.dumps({"csv": data, "shots": [0, 3]}))
    got = events(service)
    setups = ["tiny 0-shot", "tiny 3-shot", "ensemble majority", "ensemble mean"]
    progress = [e for e in got if e["type"] == "progress"]
    assert [(e["phase"], e["setup"], e["done"]) for e in progress] == [("test", s, d) for s in setups
                                                                       for d in range(1, 11)]
    assert all(e["total"] == 10 for e in progress) and got[-1]["type"] == "done" and len(got) == 41
    report = got[-1]
    assert report["stopped"] is False and report["n"] == 10 and report["labels"] == LABELS

    # the library's path: evaluate() over the same rows, with a fresh model and context of the same size
    task = Task.parse(TASK_JSON)
    rows = parse_rows(data.encode(), labels=task.labels, split="test")
    assert len(rows) == 10
    with Model.from_file(tiny_path, native) as model:
        ctx = model.context(n_ctx=1024)
        voters = [Voter.from_task(task, ctx, k, name=f"tiny {k}-shot") for k in (0, 3)]
        direct = evaluate(task, rows, {**{v.name: v for v in voters}, "ensemble majority": Ensemble(voters, "majority"),
                                       "ensemble mean": Ensemble(voters, "mean")})
    for mine, theirs, name in zip(report["setups"], direct.setups, setups, strict=True):
        assert mine["name"] == name and mine["n"] == theirs.n == 10
        assert mine["accuracy"] == theirs.accuracy and mine["macro_f1"] == theirs.macro_f1
        assert mine["predictions"] == list(theirs.predictions) and mine["n_tokens"] == theirs.n_tokens
        assert mine["confusion"] == [list(row) for row in theirs.confusion]
        assert mine["ms_per_item"] > 0 and mine["models"] == ["tiny"]
    assert report["recommendation"]["reached"] is True and report["hosted"]["input_tokens"] > 0


def test_an_eval_with_dev_rows_fits_and_equals_the_clis_lineup(service, native, tiny_path):
    lines = CSV.splitlines()
    data = "\n".join([lines[0]] + [ln for ln in lines[1:] if ",dev," in ln][:6]
                     + [ln for ln in lines[1:] if ",test," in ln][:6]) + "\n"
    service.start_eval(json.dumps({"csv": data, "shots": [0, 1]}))
    got = events(service)
    phases = [(e["phase"], e["setup"]) for e in got if e["type"] == "progress"]
    assert phases[:12] == [("dev", f"dev: tiny {k}-shot") for k in (0, 1) for _ in range(6)]
    report = got[-1]
    names = ["tiny 0-shot", "tiny 1-shot", "ensemble majority", "ensemble mean", "ensemble weighted", "cascade"]
    assert [s["name"] for s in report["setups"]] == names
    assert set(report["fitted"]) == {"ensemble majority", "ensemble mean", "ensemble weighted", "cascade"}

    task = Task.parse(TASK_JSON)
    rows, dev = eval_rows(data.encode(), "text", "label", task.labels)
    with Model.from_file(tiny_path, native) as model:
        lineup = Lineup(task, [("tiny", model.context(n_ctx=1024))], [0, 1]).fit(dev)
        direct = lineup.evaluation(rows)
        for _ in direct:
            pass
    assert [s["predictions"] for s in report["setups"]] == [list(s.predictions) for s in direct.report.setups]
    assert [s["accuracy"] for s in report["setups"]] == [s.accuracy for s in direct.report.setups]
    assert report["fitted"]["cascade"]["thresholds"] == list(lineup.fitted["cascade"]["thresholds"])


def test_stop_after_three_items_ends_a_run_with_what_was_finished(service):
    service.start_run(json.dumps({"items": [f"text {i}" for i in range(10)]}))
    got = [json.loads(service.step()) for _ in range(3)]
    service.stop()
    done = json.loads(service.step())
    assert [e["type"] for e in got] == ["item"] * 3
    assert done["type"] == "done" and done["stopped"] is True and done["n_done"] == 3 and done["total"] == 10
    assert service.step() is None
    assert [r["text"] for r in json.loads(service.results_json())["items"]] == ["text 0", "text 1", "text 2"]


def test_stop_during_an_eval_reports_the_rows_answered(service):
    service.start_eval(json.dumps({"csv": first_test_rows(10), "shots": [0, 1]}))
    for _ in range(13):  # 10 rows of 0-shot, 3 of 1-shot
        assert json.loads(service.step())["type"] == "progress"
    service.stop()
    done = json.loads(service.step())
    assert done["stopped"] is True and done["n"] == 10
    assert [(s["name"], s["n"], len(s["predictions"])) for s in done["setups"]] == [("tiny 0-shot", 10, 10),
                                                                                   ("tiny 1-shot", 3, 3)]
    assert service.step() is None


AWKWARD = ['plain', 'a, comma', 'she said "no"', 'two\nlines', 'windows\r\nline', '  padded  ', 'ünïcødé ✓',
           '"', ',,,']


def test_results_csv_round_trips_awkward_text(service):
    service.start_run(json.dumps({"items": AWKWARD}))
    events(service)
    table = list(csv.reader(io.StringIO(service.results_csv(), newline="")))
    assert table[0] == ["text", "label", "confidence", "p(positive)", "p(negative)", "p(neutral)"]
    assert [row[0] for row in table[1:]] == AWKWARD
    items = json.loads(service.results_json())["items"]
    assert [row[1] for row in table[1:]] == [r["label"] for r in items]
    assert [float(row[2]) for row in table[1:]] == [r["confidence"] for r in items]  # repr: exact


def test_a_json_task_runs_and_downloads_its_values(service):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    service.load_task(json.dumps({"name": "count", "instruction": "How many?", "output": {"json_schema": schema}}))
    service.start_run(json.dumps({"items": ["three apples", "a, b"]}))
    got = events(service)
    items = [e for e in got if e["type"] == "item"]
    assert [e["type"] for e in got if e["type"] != "writing"] == ["item", "item", "done"]
    assert all(isinstance(e["value"]["n"], int) and e["probs"] is None for e in items)
    assert got[-1]["label_counts"] is None
    # each value is written in steps: a prompt batch, then one event per token, before its item
    for index, item in enumerate(items):
        start = got.index(items[index - 1]) + 1 if index else 0
        writing = [e["n_tokens"] for e in got[start:got.index(item)]]
        assert writing[0] == 0 and writing[-1] >= 1 and writing == sorted(writing), writing
    table = list(csv.reader(io.StringIO(service.results_csv(), newline="")))
    assert table[0] == ["text", "value"] and [json.loads(row[1]) for row in table[1:]] == [e["value"] for e in items]
    with pytest.raises(ValueError, match="^evaluation needs a task with labels"):
        service.start_eval(json.dumps({"csv": CSV}))


def test_a_stop_while_a_value_is_written_ends_the_run_at_once_and_leaves_it_out(service):
    schema = {"type": "object", "properties": {"words": {"type": "array", "items": {"type": "string"}}},
              "required": ["words"]}
    doc = {"name": "words", "instruction": "List the words.", "output": {"json_schema": schema}}
    service.load_task(json.dumps(doc))
    texts = ["red green blue", "one two"]
    service.start_run(json.dumps({"items": texts}))
    first = [json.loads(service.step()) for _ in range(3)]
    assert [e["type"] for e in first] == ["writing"] * 3 and first[-1]["index"] == 0
    service.stop()
    done = json.loads(service.step())
    assert done["type"] == "done" and done["stopped"] is True and done["n_done"] == 0 and done["total"] == 2
    assert service.step() is None and json.loads(service.results_json())["items"] == []
    # the context stays usable: the next run writes what a fresh run writes
    service.start_run(json.dumps({"items": texts[:1]}))
    value = [e for e in events(service) if e["type"] == "item"][0]["value"]
    assert value == Task.parse(json.dumps(doc)).run(service.contexts["tiny"], texts[0]).value


# ---- refusals ----

HEADER = "id,split,text,label\n"


@pytest.mark.parametrize("data, message", [
    ("id,split,review,label\nr1,test,good,positive\n",
     "the file has no column 'text'; its columns are: 'id', 'split', 'review', 'label'"),
    (HEADER + "r1,test,good,positive\nr2,test,meh,so-so\n",
     "row 2 (line 3) has the label 'so-so', which is not one of: positive, negative, neutral"),
    (HEADER + "r1,test,good,positive\nr2,test,bad\n", "row 2 (line 3) has 3 fields; the header has 4"),
    (HEADER + "r1,test,good,positive,extra\n", "row 1 (line 2) has 5 fields; the header has 4"),
    ("", "the file is empty"),
    ("  \n", "the file is empty"),
    (HEADER, "the file has a header but no rows"),
    (HEADER + "r1,dev,good,positive\n", "no rows have split 'test'; the splits present are: 'dev'"),
])
def test_bad_csv_is_refused_with_the_clis_message(service, data, message):
    with pytest.raises(DataError) as error:
        service.start_eval(json.dumps({"csv": data}))
    assert str(error.value) == message
    assert service.step() is None


def test_a_run_refuses_a_csv_without_the_text_column(service):
    with pytest.raises(DataError, match="^the file has no column 'text'; its columns are: 'review'$"):
        service.start_run(json.dumps({"csv": "review\ngood\n"}))


@pytest.mark.parametrize("request_, message", [
    ({}, 'a run needs "items" (a list of texts), "csv" (CSV text), "txt" (one item a line) or a file'),
    ({"items": ["a"], "csv": "text\na\n"}, 'a run needs one of "items" (a list of texts), "csv", "txt" or a file, '
                                           'not several'),
    ({"csv": "text\na\n", "txt": "a"}, 'a run needs "csv" (CSV text) or "txt" (TXT text) or a file'),
    ({"items": ["fine"], "model": "gemma"}, "no model named 'gemma' is loaded; the models are: tiny"),
    ({"items": []}, "items must be a non-empty list of texts"),
    ({"items": ["fine", "  "]}, "item 2 must be a non-empty text, got '  '"),
    ({"items": ["fine"], "shots": 4}, "4 shots asked for, but the task 'review_sentiment' has 3 examples"),
    ({"items": ["fine"], "shots": -1}, "shots must be a non-negative integer, got -1"),
    ({"items": ["fine"], "max_items": 0}, "max_items must be a positive integer, got 0"),
    ({"csv": 7}, "csv must be CSV text, got int"),
])
def test_bad_run_requests_are_refused(service, request_, message):
    with pytest.raises(ValueError) as error:
        service.start_run(json.dumps(request_))
    assert str(error.value) == message


def test_txt_and_dropped_files_give_the_items(service):
    service.start_run(json.dumps({"txt": " first \n\n second\r\nthird"}))
    assert [e["text"] for e in events(service)[:-1]] == ["first", "second", "third"]
    service.start_run(json.dumps({"file": "txt"}), "one\ntwo\n".encode())
    assert [e["text"] for e in events(service)[:-1]] == ["one", "two"]
    service.start_run(json.dumps({"file": "csv"}), first_test_rows(2).encode())
    assert len(events(service)) == 3


@pytest.mark.parametrize("request_, data, message", [
    ({"file": "txt"}, b"caf\xe9\n", "the file is not UTF-8 text: byte 0xe9 at offset 3 (line 1) is not valid UTF-8; "
                                    "save the file as UTF-8"),
    ({"file": "xlsx"}, b"a", "a file needs \"file\": one of 'csv', 'txt'; got 'xlsx'"),
    ({"file": "txt", "txt": "a"}, b"a", "give the file's bytes or 'txt' text, not both"),
    ({"file": "txt"}, b"\n \n", "the file is empty"),
])
def test_bad_files_are_refused(service, request_, data, message):
    with pytest.raises(ValueError) as error:
        service.start_run(json.dumps(request_), data)
    assert str(error.value) == message
    assert service.step() is None


def test_a_file_of_over_50_mb_is_refused_before_parsing(service):
    with pytest.raises(DataError, match=r"^the file is 50\.0 MB; the limit is 50 MB$"):
        service.start_eval(json.dumps({"file": "csv"}), b"x" * 50_000_001)


def test_several_models_stay_loaded_and_each_is_asked_by_name(native, tiny_path, tiny_models):
    service = TaskService(n_ctx=1024)
    card = json.loads(service.add_model(Model.from_file(tiny_path, native), "a"))
    assert card["name"] == "a" and card["n_params"] > 0
    service.add_model(Model.from_file(tiny_path, native), "b")
    with pytest.raises(ValueError, match="^a model named 'a' is already loaded$"):
        service.add_model(Model.from_file(tiny_path, native), "a")
    service.load_task(TASK_JSON)
    service.start_run(json.dumps({"items": ["fine"], "model": "b"}))
    from_b = events(service)[0]
    service.start_eval(json.dumps({"csv": first_test_rows(3), "models": ["a", "b"]}))
    report = events(service)[-1]
    assert [s["name"] for s in report["setups"]] == ["a 0-shot", "b 0-shot", "ensemble majority", "ensemble mean"]
    assert report["setups"][1]["models"] == ["b"] and report["setups"][2]["models"] == ["a", "b"]
    assert report["setups"][2]["model_bytes"] == 2 * report["setups"][0]["model_bytes"]
    # the same weights: the same answers, whichever model is asked
    assert report["setups"][0]["predictions"] == report["setups"][1]["predictions"]
    assert from_b["label"] in LABELS
    service.remove_model("a")
    assert list(service.contexts) == ["b"]
    with pytest.raises(ValueError, match="^no model named 'a' is loaded; the models are: b$"):
        service.start_eval(json.dumps({"csv": first_test_rows(3), "models": ["a"]}))
    service.close()
    assert not service.contexts


def test_an_eval_without_shot_counts_takes_the_tasks_own_voters(service):
    doc = json.loads(TASK_JSON) | {"voters": [{"model": "tiny", "shots": 2}, {"model": "tiny"}]}
    service.load_task(json.dumps(doc))
    service.start_eval(json.dumps({"csv": first_test_rows(3)}))
    assert [s["name"] for s in events(service)[-1]["setups"]][:2] == ["tiny 2-shot", "tiny 0-shot"]
    service.load_task(json.dumps(doc | {"voters": [{"model": "gemma"}]}))
    with pytest.raises(ValueError, match="^the task's voter 'gemma' is not loaded; the models are: tiny$"):
        service.start_eval(json.dumps({"csv": first_test_rows(3)}))
    service.start_eval(json.dumps({"csv": first_test_rows(3), "shots": "1"}))  # counts given: every model, those
    assert [s["name"] for s in events(service)[-1]["setups"]] == ["tiny 1-shot"]


def test_answers_from_another_worker_give_the_same_evaluation(native, tiny_path, tmp_path):
    """Two workers in parallel: one answers for model "b", the other evaluates with "a" loaded and b's answers."""
    lines = CSV.splitlines()
    data = "\n".join([lines[0]] + [ln for ln in lines[1:] if ",dev," in ln][:4]
                     + [ln for ln in lines[1:] if ",test," in ln][:5]) + "\n"
    request = {"csv": data, "shots": [0, 1], "models": ["a", "b"]}

    def worker(*names):
        service = TaskService(n_ctx=1024)
        other = write_tiny_llama(tmp_path / "other.gguf", "F16", seed=7, n_ctx=2048)  # a second, different model
        for name in names:
            path = tiny_path if name == "a" else other
            service.add_model(Model.from_file(path, native), name)
        service.load_task(TASK_JSON)
        return service

    alone = worker("a", "b")
    alone.start_eval(json.dumps(request))
    expected = events(alone)[-1]
    helper, main = worker("b"), worker("a")
    helper.start_answers(json.dumps(request | {"models": ["b"]}))
    got = events(helper)
    assert {e["setup"] for e in got[:-1]} == {"b 0-shot", "b 1-shot"} and len(got) == 2 * 9 + 1
    answers = json.loads(json.dumps(got[-1]["answers"]))  # as it crosses to the page and back
    main.start_eval(json.dumps(request | {"answers": answers}))
    report = events(main)[-1]
    for mine, theirs in zip(report["setups"], expected["setups"], strict=True):
        assert (mine["name"], mine["predictions"], mine["accuracy"]) == (theirs["name"], theirs["predictions"],
                                                                         theirs["accuracy"])
        assert mine["n_tokens"] == theirs["n_tokens"] and mine["cost_per_item"] == theirs["cost_per_item"]
    assert report["fitted"] == expected["fitted"]
    with pytest.raises(ValueError, match="^the answers of model 'b' are malformed"):
        main.start_eval(json.dumps(request | {"answers": {"b": {"size": 1}}}))
    for service in (alone, helper, main):
        service.close()


def test_a_stage_that_never_answers_is_null_in_strict_json(native, tiny_path):
    """A cascade threshold of inf (the small voter is sure and always wrong) must not reach the page as Infinity,
    which JSON.parse refuses."""
    task = Task.parse(TASK_JSON)
    rows, dev = eval_rows(CSV.encode(), "text", "label", task.labels)
    rows, dev = rows[:6], dev[:6]
    wrong = {r.text: [[0.0, 0.0, 1.0] if r.label != "neutral" else [1.0, 0.0, 0.0], 10, 0.01] for r in rows + dev}
    right = {r.text: [[float(r.label == lab) * 0.8 + 0.1 for lab in LABELS], 30, 0.1] for r in rows + dev}
    models = [("small", Answers(1, 1, {0: wrong})), ("big", Answers(2, 2, {0: right}))]
    with Model.from_file(tiny_path, native) as model:
        lineup = Lineup(task, models, [0], tokenizer=model).fit(dev)
        evaluation = lineup.evaluation(rows)
        for _ in evaluation:
            pass
        summary = lineup.summary(evaluation.report, rows)
    assert lineup.setups["cascade"].thresholds == (float("inf"),)
    assert summary["fitted"]["cascade"]["thresholds"] == [None]
    json.dumps(summary, allow_nan=False)  # strict JSON: what the service sends


def test_a_dev_row_too_long_for_the_context_is_named(service):
    long_row = "d1,dev," + " ".join(["lovely"] * 3000) + ",positive"
    data = "\n".join([CSV.splitlines()[0], long_row] + first_test_rows(2).splitlines()[1:]) + "\n"
    service.start_eval(json.dumps({"csv": data, "shots": [0, 1]}))
    with pytest.raises(ValueError, match="^voter 'tiny 0-shot', dev row 1: "):
        events(service)
    assert service.step() is None  # the page's next step finds nothing half-run


def test_recommend_picks_the_least_compute_reaching_the_target(service):
    with pytest.raises(ValueError, match="^there is no finished evaluation to recommend from$"):
        service.recommend("0.5")
    service.start_eval(json.dumps({"csv": first_test_rows(6), "shots": [0, 3]}))
    report = events(service)[-1]
    by_name = {s["name"]: s for s in report["setups"]}
    cheapest = min(report["setups"], key=lambda s: s["cost_per_item"])
    assert json.loads(service.recommend("0"))["setup"] == cheapest["name"]
    assert by_name["tiny 3-shot"]["cost_per_item"] > by_name["tiny 0-shot"]["cost_per_item"]  # longer prompts
    assert json.loads(service.recommend("1.0"))["reached"] is (max(s["accuracy"] for s in report["setups"]) == 1.0)
    with pytest.raises(ValueError, match="^the target accuracy is a fraction between 0 and 1, got 2$"):
        service.recommend("2")


def test_bad_eval_requests_are_refused(service):
    with pytest.raises(ValueError, match=r"^shots must be a non-empty list of counts, e\.g\. \[0, 3\] or \"0,3\"; got 3$"):
        service.start_eval(json.dumps({"csv": CSV, "shots": 3}))
    with pytest.raises(ValueError, match="^5 shots asked for, but the task 'review_sentiment' has 3 examples$"):
        service.start_eval(json.dumps({"csv": CSV, "shots": [0, 5]}))
    with pytest.raises(ValueError, match="^an evaluation needs \"csv\""):
        service.start_eval(json.dumps({"shots": [0]}))
    with pytest.raises(ValueError, match="^models must be a non-empty list of loaded models' names; got \\[\\]$"):
        service.start_eval(json.dumps({"csv": CSV, "models": []}))


def test_a_bad_task_and_a_run_before_a_task_are_clear_errors(native, tiny_path):
    service = TaskService(n_ctx=1024)
    service.add_model(Model.from_file(tiny_path, native), "tiny")
    with pytest.raises(ValueError, match="^no task is loaded: call load_task first$"):
        service.start_run(json.dumps({"items": ["good"]}))
    with pytest.raises(ValueError, match="^no task is loaded: call load_task first$"):
        service.start_eval(json.dumps({"csv": CSV}))
    with pytest.raises(ValueError, match="^there are no results yet: start a run first$"):
        service.results_csv()
    with pytest.raises(TaskError, match="^the task is not valid JSON: Expecting value at line 1, column 1$"):
        service.load_task("labels: a, b")
    with pytest.raises(TaskError, match="^the task has no 'output'$"):
        service.load_task(json.dumps({"name": "x", "instruction": "y"}))
    assert service.task is None  # a refused document loads nothing
    service.close()


# ---- the buffer rule (shared with ChatService) ----

@pytest.mark.parametrize("case", ["not a model", "context refused"])
def test_a_failed_load_leaves_the_buffer_to_the_caller(native, tiny_models, tmp_path, case):
    backend = CountingBackend(native)
    if case == "not a model":
        path = tmp_path / "junk.gguf"
        path.write_bytes(b"GGUF" + b"\0" * 60)
        refused_load(TaskService, backend, path, n_ctx=256)
    else:
        error = refused_load(TaskService, backend, tiny_models["F32"], n_ctx=256, n_threads=0)
        assert "n_threads 0 is outside" in error

    service, error = load_like_the_worker(TaskService, backend, tiny_models["F32"], n_ctx=256)
    assert error is None and service.contexts["model"].model.owns_buffer
    # a second model that fails to load leaves its buffer to the caller and the first model as it was
    junk = b"GGUF" + b"\0" * 60
    buffer = backend.call("pm_buffer_alloc", len(junk))
    backend.write(buffer, junk)
    with pytest.raises(Exception):
        service.add_buffer(backend, buffer, len(junk), "junk")
    backend.call("pm_buffer_free", buffer)
    assert list(service.contexts) == ["model"]
    service.load_task(TASK_JSON)
    service.start_run(json.dumps({"items": ["fine"]}))
    assert [e["type"] for e in events(service)] == ["item", "done"]
    service.close()
    service.close()  # twice: nothing more is freed
    del service
    gc.collect()
    assert backend.bad_frees == [] and backend.live == set()
