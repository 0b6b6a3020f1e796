"""What the tasks page's worker calls: one model, one task, runs over many texts and evaluations, JSON in and out.

Like ChatService, strings cross the JS bridge and the work advances one event per step(), so the worker can yield
between items, draw progress and pass on a stop. The same class runs under CPython with the native backend, and
every answer comes from the task layer the CLI uses (Task.run, tasks.data.parse_rows, Voter, evaluate).

The contract with the page:

- `TaskService.from_buffer(backend, buffer, size, n_ctx=2048, n_threads=1)`: the buffer rule of
  ChatService.from_buffer (on success the model owns the buffer; on failure this raises and it is the caller's).
- `load_task(task_json)`: a task document (tasks.task); returns {name, labels (or null), json_schema (or null),
  n_examples}. A bad document raises TaskError with its message.
- `start_run(request_json)`: {"items": [text, ...]} or {"csv": text} (the task's text column; other columns are
  ignored), "shots": k (default 0), "max_items": n (optional: only the first n).
- `start_eval(request_json)`: {"csv": text with the task's text and label columns, "split": "test" (default; "all"
  takes every row), "shots": [k, ...] (default [0]; one setup per count, named "k-shot"), "max_items": n}.
  Bad CSV raises tasks.DataError with the CLI's messages (row and line numbers).
- `step()`: the next event as JSON, None once the run or evaluation is over:
  run: {"type": "item", "index", "text", "label", "confidence", "probs": {label: p}, "n_tokens", "seconds"} per
  item (a JSON task: "value" in place of "label", confidence and probs null), then {"type": "done", "stopped",
  "n_done", "total", "n_tokens", "seconds", "label_counts" (label tasks) or null};
  eval: {"type": "progress", "setup", "done", "total"} per item per setup, then {"type": "done", "stopped", ...}
  with evaluate()'s report (Report.as_dict: task, labels, n, setups with accuracy, macro_f1, ms_per_item,
  n_tokens, predictions, confusion, ...).
- `stop()`: the run or evaluation ends before its next item; its done event says "stopped": true and holds what
  was finished (a stopped evaluation reports each started setup on the rows it answered, its own "n").
- `results_csv()`, `results_json()`: the last run's items, for download (a stopped run: the items it finished).
"""
from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterator

from .capi import Backend
from .engine import Model, load_service
from .tasks import Report, Task, Voter, evaluate, parse_rows
from .tasks.task import DEFAULT_N_CTX


