"""The Tasks and Evaluate pages in headless Chromium: a 10-row CSV end to end on each, with the page's labels and
accuracy equal to the CPython glue's on the same rows; downloads; stop; and every bad input with its message while
the page stays usable."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

import build_site
from browser_wait import bounded
from pocketmind import Model
from pocketmind.task_service import TaskService
from pocketmind.tasks import Task
from pocketmind.tasks.compare import Lineup
from pocketmind.tasks.data import eval_rows

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[1]
TICKETS = REPO / "data" / "tasks" / "support_tickets.json"
TICKETS_CSV = (REPO / "data" / "support_tickets.csv").read_text(encoding="utf-8")


def ten_rows() -> str:
    """The shipped tickets' header, 4 dev rows and 6 test rows: a 10-row labelled CSV."""
    lines = TICKETS_CSV.splitlines()
    dev = [ln for ln in lines[1:] if ",dev," in ln][:4]
    test = [ln for ln in lines[1:] if ",test," in ln][:6]
    return "\n".join([lines[0]] + dev + test) + "\n"


@pytest.fixture(scope="module")
def site(tmp_path_factory, smollm2, gemma3, serve_site):
    out = tmp_path_factory.mktemp("tasks-site")
    build_site.build_site(out, [smollm2, gemma3])
    return serve_site(out)


def open_page(page, site, path, handle):
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(site + path)
    bounded(page, f"() => window.{handle}.ready", timeout_ms=240_000)
    assert not errors, errors
    return errors


def drop_file(page, name: str, data: bytes, mime: str = "text/csv"):
    page.set_input_files("#file", files=[{"name": name, "mimeType": mime, "buffer": data}])


def pick_task(page, handle: str, file: str):
    page.select_option("#task", file)
    page.wait_for_function(f"() => window.{handle}.picker.current().info && "
                           f"window.{handle}.picker.current().shipped && "
                           f"window.{handle}.picker.current().shipped.file === {json.dumps(file)}", timeout=60_000)


# ---- Tasks page ----

def test_tasks_page_runs_a_dropped_csv_like_the_cpython_service_and_downloads_it(page, site, native, smollm2):
    errors = open_page(page, site, "tasks.html", "pocketmindTasks")
    pick_task(page, "pocketmindTasks", "tasks/support_tickets.json")
    data = ten_rows()
    drop_file(page, "tickets.csv", data.encode())
    page.wait_for_function("() => document.querySelector('#file-info').textContent.includes('tickets.csv')")
    done = bounded(page, "() => window.pocketmindTasks.run()", timeout_ms=240_000)
    assert done["n_done"] == done["total"] == 10 and done["stopped"] is False
    page_labels = page.eval_on_selector_all("#results tbody td.answer", "cells => cells.map(c => c.textContent)")

    service = TaskService(n_ctx=2048)
    service.add_model(Model.from_file(smollm2, native), "SmolLM2-135M-Instruct.Q4_1")
    service.load_task(TICKETS.read_text(encoding="utf-8"))
    service.start_run(json.dumps({"file": "csv"}), data.encode())
    native_items = []
    while (event := service.step()) is not None:
        native_items.append(json.loads(event))
    assert page_labels == [e["label"] for e in native_items[:-1]]
    assert done["label_counts"] == native_items[-1]["label_counts"]

    with page.expect_download() as info:
        page.click("#download-csv")
    table = list(csv.reader(io.StringIO(Path(info.value.path()).read_text(encoding="utf-8"), newline="")))
    assert table[0][:3] == ["text", "label", "confidence"] and len(table) == 11
    assert [row[1] for row in table[1:]] == page_labels
    assert [row[0] for row in table[1:]] == [e["text"] for e in native_items[:-1]]
    service.close()
    assert not errors, errors


def test_tasks_page_stops_a_run_and_keeps_what_was_done(page, site):
    open_page(page, site, "tasks.html", "pocketmindTasks")
    pick_task(page, "pocketmindTasks", "tasks/review_sentiment.json")
    page.fill("#items", "\n".join(f"review {i}: fine, but the box was dented" for i in range(40)))
    done = bounded(page, """() => {
        const t = window.pocketmindTasks;
        const run = t.run();
        const stopper = new MutationObserver(() => { stopper.disconnect(); document.querySelector('#stop').click(); });
        stopper.observe(document.querySelector('#results tbody'), { childList: true });
        return run;
    }""", timeout_ms=240_000)
    assert done["stopped"] is True and 1 <= done["n_done"] < 40
    assert page.locator("#results tbody tr").count() == done["n_done"]
    assert page.locator("#summary").text_content().startswith("Stopped: ")
    assert not page.locator("#run").is_disabled()  # usable again


