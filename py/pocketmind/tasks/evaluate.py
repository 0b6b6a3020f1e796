"""Evaluating setups (voters, ensembles, cascades, any classifier) on labelled rows: accuracy, macro-F1, cost.

A setup is an object with classify(text) or a callable text -> result, where the result has .label (or is the
label) and may have .n_tokens and .seconds. The seconds a result reports are used when present (a cached vote
reports the time of its first call, so an ensemble's cost includes its voters' work even when they were already
asked); otherwise the wall-clock time of the call. Labels and metrics are deterministic; timings are not.

Macro-F1: F1 = 2·TP / (2·TP + FP + FN) per label, averaged over the labels that occur in the gold labels or the
predictions (a label never seen nor predicted says nothing about the setup).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


def confusion(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """counts[i, j]: items of gold label i predicted as label j."""
    index = {label: i for i, label in enumerate(labels)}
    counts = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(counts, ([index[g] for g in gold], [index[p] for p in pred]), 1)
    return counts


def per_label_f1(counts: np.ndarray) -> np.ndarray:
    tp = np.diag(counts).astype(np.float64)
    fp = counts.sum(axis=0) - tp
    fn = counts.sum(axis=1) - tp
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.full_like(tp, np.nan), where=denom > 0)  # nan: label absent


def macro_f1(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> float:
    f1 = per_label_f1(confusion(gold, pred, labels))
    return float(np.nanmean(f1)) if np.any(~np.isnan(f1)) else 0.0


@dataclass(frozen=True)
class SetupReport:
    name: str
    n: int
    accuracy: float
    macro_f1: float
    ms_per_item: float
    n_tokens: int
    tokens_per_s: float
    seconds: float
    predictions: tuple[str, ...] = field(repr=False)
    confusion: tuple[tuple[int, ...], ...] = field(repr=False)
    answered_by: dict[str, int] | None = None  # cascades: how many items each voter answered
    agreement: float | None = None  # ensembles: mean share of voters agreeing with the result
    cost_per_item: float = 0.0  # the results' own compute measure (Vote.cost: parameters x tokens in eval), or 0


@dataclass(frozen=True)
class Report:
    task: str
    labels: tuple[str, ...]
    n: int
    setups: tuple[SetupReport, ...]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        rows = [("setup", "accuracy", "macro-F1", "ms/item", "tokens/s")]
        rows += [(s.name, f"{s.accuracy:.3f}", f"{s.macro_f1:.3f}", f"{s.ms_per_item:.1f}", f"{s.tokens_per_s:.0f}")
                 for s in self.setups]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                 for r in rows]
        return "\n".join([lines[0], "-" * len(lines[0])] + lines[1:])


def _classifier(setup: Any) -> Callable[[str], Any]:
    if hasattr(setup, "classify"):
        return setup.classify
    if callable(setup):
        return setup
    raise TypeError(f"a setup needs classify(text) or to be callable, got {type(setup).__name__}")


class Evaluation:
    """evaluate() one item at a time: iterating yields (setup name, done, total) after each item, and `report`
    holds the Report once the iteration is over. A caller that stops early (a page's Stop) gets `partial()`: each
    started setup measured on the rows it answered. Inputs are checked here, before any model runs."""

    def __init__(self, task, rows: Sequence[Any], setups: Mapping[str, Any] | Sequence[Any]):
        labels = task.labels if hasattr(task, "labels") else task
        if labels is None:
            raise ValueError("evaluate needs a task with labels; JSON-output tasks are not supported yet")
        self.labels = tuple(labels)
        self.task_name = getattr(task, "name", "")
        self.items = [(r.text, r.label) if hasattr(r, "text") else tuple(r) for r in rows]
        self.numbers = [getattr(r, "number", i) for i, r in enumerate(rows, 1)]  # the CSV's row numbers when known
        if not self.items:
            raise ValueError("no rows to evaluate")
        missing = [i for i, (_, g) in enumerate(self.items, 1) if g not in self.labels]
        if missing:
            raise ValueError(f"row {missing[0]} has the label {self.items[missing[0] - 1][1]!r}, which is not one "
                             f"of: {', '.join(self.labels)}")
        self.setups = list(setups.items() if isinstance(setups, Mapping) else [(s.name, s) for s in setups])
        self._done: list[SetupReport] = []
        self._current: tuple[str, list] | None = None  # the setup being asked and its results so far
        self.report: Report | None = None

    def __iter__(self) -> Iterator[tuple[str, int, int]]:
        for name, setup in self.setups:
            classify = _classifier(setup)
            results: list = []
            self._current = (name, results)
            for done, (text, _) in enumerate(self.items, 1):
                t = time.perf_counter()
                try:
                    result = classify(text)
                except ValueError as e:  # e.g. an item too long for the context: say which
                    raise ValueError(f"setup {name!r}, row {self.numbers[done - 1]}: {e}") from e
                label = result if isinstance(result, str) else result.label
                if label not in self.labels:
                    raise ValueError(f"setup {name!r} answered {label!r}, which is not one of: "
                                     f"{', '.join(self.labels)}")
                results.append((result, time.perf_counter() - t))
                yield name, done, len(self.items)
            self._done.append(self._measure(name, results))
            self._current = None
        self.report = Report(self.task_name, self.labels, len(self.items), tuple(self._done))

    def partial(self) -> Report:
        """What is finished so far: every setup done, and the one being asked on the rows it answered."""
        setups = list(self._done)
        if self._current and self._current[1]:
            setups.append(self._measure(*self._current))
        return Report(self.task_name, self.labels, len(self.items), tuple(setups))

    def _measure(self, name: str, results: list) -> SetupReport:
        gold = [g for _, g in self.items[:len(results)]]
        preds, tokens, seconds, cost, answered, agreement = [], 0, 0.0, 0.0, {}, []
        for result, wall in results:
            preds.append(result if isinstance(result, str) else result.label)
            tokens += int(getattr(result, "n_tokens", 0))
            seconds += float(getattr(result, "seconds", wall))
            cost += float(getattr(result, "cost", 0.0))
            if hasattr(result, "answered_by"):
                answered[result.answered_by] = answered.get(result.answered_by, 0) + 1
            if hasattr(result, "agreement"):
                agreement.append(result.agreement)
        n = len(results)
        counts = confusion(gold, preds, self.labels)
        return SetupReport(
            name, n, float(np.mean([p == g for p, g in zip(preds, gold)])), macro_f1(gold, preds, self.labels),
            1000 * seconds / n, tokens, tokens / seconds if seconds > 0 else 0.0, seconds, tuple(preds),
            tuple(tuple(int(x) for x in row) for row in counts), answered or None,
            float(np.mean(agreement)) if agreement else None, cost / n)


def evaluate(task, rows: Sequence[Any], setups: Mapping[str, Any] | Sequence[Any],
             progress: Callable[[str, int, int], None] | None = None) -> Report:
    """Run every setup on every row (rows: data.Row or (text, label) pairs) and measure it.

    setups: name -> setup, or a list of setups with .name. progress(setup name, done, total) after each item."""
    evaluation = Evaluation(task, rows, setups)
    for name, done, total in evaluation:
        if progress:
            progress(name, done, total)
    return evaluation.report
