"""What the Tasks and Evaluate pages' worker calls: a few loaded models, one task, runs over many texts and
evaluations of every model, ensemble and cascade; JSON in and out.

Like ChatService, strings cross the JS bridge and the work advances one event per step(), so the worker can yield
between items, draw progress and pass on a stop. The same class runs under CPython with the native backend, and
every answer comes from the task layer the CLI uses (Task.run, tasks.data.parse_rows, tasks.compare.Lineup).

The contract with the page:

- `TaskService(n_ctx=2048, n_threads=1)`, then `add_buffer(backend, buffer, size, name)` per model (the buffer
  rule of ChatService.from_buffer: on success the model owns the buffer; on failure this raises and it is the
  caller's) or `add_model(model, name)`; each returns the model's card as JSON (engine.Model.card plus "name").
  Models stay loaded together (an evaluation asks them all) until `remove_model(name)` or `close()`.
  `TaskService.from_buffer(backend, buffer, size, ...)`: a service with that one model, named "model".
- `load_task(task_json)`: a task document (tasks.task); returns {name, labels (or null), json_schema (or null),
  n_examples}. A bad document raises TaskError with its message.
- `start_run(request_json, data=None)`: the items are {"items": [text, ...]}, {"csv": text} (the task's text
  column; other columns are ignored), {"txt": text} (one item per non-blank line), or `data`, a dropped file's
  bytes, with "file": "csv" or "txt". Also "model": a loaded model's name (default: the first loaded), "shots": k
  (default 0), "max_items": n (optional: only the first n).
- `start_eval(request_json, data=None)`: {"csv": text, or `data` bytes, with the task's text and label columns;
  "split": "test" (default; "all" takes every row and fits nothing), "dev_split": "dev" (the rows that fit
  ensemble weights, calibration and cascade thresholds; a file without them: majority and mean only,
  uncalibrated), "shots": [k, ...] or "k,k" (default: the task's "voters", else [0]), "models": [name, ...]
  (default: every loaded model), "max_items": n (the first n rows of each split)}. Bad CSV raises
  tasks.DataError with the CLI's messages (row and line numbers).
- `step()`: the next event as JSON, None once the run or evaluation is over:
  run: {"type": "item", "index", "total", "text", "label", "confidence", "probs": {label: p}, "n_tokens",
  "seconds"} per item (a JSON task: "value" in place of "label", confidence and probs null; before each item,
  {"type": "writing", "index", "total", "n_tokens"} after each prompt batch and token), then {"type": "done",
  "stopped", "n_done", "total", "n_tokens", "seconds", "label_counts" (label tasks) or null};
  eval: {"type": "progress", "phase": "dev" or "test", "setup", "done", "total"} per item, then {"type": "done",
  "stopped", ...Lineup.summary: task, labels, n, setups (accuracy, macro_f1, ms_per_item, tokens_per_s,
  cost_per_item, models, model_bytes, predictions, confusion, ...), models, fitted, hosted, recommendation}.
- `start_answers(request_json, data=None)`: the same request, for a worker that answers in parallel for its own
  "models": {"type": "progress", "phase": "answers", ...} per item, then {"type": "done", "stopped", "answers":
  {model: {n_params, size, by_shots: {k: {text: [probs, n_tokens, seconds]}}}}}. The evaluating worker's
  start_eval takes that as "answers" (merged over the workers) for models it has not loaded: the same labels,
  accuracy, ensembles and cascade as if it had asked them itself.
- `stop()`: the run or evaluation ends before its next item (a JSON task's run: before its next token, the item
  being written left out); its done event says "stopped": true and holds what
  was finished (a stopped evaluation reports each started setup on the rows it answered; stopped while fitting on
  the dev rows, it has no setups).
- `recommend(target_json)`: the last evaluation's recommendation for a target accuracy (a number, or null: within
  a point of the best), as JSON.
- `results_csv()`, `results_json()`: the last run's items, for download (a stopped run: the items it finished).

Task heads (train.run.HeadRun, what `python -m pocketmind train-head` runs):
- `add_buffer`/`add_model` take the model file's sha256 (as the model store verified it; optional, keyword
  `sha256`): a head records it and is only used with that model. A request may give "model_sha256" instead.
- `start_train_head(request_json, data=None)`: {"csv": text, or `data` bytes with "file": "csv"; the task's text
  and label columns and a split column: "train" rows train, else part of the non-test rows, "test" rows are only
  measured; "model": a loaded model's name (default: the first), "name": the head's name (default "<model>
  head"), "seed" (default 0), "l2", "max_epochs", "patience", "max_items": the first n rows}. Everything is checked
  before the first feature is computed (train.head.check_rows: labels, at least 4 and at most 10 000 rows, two
  labels or more). step() then gives {"type": "progress", "phase": "features", "done", "total"} per decode batch
  of texts, {"type": "epoch", "epoch", "loss", "train_accuracy", "dev_loss", "dev_accuracy"} per epoch, then
  {"type": "done",
  "stopped", "head": its name (null when stopped before training), "accuracy": {train, dev, test}, "macro_f1",
  "n", "seconds": {features, training}, "training": the head's summary}. A stop while training keeps the best epoch
  so far; the head is kept under its name.
- `export_head(name)`: the head as JSON text (its file); `import_head(head_json, name=None)`: a head file, checked
  (format, shapes, finite numbers) and refused (train.HeadError) unless a loaded model has its sha256 and the
  loaded task has its labels; returns {"name", "model", "task", "labels", "dim", "training"}.
- `start_eval` takes "heads": [name, ...]: each head joins the line-up as one more voter (ensembles and cascade).

Fine-tuning (train.finetune.FinetuneRun, what `python -m pocketmind finetune` runs):
- `start_finetune(request_json, data=None)`: the labelled CSV as for a head; "model": a loaded model's name
  (default: the first), "layers", "epochs", "lr", "n_ctx", "weight_type", "seed", "max_items", "measure" (default
  true: test accuracy before and after). Refused before any work: bad rows or options (FinetuneError), a model
  llama.cpp cannot train (train.finetune.check_trainable: Gemma), and in the page a model whose training would not
  fit the wasm heap (train.finetune.check_memory: what it needs and what is left). step() gives FinetuneRun's events (convert, measure, step, epoch, quantize), then {"type": "done",
  ...FinetuneRun.result(), "out": the written GGUF's path in the backend's file system (the worker reads it and
  removes it with take_finetuned(path)), "base": the model's name}. A stop keeps the best weights so far and still
  writes them; stopped before training, "out" is null.
"""
from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterator

from .capi import Backend
from .engine import Context, Model, load_service
from .stepped_service import SteppedService
from .tasks import Task, parse_rows
from .tasks.data import eval_rows, read_lines
from .tasks.compare import Answers, Lineup, LineupModel, parse_shots, recommend
from .tasks.task import DEFAULT_N_CTX
from .train import HeadError
from .train.features import feature_extractor
from .train.head import DEFAULTS as HEAD_DEFAULTS, Head
from .train.finetune import DEFAULTS as FINETUNE_DEFAULTS, FinetuneRun, check_memory, check_trainable
from .train.run import HeadRun, head_voter


FINETUNE_DIR = "/tmp"  # natively the OS's temp folder; in the page the engine module's MEMFS (/tmp exists in both)
TRAIN_KEYS = {"csv", "file", "model", "model_sha256", "name", "seed", "max_items"}  # and the training options


class TaskService(SteppedService):
    def __init__(self, n_ctx: int = DEFAULT_N_CTX, n_threads: int = 1):
        super().__init__()
        self.n_ctx, self.n_threads = n_ctx, n_threads
        self.contexts: dict[str, Context] = {}  # model name -> its context, in loading order
        self.task: Task | None = None
        self._results: list[dict] | None = None
        self._summary: dict | None = None  # the last evaluation's
        self.sha256: dict[str, str | None] = {}  # model name -> its file's sha256, when the loader gave it
        self.heads: dict[str, Head] = {}  # trained or imported heads by name
        self._embedders: dict = {}  # model name -> its feature extractor (an embeddings context), made on first use
        self._finetune_serial = 0  # numbers the fine-tuned models' files

    @classmethod
    def from_buffer(cls, backend: Backend, buffer: int, size: int, n_ctx: int = DEFAULT_N_CTX, n_threads: int = 1):
        service = cls(n_ctx, n_threads)
        service.add_buffer(backend, buffer, size, "model")
        return service

    # ---- models ----

    def add_buffer(self, backend: Backend, buffer: int, size: int, name: str, sha256: str | None = None) -> str:
        """Load a model from library memory (the buffer rule: see the module's docstring); its card as JSON."""
        self._check_new(name)
        return load_service(lambda model: self.add_model(model, name, sha256), backend, buffer, size)

    def add_model(self, model: Model, name: str, sha256: str | None = None) -> str:
        """Take `model` into the service (closed with it); raises, taking nothing, if its chat template or its
        context fails."""
        from .chat_template import ChatTemplate

        self._check_new(name)
        ChatTemplate.for_model(model)  # a template that does not compile fails the load, not the first item
        size = min(self.n_ctx, model.n_ctx_train) if model.n_ctx_train > 0 else self.n_ctx
        self.contexts[name] = model.context(n_ctx=size, n_threads=self.n_threads)
        self.sha256[name] = sha256
        return json.dumps({"name": name, **model.card()}, ensure_ascii=False)

    def _check_new(self, name: str) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a model needs a name")
        if name in self.contexts:
            raise ValueError(f"a model named {name!r} is already loaded")
        if self._events is not None:
            raise ValueError("a run or evaluation is in progress: stop it before loading a model")

    def remove_model(self, name: str) -> None:
        if self._events is not None:
            raise ValueError("a run or evaluation is in progress: stop it before unloading a model")
        ctx = self.contexts.pop(name, None)
        if ctx is None:
            raise ValueError(f"no model named {name!r} is loaded")
        self.sha256.pop(name, None)
        self._embedders.pop(name, None)
        ctx.model.close()  # closes the context too (and the feature extractor's)

    def close(self) -> None:
        self._events = None
        self._embedders.clear()
        for name in list(self.contexts):
            self.contexts.pop(name).model.close()

    def _context(self, name) -> Context:
        if not self.contexts:
            raise ValueError("no model is loaded")
        if name is None:
            return next(iter(self.contexts.values()))
        if name not in self.contexts:
            raise ValueError(f"no model named {name!r} is loaded; the models are: {', '.join(self.contexts)}")
        return self.contexts[name]

    def load_task(self, task_json: str) -> str:
        self.task = Task.parse(task_json)
        self._events, self._results = None, None  # a new task: the old one's run and results are gone
        return json.dumps({"name": self.task.name, "labels": _list_or_none(self.task.labels),
                           "json_schema": self.task.json_schema, "n_examples": len(self.task.examples)})

    # ---- starting ----

    def start_run(self, request_json: str, data=None) -> None:
        """Begin a run over {"items"}, {"csv"}, {"txt"} or a file's bytes, with "model", "shots" and "max_items"."""
        task, request = self._begin(request_json)
        ctx = self._context(request.get("model"))
        shots = _shots(request.get("shots", 0), "shots")
        task.messages("x", shots)  # an impossible shot count is refused now, not on the first item
        texts = _run_items(task, request, data)[:_max_items(request)]
        self._results = []
        self._events = self._run(task, ctx, texts, shots)

    def start_eval(self, request_json: str, data=None) -> None:
        """Begin an evaluation (see the module's docstring)."""
        lineup, rows, dev = self._lineup(request_json, data, partial=False)
        self._summary = None
        self._events = self._eval(lineup, rows, dev)

    def start_answers(self, request_json: str, data=None) -> None:
        """Begin answering every dev and test row with this worker's models, for an evaluation in another worker
        (the request of start_eval; "models": the ones this worker answers for)."""
        lineup, rows, dev = self._lineup(request_json, data, partial=True)
        texts = list(dict.fromkeys([r.text for r in (dev or [])] + [r.text for r in rows]))  # once each, in order
        self._events = self._answer(lineup, texts)

    def _lineup(self, request_json: str, data, partial: bool) -> tuple[Lineup, list, list | None]:
        task, request = self._begin(request_json)
        if task.labels is None:
            raise ValueError("evaluation needs a task with labels; JSON-output tasks are not supported yet")
        shots = request.get("shots")
        if shots is not None:
            if not isinstance(shots, (list, str)) or not shots:
                raise ValueError(f"shots must be a non-empty list of counts, e.g. [0, 3] or \"0,3\"; got {shots!r}")
            shots = parse_shots(shots)
        split, dev_split = request.get("split", "test"), request.get("dev_split", "dev")
        for key, value in (("split", split), ("dev_split", dev_split)):
            if not isinstance(value, str):
                raise ValueError(f"{key} must be a string, got {value!r}")
        names = request.get("models", list(self.contexts))
        if not isinstance(names, list) or not names:
            raise ValueError(f"models must be a non-empty list of loaded models' names; got {names!r}")
        answers = request.get("answers") or {}  # models answered by other workers (start_answers' results)
        if not isinstance(answers, dict):
            raise ValueError("answers must be an object: model name -> the answers another worker sent")
        models = [(name, Answers.from_json(name, answers[name]) if name in answers else self._context(name))
                  for name in names]
        heads = request.get("heads", [])
        if not isinstance(heads, list) or (heads and partial):
            raise ValueError("heads must be a list of heads' names (in the evaluating worker's request only)")
        raw = _file_bytes(request, data, "an evaluation", ("csv",))
        rows, dev = eval_rows(raw, task.text_column, task.label_column, task.labels, split, dev_split,
                              _max_items(request))
        # hosted tokens are counted with the first requested model loaded here, so with the same tokenizer however
        # the models were spread over workers (the page gives this worker the first model)
        loaded = [self.contexts[n].model for n in names if n in self.contexts]
        tokenizer = loaded[0] if loaded else None
        # refuses an impossible shot count now, not on the first step
        lineup = Lineup(task, models, shots, partial=partial, tokenizer=tokenizer)
        for head_name in heads:
            lineup.add_voter(*self._head_voter(head_name))
        return lineup, rows, dev

    # ---- task heads ----

    def _head_voter(self, name: str):
        """(the named head as a voter, its model as a LineupModel): the head must fit the task and a loaded model."""
        head = self._head(name)
        model_name = self._model_for(head)
        model = self.contexts[model_name].model
        head.check(labels=self.task.labels)
        voter = head_voter(head, self._embedder(model_name), head.model_sha256, name,
                           cost=lambda n, s, p=model.n_params: n * p)
        return voter, LineupModel(model_name, model.n_params, model.size)

    def _head(self, name) -> Head:
        if name not in self.heads:
            known = ", ".join(map(repr, self.heads)) or "none yet"
            raise ValueError(f"no head named {name!r}; the heads are: {known}")
        return self.heads[name]

    def _model_for(self, head: Head) -> str:
        """The loaded model whose sha256 the head records (HeadError naming it when none is)."""
        for name, sha in self.sha256.items():
            if sha == head.model_sha256:
                return name
        raise HeadError(f"this head was trained on the features of model {head.model_name or '?'} (sha256 "
                        f"{head.model_sha256[:12]}…), which is not loaded; load that model first")

    def _embedder(self, name: str):
        if name not in self._embedders:
            self._embedders[name] = feature_extractor(self.contexts[name].model, n_threads=self.n_threads)
        return self._embedders[name]

    def start_train_head(self, request_json: str, data=None) -> None:
        """Begin training a head (see the module's docstring)."""
        task, request = self._begin(request_json)
        if task.labels is None:
            raise HeadError("a head needs a task with labels; JSON-output tasks have no label set to learn")
        model_name = request.get("model") or next(iter(self.contexts), None)
        self._context(model_name)  # a clear error when no such model is loaded
        sha256 = request.get("model_sha256") or self.sha256.get(model_name)
        if not isinstance(sha256, str) or len(sha256) != 64:
            raise HeadError(f"the sha256 of model {model_name!r} is unknown: load it with its sha256, or give "
                            "\"model_sha256\"")
        head_name = request.get("name") or f"{model_name} head"
        if not isinstance(head_name, str) or not head_name.strip():
            raise ValueError(f"a head's name must be a non-empty string, got {head_name!r}")
        unknown = sorted(set(request) - TRAIN_KEYS - set(HEAD_DEFAULTS))
        if unknown:
            raise HeadError(f"unknown key(s) in the request: {', '.join(unknown)}; the keys are: "
                            f"{', '.join(sorted(TRAIN_KEYS | set(HEAD_DEFAULTS)))}")
        options = {k: request[k] for k in HEAD_DEFAULTS if k in request}
        seed = request.get("seed", 0)
        raw = _file_bytes(request, data, "training a head", ("csv",))
        rows = parse_rows(raw, task.text_column, task.label_column, task.labels)[:_max_items(request)]
        run = HeadRun(task, rows, self._embedder(model_name), sha256, model_name, seed, stop=lambda: self._stop,
                      **options)
        self._events = self._train_head(run, head_name)

    def _train_head(self, run: HeadRun, name: str) -> Iterator[dict]:
        yield from run
        if run.head is not None:
            self.heads[name] = run.head
        yield {"type": "done", "head": name if run.head is not None else None, **run.result()}

    def start_finetune(self, request_json: str, data=None) -> None:
        """Begin fine-tuning a loaded model (see the module's docstring)."""
        task, request = self._begin(request_json)
        model_name = request.get("model") or next(iter(self.contexts), None)
        model = self._context(model_name).model
        allowed = {"csv", "file", "model", "seed", "max_items", "measure", *FINETUNE_DEFAULTS}
        unknown = sorted(set(request) - allowed)
        if unknown:
            raise ValueError(f"unknown key(s) in the request: {', '.join(unknown)}; the keys are: "
                             f"{', '.join(sorted(allowed))}")
        options = {k: request[k] for k in FINETUNE_DEFAULTS if k in request}
        raw = _file_bytes(request, data, "fine-tuning", ("csv",))
        rows = parse_rows(raw, task.text_column, task.label_column, task.labels)[:_max_items(request)] \
            if task.labels is not None else []
        source = model.source
        if source is None:
            raise ValueError("this model was loaded from memory that is gone: load it from its file to fine-tune it")
        self._finetune_serial += 1
        out = f"{FINETUNE_DIR}/finetuned-{self._finetune_serial}.gguf"
        run = FinetuneRun(task, rows, source, out, FINETUNE_DIR, backend=model.backend, n_threads=self.n_threads,
                          seed=request.get("seed", 0), measure=request.get("measure", True) is not False,
                          stop=lambda: self._stop, **options)
        check_trainable(model)
        check_memory(model, run.options)
        self._events = self._finetune(run, model_name)

    def _finetune(self, run: FinetuneRun, base: str) -> Iterator[dict]:
        yield from run
        yield {"type": "done", "base": base, **run.result()}

    def take_finetuned(self, path: str) -> None:
        """Remove a fine-tuned model's file once the worker has read it (it would hold memory until the page
        closes)."""
        if not isinstance(path, str) or not path.startswith(FINETUNE_DIR + "/"):
            raise ValueError(f"not a fine-tuned model's file: {path!r}")
        backend = next(iter(self.contexts.values())).model.backend if self.contexts else None
        if backend is not None:
            backend.remove_file(path)

    def export_head(self, name: str) -> str:
        return self._head(name).to_json()

    def import_head(self, head_json, name: str | None = None) -> str:
        """Read a head file (text or bytes), check it against the loaded models and task, and keep it."""
        text = bytes(head_json.to_bytes()) if hasattr(head_json, "to_bytes") else head_json
        head = Head.from_json(text, "the head file")
        model_name = self._model_for(head)
        if self.task is not None and self.task.labels is not None:
            head.check(labels=self.task.labels)
        head.check(dim=self.contexts[model_name].model.n_embd)
        name = name or f"{model_name} head"
        self.heads[name] = head
        return json.dumps({"name": name, "model": model_name, "task": head.task, "labels": list(head.labels),
                           "dim": head.dim, "training": head.summary}, ensure_ascii=False)

    def _answer(self, lineup: Lineup, texts: list[str]) -> Iterator[dict]:
        for setup, done, total in lineup.answering(texts):
            yield {"type": "progress", "phase": "answers", "setup": setup, "done": done, "total": total}
            if self._stop:
                yield {"type": "done", "stopped": True, "answers": None}
                return
        yield {"type": "done", "stopped": False, "answers": lineup.answers(texts)}

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

    def _run(self, task: Task, ctx: Context, texts: list[str], shots: int) -> Iterator[dict]:
        for index, text in enumerate(texts):
            if self._stop:
                break
            result = yield from self._item(task, ctx, text, shots, index, len(texts))
            if result is None:  # stopped while it was being written
                break
            item = {"index": index, "text": text, **result.as_dict()}
            if task.labels is None:
                item.update(confidence=None, probs=None)
            self._results.append(item)
            yield {"type": "item", "total": len(texts), **item}
        counts = Counter(r["label"] for r in self._results) if task.labels is not None else None
        yield {"type": "done", "stopped": len(self._results) < len(texts), "n_done": len(self._results),
               "total": len(texts), "n_tokens": sum(r["n_tokens"] for r in self._results),
               "seconds": sum(r["seconds"] for r in self._results),
               "label_counts": None if counts is None else {label: counts[label] for label in task.labels}}

    def _item(self, task: Task, ctx: Context, text: str, shots: int, index: int, total: int):
        """One item's result, in steps: a JSON item yields a "writing" event after each prompt batch and token, so
        a stop ends it between two tokens (the item is then left out: None)."""
        steps = task.steps(ctx, text, shots)
        try:
            while True:
                n_written = next(steps)
                if self._stop:
                    steps.close()
                    return None
                yield {"type": "writing", "index": index, "total": total, "n_tokens": n_written}
        except StopIteration as end:
            return end.value
        except ValueError as e:  # e.g. an item too long for the context: say which
            raise ValueError(f"item {index + 1}: {e}") from e

    def _eval(self, lineup: Lineup, rows: list, dev: list | None) -> Iterator[dict]:
        report = None
        for setup, done, total in lineup.fitting(dev):
            yield {"type": "progress", "phase": "dev", "setup": setup, "done": done, "total": total}
            if self._stop:
                break
        else:
            evaluation = lineup.evaluation(rows)
            for setup, done, total in evaluation:
                yield {"type": "progress", "phase": "test", "setup": setup, "done": done, "total": total}
                if self._stop:
                    break
            report = evaluation.partial() if evaluation.report is None else evaluation.report
        if report is None or not report.setups:  # stopped before any setup was measured on the test rows
            yield {"type": "done", "stopped": True, "task": lineup.task.name, "labels": list(lineup.task.labels),
                   "n": len(rows), "setups": [], "models": [vars(m) for m in lineup.models], "fitted": lineup.fitted,
                   "hosted": None, "recommendation": None}
            return
        self._summary = lineup.summary(report, rows)
        yield {"type": "done", "stopped": evaluation.report is None, **self._summary}

    def recommend(self, target_json: str) -> str:
        """The last evaluation's recommendation for a target accuracy (JSON number or null)."""
        if self._summary is None:
            raise ValueError("there is no finished evaluation to recommend from")
        target = json.loads(target_json)
        if target is not None and (isinstance(target, bool) or not isinstance(target, (int, float))):
            raise ValueError(f"the target accuracy must be a number between 0 and 1 or null, got {target!r}")
        return json.dumps(recommend(self._summary, target))

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