def test_tasks_page_extracts_json_that_fits_the_schema(page, site):
    import jsonschema

    open_page(page, site, "tasks.html", "pocketmindTasks")
    pick_task(page, "pocketmindTasks", "tasks/ticket_fields.json")
    page.fill("#items", "Order 55120 never arrived, I want my money back.\nThe app crashes when I open my basket.")
    done = bounded(page, "() => window.pocketmindTasks.run()", timeout_ms=240_000)
    assert done["n_done"] == 2 and done["label_counts"] is None
    schema = json.loads((REPO / "data" / "tasks" / "ticket_fields.json").read_text())["output"]["json_schema"]
    answers = page.eval_on_selector_all("#results tbody td.answer", "cells => cells.map(c => c.textContent)")
    for answer in answers:
        jsonschema.validate(json.loads(answer), schema)
    with page.expect_download() as info:
        page.click("#download-json")
    saved = json.loads(Path(info.value.path()).read_text(encoding="utf-8"))
    assert [item["value"] for item in saved["items"]] == [json.loads(a) for a in answers]


BAD_TASKS = [
    ({"name": "one", "instruction": "x", "output": {"labels": ["only"]}}, "a task needs at least 2 labels; this one has 1"),
    ({"name": "s", "instruction": "x", "output": {"json_schema": {"type": "string", "pattern": "a+"}}}, "pattern"),
    ("{not json", "the task is not valid JSON"),
]


@pytest.mark.parametrize("doc, message", BAD_TASKS)
def test_tasks_page_names_what_is_wrong_with_a_pasted_task(page, site, doc, message):
    open_page(page, site, "tasks.html", "pocketmindTasks")
    page.click("#task-details summary")
    page.fill("#task-json", doc if isinstance(doc, str) else json.dumps(doc))
    page.click("#apply-task")
    page.wait_for_function("() => !document.querySelector('#error').hidden", timeout=60_000)
    text = page.locator("#error").text_content()
    assert text.startswith("The task cannot be used: ") and message in text
    assert page.locator("#run").is_disabled()
    pick_task(page, "pocketmindTasks", "tasks/review_sentiment.json")  # the page stays usable
    assert page.locator("#error").is_hidden()


BAD_FILES = [
    ("latin1.txt", "caf\xe9 au lait\n".encode("latin-1"), "text/plain",
     "the file is not UTF-8 text: byte 0xe9 at offset 3 (line 1)"),
    ("no-text.csv", b"review,label\ngood,positive\n", "text/csv",
     "the file has no column 'text'; its columns are: 'review', 'label'"),
    ("empty.csv", b"", "text/csv", "the file is empty"),
    ("huge.csv", b"text\n" + b"x" * 50_000_000, "text/csv", "the file is 50.0 MB; the limit is 50 MB"),
]


