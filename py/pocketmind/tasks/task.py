"""A task: a small JSON document (name, instruction, output, optional few-shot examples, data and voters) and
running it on one text with a model.

The document's shape (data/tasks/*.json):
    {"name": str, "instruction": str,
     "output": {"labels": [str, ...]} or {"json_schema": {...}},
     "examples": [{"text": str, "label": str}, ...],          optional: few-shot examples
     "data": str, "text_column": str, "label_column": str,    optional: a labelled CSV, relative to the JSON file
     "voters": [{"model": str, "shots": int}, ...],           optional: the ensemble's voters (a model by its
                                                               name, the file name without .gguf; few-shot count)
     "description": str}                                       optional
Anything else is refused by name, so a typo ("example") does not silently drop the few-shot examples.

A label task's answer is always one of its labels: each label is scored after the prompt (labels.score_labels).
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import common_prefix
from ..labels import LabelScores, score_labels

KEYS = {"name", "instruction", "output", "examples", "data", "text_column", "label_column", "voters", "description"}
MIN_LABELS = 2  # one label is no question: the answer is known before the model runs
MAX_LABELS = 1000  # every label is decoded after the prompt; beyond this one item takes minutes in a page
PROMPT_LABELS = 50  # a longer label set is not listed in the prompt (500 labels take thousands of tokens); the
# scoring keeps the answer inside the set either way
JSON_MAX_TOKENS = 256  # a JSON task's answer; the constrained decoder closes the value within it
DEFAULT_N_CTX = 2048  # the cached context's size: room for instruction, a few shots and a long item, little memory



class TaskError(ValueError):
    """A task document that cannot be used, with what is wrong and where."""


@dataclass(frozen=True)
class Example:
    text: str
    label: str


@dataclass(frozen=True)
class ExtractResult:
    """One JSON task's answer: the value (it validates against the task's schema), its text, and the work it took
    (tokens decoded, seconds)."""

    value: Any
    text: str
    n_tokens: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "n_tokens": self.n_tokens, "seconds": self.seconds}


@dataclass(frozen=True)
class TaskResult:
    """One answer: the label, the probability of every label (in the task's order), the chosen label's probability,
    and the work it took (tokens decoded: the prompt plus every label token but the last; seconds)."""

    label: str
    probs: tuple[float, ...]
    confidence: float
    labels: tuple[str, ...]
    n_tokens: int
    seconds: float
    scores: LabelScores | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "confidence": self.confidence, "probs": dict(zip(self.labels, self.probs)),
                "n_tokens": self.n_tokens, "seconds": self.seconds}


@dataclass(frozen=True, eq=False)  # eq=False: identity hashing, so a task can key a cache
class Task:
    name: str
    instruction: str
    labels: tuple[str, ...] | None  # None for a JSON-output task
    json_schema: Mapping[str, Any] | None = None
    examples: tuple[Example, ...] = ()
    data: Path | None = None  # resolved against the task file's folder
    text_column: str = "text"
    label_column: str = "label"
    voters: tuple[Any, ...] = ()
    description: str = ""

    # ---- loading ----

    @classmethod
    def load(cls, source: str | os.PathLike | Mapping[str, Any]) -> Task:
        """A task from a JSON file or an already-parsed document. Raises TaskError naming the problem."""
        if isinstance(source, Mapping):
            return cls.from_dict(source)
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TaskError(f"no task file at {path}") from None
        except UnicodeDecodeError as e:
            raise TaskError(f"the task file {path} is not UTF-8 text (byte {e.start})") from None
        return cls.parse(text, base=path.parent)

    @classmethod
    def parse(cls, text: str, base: str | os.PathLike | None = None) -> Task:
        """A task from JSON text (a pasted document); `base` resolves its "data" path."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise TaskError(f"the task is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
        return cls.from_dict(doc, base)

    @classmethod
    def from_dict(cls, doc: Any, base: str | os.PathLike | None = None) -> Task:
        if not isinstance(doc, Mapping):
            raise TaskError(f"a task is a JSON object, not {type(doc).__name__}")
        unknown = sorted(set(doc) - KEYS)
        if unknown:
            raise TaskError(f"unknown key(s) in the task: {', '.join(map(repr, unknown))}; "
                            f"the keys are: {', '.join(sorted(KEYS))}")
        for key in ("name", "instruction", "output"):
            if key not in doc:
                raise TaskError(f"the task has no {key!r}")
        name = _string(doc, "name")
        instruction = _string(doc, "instruction")
        labels, schema = _output(doc["output"])
        examples = _examples(doc.get("examples", []), labels)
        data = doc.get("data")
        if data is not None:
            data = Path(base or ".") / _string(doc, "data")
        voters = _voters(doc.get("voters", []), len(examples))
        return cls(name, instruction, labels, schema, examples, data,
                   _string(doc, "text_column", "text"), _string(doc, "label_column", "label"), tuple(voters),
                   _string(doc, "description", "", allow_empty=True))

    # ---- prompting ----

    def system_prompt(self) -> str:
        if self.labels is None or len(self.labels) > PROMPT_LABELS:
            return self.instruction
        return f"{self.instruction.rstrip()} Answer with one of: {', '.join(self.labels)}."

    def messages(self, text: str, shots: int = 0) -> list[dict[str, str]]:
        """The chat: system = instruction and label list, `shots` examples as user/assistant turns, then the item."""
        if isinstance(shots, bool) or not isinstance(shots, int) or shots < 0:
            raise ValueError(f"shots must be a non-negative integer, got {shots!r}")
        if shots > len(self.examples):
            raise ValueError(f"{shots} shots asked for, but the task {self.name!r} has {len(self.examples)} examples")
        if not isinstance(text, str) or not text.strip():
            raise ValueError("the text to classify is empty")
        chat = [{"role": "system", "content": self.system_prompt()}]
        for ex in self.examples[:shots]:
            chat += [{"role": "user", "content": ex.text}, {"role": "assistant", "content": ex.label}]
        return chat + [{"role": "user", "content": text}]

    def prompt_tokens(self, model, text: str, shots: int = 0) -> np.ndarray:
        from ..generate import chat_prompt_tokens  # jinja2 only when a prompt is built

        return chat_prompt_tokens(model, self.messages(text, shots))

    def shared_tokens(self, model, shots: int = 0) -> np.ndarray:
        """The prompt tokens every item shares with `shots` examples on this model: the system prompt, the examples
        and the opening of the item's turn (what two different items' prompts have in common). Kept on the model."""
        cache = model.__dict__.setdefault("_task_shared_tokens", {})  # lives and dies with the model
        key = (self, shots)  # a Task hashes by identity
        if key not in cache:
            a, b = self.prompt_tokens(model, "a", shots), self.prompt_tokens(model, "b", shots)
            cache[key] = a[:common_prefix(a, b)]
        return cache[key]

    # ---- running ----

    def run(self, model_or_ctx, text: str, shots: int = 0) -> TaskResult | ExtractResult:
        """Classify one text (a TaskResult), or, for a JSON task, extract one value that validates against the
        task's schema (an ExtractResult; greedy, so the same text gives the same value). Given a Model, a context
        is created on first use and kept on the model (so calls reuse it); given a Context, that one is used."""
        from ..constrained.generate import run_to_end

        return run_to_end(self.steps(model_or_ctx, text, shots))

    def steps(self, model_or_ctx, text: str, shots: int = 0):
        """run() in steps: a JSON task yields the number of tokens written so far after each prompt batch and each
        token (a classification runs in one step and yields nothing); returns run()'s result."""
        ctx = context_for(model_or_ctx)
        t = time.perf_counter()
        prompt = self.prompt_tokens(ctx.model, text, shots)
        if self.labels is None:
            from ..constrained import json_steps
            from ..sampling import GREEDY

            value, out, stats = yield from json_steps(ctx, prompt, dict(self.json_schema), GREEDY,
                                                      max_tokens=JSON_MAX_TOKENS)
            return ExtractResult(value, out, stats.n_prompt - stats.n_reused + stats.n_generated,
                                 time.perf_counter() - t)
        shared = common_prefix(prompt, self.shared_tokens(ctx.model, shots))
        scores = score_labels(ctx, prompt, self.labels, shared=shared)
        seconds = time.perf_counter() - t
        n_tokens = int(prompt.size) + sum(n - 1 for n in scores.n_tokens)  # what score_labels decodes
        return TaskResult(scores.label, scores.probs, scores.confidence, scores.labels, n_tokens, seconds, scores)


def context_for(model_or_ctx, n_ctx: int = DEFAULT_N_CTX):
    """A Context as is; for a Model, the one context tasks share on it (created once, closed with the model)."""
    if hasattr(model_or_ctx, "kv_clear"):
        return model_or_ctx
    model = model_or_ctx
    ctx = getattr(model, "_task_context", None)
    if ctx is None or not ctx._ptr:  # none yet, or closed
        size = min(n_ctx, model.n_ctx_train) if model.n_ctx_train > 0 else n_ctx
        ctx = model.context(n_ctx=size)
        model._task_context = ctx  # on the model, not in a global cache: it lives and dies with the model
    return ctx


def _string(doc: Mapping[str, Any], key: str, default: str | None = None, allow_empty: bool = False) -> str:
    value = doc.get(key, default)
    if not isinstance(value, str):
        raise TaskError(f"{key!r} must be a string, not {type(value).__name__}")
    if not value.strip() and not allow_empty:
        raise TaskError(f"{key!r} is empty")
    return value


def _output(output: Any) -> tuple[tuple[str, ...] | None, Mapping[str, Any] | None]:
    if not isinstance(output, Mapping) or len(output) != 1 or next(iter(output)) not in ("labels", "json_schema"):
        raise TaskError('\'output\' must be {"labels": [...]} or {"json_schema": {...}}')
    if "json_schema" in output:
        _check_schema(output["json_schema"], "json_schema")
        return None, output["json_schema"]
    labels = output["labels"]
    if not isinstance(labels, list):
        raise TaskError("'output.labels' must be a list of strings")
    if len(labels) < MIN_LABELS:
        raise TaskError(f"a task needs at least {MIN_LABELS} labels; this one has {len(labels)}")
    if len(labels) > MAX_LABELS:
        raise TaskError(f"a task may have at most {MAX_LABELS} labels; this one has {len(labels)}")
    seen: set[str] = set()
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip():
            raise TaskError(f"label {i + 1} must be a non-empty string, got {label!r}")
        if label in seen:
            raise TaskError(f"the label {label!r} appears more than once")
        seen.add(label)
    return tuple(labels), None


def _voters(voters: Any, n_examples: int) -> tuple[dict, ...]:
    if not isinstance(voters, list):
        raise TaskError("'voters' must be a list of {\"model\", \"shots\"} objects")
    out = []
    for i, voter in enumerate(voters, 1):
        if not isinstance(voter, Mapping) or "model" not in voter or not set(voter) <= {"model", "shots"}:
            raise TaskError(f"voter {i} must be an object with \"model\" (a model's name) and optionally \"shots\"")
        model, shots = voter["model"], voter.get("shots", 0)
        if not isinstance(model, str) or not model.strip():
            raise TaskError(f"voter {i} has an empty or non-string model name")
        if isinstance(shots, bool) or not isinstance(shots, int) or not 0 <= shots <= n_examples:
            raise TaskError(f"voter {i} asks for {shots!r} shots; the task has {n_examples} examples")
        out.append({"model": model, "shots": shots})
    if len({(v["model"], v["shots"]) for v in out}) != len(out):
        raise TaskError("the same voter (model and shots) appears more than once")
    return tuple(out)


def _examples(examples: Any, labels: tuple[str, ...] | None) -> tuple[Example, ...]:
    if not isinstance(examples, list):
        raise TaskError("'examples' must be a list of {\"text\", \"label\"} objects")
    out = []
    for i, ex in enumerate(examples, 1):
        if not isinstance(ex, Mapping) or set(ex) != {"text", "label"}:
            raise TaskError(f"example {i} must be an object with exactly \"text\" and \"label\"")
        text, label = ex["text"], ex["label"]
        if not isinstance(text, str) or not text.strip():
            raise TaskError(f"example {i} has an empty or non-string text")
        if labels is not None and label not in labels:
            raise TaskError(f"example {i} has the label {label!r}, which is not one of: {listing(labels)}")
        if labels is None and not isinstance(label, str):
            label = json.dumps(label, ensure_ascii=False)  # a JSON task's example answer, as the model would write it
        out.append(Example(text, label))
    return tuple(out)


def _check_schema(schema: Any, where: str) -> None:
    """Refuse what the constrained decoder will not enforce: its own schema check, so the two never disagree."""
    from ..constrained.schema import SchemaError, compile_schema

    try:
        compile_schema(schema, where)
    except SchemaError as e:
        raise TaskError(str(e)) from None


def listing(labels: Sequence[str], most: int = 20) -> str:
    """Labels for a message: all of a short set; the first `most` and a count of a long one (500 labels would bury
    the message)."""
    shown = ", ".join(labels[:most])
    return shown if len(labels) <= most else f"{shown}, ... ({len(labels)} labels)"