def _file_bytes(request: dict, data, what: str, kinds: tuple[str, ...]) -> bytes:
    """The request's file as bytes: CSV/TXT text in the request (as the page's text box sends it), or a dropped
    file's bytes (`data`; from the page, a JS Uint8Array) with "file" naming its kind. parse_rows checks them as
    the CLI does (UTF-8, size, columns)."""
    given = [k for k in kinds if k in request]
    if data is not None:
        if given:
            raise ValueError(f"give the file's bytes or {' or '.join(map(repr, given))} text, not both")
        if request.get("file") not in kinds:
            raise ValueError(f"a file needs \"file\": one of {', '.join(map(repr, kinds))}; got {request.get('file')!r}")
        return bytes(data.to_bytes() if hasattr(data, "to_bytes") else data)
    if len(given) != 1:
        wanted = " or ".join(f'"{k}" ({k.upper()} text)' for k in kinds)
        raise ValueError(f"{what} needs {wanted} or a file" if len(kinds) > 1 else
                         f"{what} needs \"{kinds[0]}\": CSV text with the task's text and label columns")
    text = request[given[0]]
    if not isinstance(text, str):
        raise ValueError(f"{given[0]} must be {given[0].upper()} text, got {type(text).__name__}")
    return text.encode("utf-8")


def _run_items(task: Task, request: dict, data) -> list[str]:
    if "items" in request:
        if data is not None or "csv" in request or "txt" in request:
            raise ValueError('a run needs one of "items" (a list of texts), "csv", "txt" or a file, not several')
        return _texts(request["items"])
    if data is None and not ({"csv", "txt"} & set(request)):
        raise ValueError('a run needs "items" (a list of texts), "csv" (CSV text), "txt" (one item a line) or a file')
    raw = _file_bytes(request, data, "a run", ("csv", "txt"))
    kind = request.get("file") if data is not None else ("csv" if "csv" in request else "txt")
    if kind == "csv":
        return [r.text for r in parse_rows(raw, task.text_column, label_column=None)]
    return read_lines(raw)