@pytest.mark.parametrize("name, data, mime, message", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_tasks_page_refuses_a_bad_file_with_its_message_and_runs_the_next(page, site, name, data, mime, message):
    open_page(page, site, "tasks.html", "pocketmindTasks")
    pick_task(page, "pocketmindTasks", "tasks/review_sentiment.json")
    drop_file(page, name, data, mime)
    page.wait_for_function(f"() => document.querySelector('#file-info').textContent.includes({json.dumps(name)})")
    with pytest.raises(Exception):
        bounded(page, "() => window.pocketmindTasks.run()")
    assert message in page.locator("#error").text_content()
    assert page.locator("#results tbody tr").count() == 0  # nothing half-written
    page.fill("#items", "Great kettle, boils fast.")
    done = bounded(page, "() => window.pocketmindTasks.run()", timeout_ms=120_000)
    assert done["n_done"] == 1 and page.locator("#error").is_hidden()


# ---- Evaluate page ----

def test_evaluate_page_scores_two_models_ensembles_and_the_cascade_like_the_cli(page, site, native, smollm2, gemma3):
    errors = open_page(page, site, "evaluate.html", "pocketmindEvaluate")
    pick_task(page, "pocketmindEvaluate", "tasks/support_tickets.json")
    data = ten_rows()
    drop_file(page, "ten.csv", data.encode())
    page.fill("#shots", "0")
    report = bounded(page, "() => window.pocketmindEvaluate.evaluate()", timeout_ms=480_000)
    names = ["SmolLM2-135M-Instruct.Q4_1 0-shot", "gemma-3-270m-q4_k_m 0-shot", "ensemble majority", "ensemble mean",
             "ensemble weighted", "cascade"]
    assert [s["name"] for s in report["setups"]] == names and report["n"] == 6 and report["stopped"] is False

    task = Task.load(TICKETS)
    rows, dev = eval_rows(data.encode(), task.text_column, task.label_column, task.labels)
    with Model.from_file(smollm2, native) as small, Model.from_file(gemma3, native) as big:
        lineup = Lineup(task, [("SmolLM2-135M-Instruct.Q4_1", small.context(n_ctx=2048)),
                               ("gemma-3-270m-q4_k_m", big.context(n_ctx=2048))], [0]).fit(dev)
        evaluation = lineup.evaluation(rows)
        for _ in evaluation:
            pass
    for mine, theirs in zip(report["setups"], evaluation.report.setups, strict=True):
        assert mine["predictions"] == list(theirs.predictions), mine["name"]
        assert mine["accuracy"] == theirs.accuracy and mine["macro_f1"] == theirs.macro_f1
    assert report["fitted"]["cascade"]["voters"] == lineup.fitted["cascade"]["voters"]

    # the page shows it: a table row per setup, a dot per setup in the chart, three hosted prices, a recommendation
    assert page.locator("#table tbody tr").count() == 6
    labels = ", ".join(page.eval_on_selector_all("#chart svg text", "ts => ts.map(t => t.textContent)"))
    assert all(name in labels for name in names)  # a dot per setup; setups at the same point share one
    assert 1 <= page.locator("#chart svg circle").count() <= 6
    assert page.locator("#hosted tbody tr").count() == 3
    assert page.locator("#recommendation").text_content().startswith("Recommended for ")
    assert page.locator("#table tbody tr.recommended").count() == 1
    memory = page.eval_on_selector_all("#table tbody td:nth-child(6)", "cells => cells.map(c => c.textContent)")
    assert all(m.endswith("MB") or m.endswith("GB") for m in memory)
    page.fill("#target", "0")
    page.dispatch_event("#target", "change")
    page.wait_for_function("() => document.querySelector('#recommendation').textContent.includes('at least 0.000')")
    with page.expect_download() as info:
        page.click("#download-json")
    saved = json.loads(Path(info.value.path()).read_text(encoding="utf-8"))
    assert [s["predictions"] for s in saved["setups"]] == [s["predictions"] for s in report["setups"]]

    # two workers side by side (each answers for one model, the page's worker evaluates): the same results
    page.fill("#workers", "2")
    parallel = bounded(page, "() => window.pocketmindEvaluate.evaluate()", timeout_ms=480_000)
    assert parallel["workers"] == 2 and len([w for w in page.workers if w.url.endswith("/task-worker.js")]) == 2
    for mine, theirs in zip(parallel["setups"], report["setups"], strict=True):
        assert (mine["name"], mine["predictions"], mine["accuracy"]) == (theirs["name"], theirs["predictions"],
                                                                         theirs["accuracy"])
    assert parallel["fitted"] == report["fitted"]
    assert "with 2 workers side by side" in page.locator("#here").text_content()
    assert not errors, errors


@pytest.mark.parametrize("data, message", [
    (b"id,split,text,label\nt1,test,hello,billing\nt2,test,hi,sales\n",
     "row 2 (line 3) has the label 'sales', which is not one of: billing, shipping, technical, account, returns"),
    (b"id,split,text\nt1,test,hello\n", "the file has no column 'label'; its columns are: 'id', 'split', 'text'"),
    (b"id,split,text,label\nt1,dev,hello,billing\n", "no rows have split 'test'; the splits present are: 'dev'"),
])
def test_evaluate_page_refuses_bad_data_with_its_message(page, site, data, message):
    open_page(page, site, "evaluate.html", "pocketmindEvaluate")
    pick_task(page, "pocketmindEvaluate", "tasks/support_tickets.json")
    for box in page.locator("#models input").all()[1:]:
        box.uncheck()  # one model: quick
    drop_file(page, "bad.csv", data)
    page.wait_for_function("() => document.querySelector('#data-name').textContent.startsWith('bad.csv')")
    with pytest.raises(Exception):
        bounded(page, "() => window.pocketmindEvaluate.evaluate()", timeout_ms=240_000)
    assert page.locator("#error").text_content() == message
    assert page.locator("#results").is_hidden()
    assert not page.locator("#run").is_disabled()


def head_rows(n_test: int = 2) -> str:
    """The shipped tickets' header with 4 dev rows and n_test test rows of each label: a small labelled CSV."""
    rows = list(csv.DictReader(io.StringIO(TICKETS_CSV)))
    labels = Task.load(TICKETS).labels
    keep = [r for label in labels for split, n in (("dev", 4), ("test", n_test))
            for r in [r for r in rows if r["label"] == label and r["split"] == split][:n]]
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(keep)
    return out.getvalue()


def test_tasks_page_trains_a_head_draws_its_curve_and_downloads_and_imports_it(page, site, native, smollm2, tmp_path):
    from pocketmind.search.index import file_sha256
    from pocketmind.train.head import Head

    errors = open_page(page, site, "tasks.html", "pocketmindTasks")
    pick_task(page, "pocketmindTasks", "tasks/support_tickets.json")
    data = head_rows()
    drop_file(page, "tickets.csv", data.encode())
    page.wait_for_function("() => document.querySelector('#file-info').textContent.includes('tickets.csv')")
    page.fill("#head-seed", "3")
    done = bounded(page, "() => window.pocketmindTasks.trainHead()", timeout_ms=240_000)
    assert done["head"] == "SmolLM2-135M-Instruct.Q4_1 head" and done["stopped"] is False
    assert done["n"] == {"train": 15, "dev": 5, "test": 10}
    points = page.get_attribute("#head-loss", "points").split()
    assert len(points) == done["training"]["epochs"] and len(page.get_attribute("#head-acc", "points").split()) == \
        len(points)
    assert page.locator("#head-summary").text_content().startswith('Head "SmolLM2-135M-Instruct.Q4_1 head": test '
                                                                    "accuracy ")
    assert page.locator("#head-epoch").text_content().startswith(f"Epoch {done['training']['epochs']}: loss ")

    # the same CSV and seed through the CPython service: the same split, and (features differ in the last bits
    # between wasm and native) the same test accuracy within one item
    service = TaskService(n_ctx=2048)
    service.add_model(Model.from_file(smollm2, native), "SmolLM2-135M-Instruct.Q4_1", sha256=file_sha256(smollm2))
    service.load_task(TICKETS.read_text(encoding="utf-8"))
    service.start_train_head(json.dumps({"file": "csv", "seed": 3}), data.encode())
    while (event := service.step()) is not None:
        native_done = json.loads(event)
    native_head = Head.from_json(service.export_head(native_done["head"]))
    service.close()
    assert native_done["n"] == done["n"]
    assert abs(native_done["accuracy"]["test"] - done["accuracy"]["test"]) <= 0.1 + 1e-9

    with page.expect_download() as info:
        page.click("#download-head")
    head_file = tmp_path / "head.json"
    head_file.write_bytes(Path(info.value.path()).read_bytes())
    head = Head.load(head_file)
    head.check(model_sha256=file_sha256(smollm2), labels=Task.load(TICKETS).labels, dim=576)
    assert head.summary["seed"] == 3 and head.summary["test_accuracy"] == done["accuracy"]["test"]
    # the weights too: the same code on features that differ in the last bits (wasm against native kernels), so
    # the same epochs and a tolerance (measured: 3.7 % of the largest weight, bias 1.2e-4)
    assert head.summary["best_epoch"] == native_head.summary["best_epoch"]
    assert np.abs(head.weights - native_head.weights).max() <= 0.1 * np.abs(native_head.weights).max()
    assert np.abs(head.bias - native_head.bias).max() <= 0.01

    page.set_input_files("#head-file", files=[{"name": "head.json", "mimeType": "application/json",
                                              "buffer": head_file.read_bytes()}])
    page.wait_for_function("() => document.querySelector('#head-summary').textContent.startsWith('Imported head')")
    assert not page.locator("#download-head").is_disabled()
    # a damaged file: the worker's message, and the page stays usable
    page.set_input_files("#head-file", files=[{"name": "bad.json", "mimeType": "application/json",
                                              "buffer": b'{"format": "x"}'}])
    page.wait_for_function("() => document.querySelector('#error').textContent.includes('not a pocketmind head')")
    assert not page.locator("#train-head").is_disabled()
    assert not errors, errors

    # the head was kept in the browser: the Evaluate page offers it for this task as one more voter
    page.goto(site + "evaluate.html")
    bounded(page, "() => window.pocketmindEvaluate.ready", timeout_ms=240_000)
    pick_task(page, "pocketmindEvaluate", "tasks/support_tickets.json")
    name = "SmolLM2-135M-Instruct.Q4_1 head"
    page.wait_for_function(f"() => [...document.querySelectorAll('#heads input')].some((i) => i.value === "
                           f"{json.dumps(name)})", timeout=60_000)
    page.check(f"#heads input[value='{name}']")
    page.uncheck("#models input[value$='gemma-3-270m-q4_k_m.gguf']")
    page.set_input_files("#file", files=[{"name": "ten.csv", "mimeType": "text/csv", "buffer": ten_rows().encode()}])
    page.fill("#shots", "0")
    summary = bounded(page, "() => window.pocketmindEvaluate.evaluate()", timeout_ms=240_000)
    assert name in [s["name"] for s in summary["setups"]]


def test_tasks_page_fine_tunes_stops_keeps_the_best_weights_and_every_menu_offers_the_model(page, site, native, smollm2,
                                                                                            tmp_path):
    """SmolLM2 in the page: dequantized to F32 in the worker, one block trained on the tickets' rows until Stop,
    the kept model stored and offered by the Tasks, Evaluate and chat pages; the untrained dev loss is CPython's."""
    from pocketmind.tasks import parse_rows
    from pocketmind.train.finetune import FinetuneRun

    errors = open_page(page, site, "tasks.html", "pocketmindTasks")
    pick_task(page, "pocketmindTasks", "tasks/support_tickets.json")
    data = head_rows(n_test=1)  # few test rows: each is measured before and after training
    drop_file(page, "tickets.csv", data.encode())
    page.wait_for_function("() => document.querySelector('#file-info').textContent.includes('tickets.csv')")
    page.fill("#ft-layers", "1")
    page.fill("#ft-epochs", "3")
    page.evaluate("() => { window.ftRun = window.pocketmindTasks.finetune(); }")
    # the first training window's loss is drawn; then Stop
    page.wait_for_function("() => document.querySelector('#ft-loss').getAttribute('points').split(' ').length >= 1 "
                           "&& document.querySelector('#ft-loss').getAttribute('points') !== ''", timeout=600_000)
    page.click("#stop-finetune")
    done = bounded(page, "() => window.ftRun", timeout_ms=600_000)
    assert done["stopped"] and done["written"] and done["kept"] is not None
    assert done["n"] == {"train": 15, "dev": 5, "test": 5} and done["options"]["layers"] == 1
    epochs = done["epochs"]
    assert epochs[0]["epoch"] == 0 and epochs[-1]["partial"]
    assert done["best_epoch"] == min(epochs, key=lambda e: e["dev_loss"])["epoch"]  # what Stop kept
    assert done["accuracy"]["before"] is not None and done["accuracy"]["after"] is not None
    kept = done["kept"]
    assert kept["name"].startswith("SmolLM2-135M-Instruct.Q4_1-support-tickets-") and kept["size"] > 100e6
    assert page.locator("#ft-summary").text_content().startswith("Stopped early, the best weights so far kept. ")
    assert f'Kept as "{kept["name"]}"' in page.locator("#ft-summary").text_content()

    # the same rows and seed in CPython: the same split and, before any training, the same dev loss
    task = Task.load(TICKETS)
    rows = parse_rows(data.encode(), task.text_column, task.label_column, task.labels)
    run = FinetuneRun(task, rows, smollm2, tmp_path / "unused.gguf", tmp_path, backend=native, measure=False,
                      layers=1)
    first = next(e for e in run if e["type"] == "epoch")  # the run's generator is closed here: nothing is written
    assert (len(run.train), len(run.dev), len(run.test)) == (15, 5, 5)
    # wasm and x86 sum in other orders; over the dev rows' windows the mean loss moves by less than this
    assert abs(first["dev_loss"] - epochs[0]["dev_loss"]) < 1e-3

    # the kept model is in this page's menu and answers
    assert page.locator(f"#model option[value='{kept['url']}']").count() == 1
    page.select_option("#model", kept["url"])
    page.wait_for_function(f"() => window.pocketmindTasks.client.models.has({json.dumps(kept['name'])})",
                           timeout=240_000)
    page.fill("#items", "My invoice was charged twice this month.")
    answered = bounded(page, "() => window.pocketmindTasks.run()", timeout_ms=240_000)
    assert answered["n_done"] == 1 and answered["label_counts"]
    assert not errors, errors

    # and the other pages list it from the model store
    for path, selector in (("evaluate.html", "#models input"), ("index.html", "#model option")):
        page.goto(site + path)
        page.wait_for_function(f"() => [...document.querySelectorAll({json.dumps(selector)})]"
                               f".some((e) => e.value === {json.dumps(kept['url'])})", timeout=120_000)