class TaskService:
    def __init__(self, model: Model, n_ctx: int = DEFAULT_N_CTX, n_threads: int = 1):
        from .chat_template import ChatTemplate

        ChatTemplate.for_model(model)  # a template that does not compile fails the load, not the first item
        self.model = model
        size = min(n_ctx, model.n_ctx_train) if model.n_ctx_train > 0 else n_ctx
        self.ctx = model.context(n_ctx=size, n_threads=n_threads)
        self.task: Task | None = None
        self._events: Iterator[dict] | None = None
        self._stop = False
        self._results: list[dict] | None = None

    @classmethod
    def from_buffer(cls, backend: Backend, buffer: int, size: int, n_ctx: int = DEFAULT_N_CTX, n_threads: int = 1):
        return load_service(lambda model: cls(model, n_ctx, n_threads), backend, buffer, size)

    def close(self) -> None:
        self._events = None
        self.model.close()  # closes the context too

    def load_task(self, task_json: str) -> str:
        self.task = Task.parse(task_json)
        self._events, self._results = None, None  # a new task: the old one's run and results are gone
        return json.dumps({"name": self.task.name, "labels": _list_or_none(self.task.labels),
                           "json_schema": self.task.json_schema, "n_examples": len(self.task.examples)})

    # ---- starting ----

    def start_run(self, request_json: str) -> None:
        """Begin a run over {"items": [...]} or {"csv": text}, with "shots" and "max_items"."""
        task, request = self._begin(request_json)
        shots = _shots(request.get("shots", 0), "shots")
        task.messages("x", shots)  # an impossible shot count is refused now, not on the first item
        has_items, has_csv = "items" in request, "csv" in request
        if has_items == has_csv:
            raise ValueError('a run needs "items" (a list of texts) or "csv" (CSV text), not both')
        if has_items:
            texts = _texts(request["items"])
        else:
            texts = [r.text for r in parse_rows(_csv_bytes(request["csv"]), task.text_column, label_column=None)]
        texts = texts[:_max_items(request)]
        self._results = []
        self._events = self._run(task, texts, shots)

    def start_eval(self, request_json: str) -> None:
        """Begin an evaluation of {"csv": text, "split", "shots": [k, ...], "max_items"}."""
        task, request = self._begin(request_json)
        if task.labels is None:
            raise ValueError("evaluation needs a task with labels; JSON-output tasks are not supported yet")
        shots = request.get("shots", [0])
        if not isinstance(shots, list) or not shots:
            raise ValueError(f"shots must be a non-empty list of counts, e.g. [0, 3]; got {shots!r}")
        shots = sorted({_shots(k, "each shot count") for k in shots})
        split = request.get("split", "test")
        if not isinstance(split, str):
            raise ValueError(f"split must be a string, got {split!r}")
        if "csv" not in request:
            raise ValueError('an evaluation needs "csv": CSV text with the task\'s text and label columns')
        rows = parse_rows(_csv_bytes(request["csv"]), task.text_column, task.label_column, task.labels,
                          split=None if split == "all" else split)[:_max_items(request)]
        # cached voters, as in the CLI: each step asks one row, and evaluate() then reads the cached answers
        # (Voter.from_task refuses an impossible shot count here, not on the first step)
        voters = {f"{k}-shot": Voter.from_task(task, self.ctx, k, name=f"{k}-shot") for k in shots}
        self._events = self._eval(task, rows, voters)

    def _begin(self, request_json: str) -> tuple[Task, dict]:
        if self.task is None:
            raise ValueError("no task is loaded: call load_task first")
        request = json.loads(request_json)
        if not isinstance(request, dict):
            raise ValueError("the request must be a JSON object")
        self._stop = False
        self._events = None
        return self.task, request

    # ---- running ----

    def stop(self) -> None:
        """Ask the run or evaluation to end before its next item."""
        self._stop = True

    def step(self) -> str | None:
        """The next event as JSON (see the module's docstring); None once it is over."""
        if self._events is None:
            return None
        event = next(self._events, None)
        if event is None or event["type"] == "done":
            self._events = None
        return None if event is None else json.dumps(event, ensure_ascii=False)

    def _run(self, task: Task, texts: list[str], shots: int) -> Iterator[dict]:
        for index, text in enumerate(texts):
            if self._stop:
                break
            try:
                result = task.run(self.ctx, text, shots)
            except ValueError as e:  # e.g. an item too long for the context: say which
                raise ValueError(f"item {index + 1}: {e}") from e
            item = {"index": index, "text": text, **result.as_dict()}
            if task.labels is None:
                item.update(confidence=None, probs=None)
            self._results.append(item)
            yield {"type": "item", **item}
        counts = Counter(r["label"] for r in self._results) if task.labels is not None else None
        yield {"type": "done", "stopped": len(self._results) < len(texts), "n_done": len(self._results),
               "total": len(texts), "n_tokens": sum(r["n_tokens"] for r in self._results),
               "seconds": sum(r["seconds"] for r in self._results),
               "label_counts": None if counts is None else {label: counts[label] for label in task.labels}}

    def _eval(self, task: Task, rows: list, voters: dict[str, Voter]) -> Iterator[dict]:
        answered = {}  # setup -> rows it answered
        for name, voter in voters.items():
            for done, row in enumerate(rows, 1):
                if self._stop:
                    yield {"type": "done", "stopped": True, **self._partial_report(task, rows, voters, answered)}
                    return
                try:
                    voter(row.text)
                except ValueError as e:
                    raise ValueError(f"setup {name!r}, row {row.number}: {e}") from e
                answered[name] = done
                yield {"type": "progress", "setup": name, "done": done, "total": len(rows)}
        yield {"type": "done", "stopped": False, **evaluate(task, rows, voters).as_dict()}

    @staticmethod
    def _partial_report(task: Task, rows: list, voters: dict[str, Voter], answered: dict[str, int]) -> dict:
        """What a stopped evaluation finished: each started setup, evaluated on the rows it answered."""
        setups = [evaluate(task, rows[:n], {name: voters[name]}).setups[0] for name, n in answered.items()]
        return Report(task.name, task.labels, len(rows), tuple(setups)).as_dict()

    # ---- results ----

    def results_json(self) -> str:
        return json.dumps({"task": self._finished_task().name, "items": self._results}, ensure_ascii=False)

    def results_csv(self) -> str:
        """One row per item: the text, then the label, its confidence and each label's probability (a JSON task:
        the value as JSON text). The csv module quotes what needs it, so any text reads back as written."""
        task = self._finished_task()
        out = io.StringIO(newline="")
        writer = csv.writer(out, lineterminator="\r\n")
        if task.labels is None:
            writer.writerow(["text", "value"])
            writer.writerows([r["text"], json.dumps(r["value"], ensure_ascii=False)] for r in self._results)
        else:
            writer.writerow(["text", "label", "confidence"] + [f"p({label})" for label in task.labels])
            writer.writerows([r["text"], r["label"], r["confidence"]] + [r["probs"][label] for label in task.labels]
                             for r in self._results)
        return out.getvalue()

    def _finished_task(self) -> Task:
        if self._results is None:
            raise ValueError("there are no results yet: start a run first")
        return self.task


def _list_or_none(labels) -> list | None:
    return None if labels is None else list(labels)


def _shots(k, what: str) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {k!r}")
    return k


def _max_items(request: dict) -> int | None:
    n = request.get("max_items")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"max_items must be a positive integer, got {n!r}")
    return n


def _texts(items) -> list[str]:
    if not isinstance(items, list) or not items:
        raise ValueError("items must be a non-empty list of texts")
    for i, text in enumerate(items, 1):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"item {i} must be a non-empty text, got {text!r}")
    return items


def _csv_bytes(text) -> bytes:
    """CSV text from the page as the bytes parse_rows checks (a dropped file's bytes take the same path)."""
    if not isinstance(text, str):
        raise ValueError(f"csv must be CSV text, got {type(text).__name__}")
    return text.encode("utf-8")
