"""Training a head for a task from labelled rows (what `python -m pocketmind train-head` and the page's worker,
TaskService.start_train_head, both run), and a head as a voter in ensembles and cascades.

Splits (split_rows): rows whose split is "train" train the head and the other non-test rows ("dev", or none) stop
it; without "train" rows (the project's data sets have dev and test splits only) the non-test rows are divided,
stratified by label, with the seed: DEV_FRACTION of each label's rows (at least one, when the label has two or
more) stop training and the rest train. "test" rows are only measured. Everything is checked (labels, counts,
MAX_ROWS) before a single feature is computed.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..search.embed import Embedder
from ..tasks.ensemble import Voter
from ..tasks.evaluate import macro_f1
from . import HeadError
from .features import feature_steps
from .head import Head, Trainer, check_options, check_rows

DEV_FRACTION = 0.25


def split_rows(rows: Sequence, seed: int = 0, dev_fraction: float = DEV_FRACTION) -> tuple[list, list, list]:
    """(train, dev, test) rows (see the module's docstring); each keeps the rows' order."""
    test = [r for r in rows if r.split == "test"]
    rest = [r for r in rows if r.split != "test"]
    train = [r for r in rest if r.split == "train"]
    if train:
        return train, [r for r in rest if r.split != "train"], test
    rng = np.random.default_rng(seed)
    dev_at: set[int] = set()
    by_label: dict[Any, list[int]] = {}
    for i, r in enumerate(rest):
        by_label.setdefault(r.label, []).append(i)
    for label in sorted(by_label, key=str):  # a fixed order, so the seed alone decides the split
        members = by_label[label]
        if len(members) < 2:
            continue
        n_dev = min(len(members) - 1, max(1, round(dev_fraction * len(members))))
        dev_at.update(int(i) for i in rng.permutation(members)[:n_dev])
    return ([r for i, r in enumerate(rest) if i not in dev_at], [r for i, r in enumerate(rest) if i in dev_at], test)


def checked_split(task, rows: Sequence, seed: int, **check) -> tuple[list, list, list]:
    """split_rows, then every row checked (head.check_rows, with `check`'s wording and bounds; a row is named by its
    number in the file): HeadError (a ValueError) before any work is done."""
    train, dev, test = split_rows(rows, seed)
    labelled = train + dev
    check_rows(len(labelled), [r.label for r in labelled], task.labels, numbers=[r.number for r in labelled], **check)
    for r in test:
        if r.label not in task.labels:
            raise HeadError(f"test row {r.number} has the label {r.label!r}, which is not one of {list(task.labels)}")
    if not dev:
        raise HeadError("no rows are left to stop training on: give each label at least two rows")
    return train, dev, test


class HeadRun:
    """Train a head for `task` on `rows` (tasks.data.Row) with `embedder`'s features (train.features). Iterating
    yields JSON-ready events: {"type": "progress", "phase": "features", "done", "total"} after each chunk of texts,
    then {"type": "epoch", "epoch", "loss", "train_accuracy", "dev_loss", "dev_accuracy"} per epoch. Afterwards
    `head` is the head (None if stopped while computing features) and result() says how it did on each split.
    stop(): checked between chunks and epochs (a stop while training keeps the best epoch so far)."""

    def __init__(self, task, rows: Sequence, embedder: Embedder, model_sha256: str, model_name: str = "",
                 seed: int = 0, stop: Callable[[], bool] | None = None, **options):
        if task.labels is None:
            raise HeadError("a head needs a task with labels; JSON-output tasks have no label set to learn")
        if embedder.normalize:
            raise HeadError("a head's features are unnormalised: use train.features.feature_extractor")
        self.task, self.embedder, self.stop = task, embedder, stop or (lambda: False)
        self.options = check_options(seed, **options)  # now, not after minutes of features
        # before any feature is computed
        self.train, self.dev, self.test = checked_split(task, rows, seed)
        self.model_sha256, self.model_name = model_sha256, model_name
        self.head: Head | None = None
        self.seconds = {"features": 0.0, "training": 0.0}
        self.accuracy: dict[str, float | None] = {}
        self.macro_f1: dict[str, float | None] = {}
        self.stopped = False

    def __iter__(self) -> Iterator[dict]:
        parts = {"train": self.train, "dev": self.dev, "test": self.test}
        texts = list(dict.fromkeys(r.text for part in parts.values() for r in part))  # each text embedded once
        X = np.empty((len(texts), self.embedder.dim), dtype=np.float32)
        t = time.perf_counter()
        for done in feature_steps(self.embedder, texts, X):
            yield {"type": "progress", "phase": "features", "done": done, "total": len(texts)}
            if self.stop() and done < len(texts):
                self.stopped = True
                self.seconds["features"] = time.perf_counter() - t
                return
        self.seconds["features"] = time.perf_counter() - t
        at = {text: i for i, text in enumerate(texts)}
        feats = {name: X[[at[r.text] for r in part]].reshape(len(part), -1) for name, part in parts.items()}
        gold = {name: [r.label for r in part] for name, part in parts.items()}
        trainer = Trainer(feats["train"], gold["train"], feats["dev"], gold["dev"], self.task.labels,
                          task=self.task.name, model_sha256=self.model_sha256, model_name=self.model_name,
                          **self.options)
        t = time.perf_counter()
        for epoch in trainer.epochs(stop=self.stop):
            yield {"type": "epoch", **epoch.as_dict()}
        self.seconds["training"] = time.perf_counter() - t
        self.stopped = self.stop()
        self.head = trainer.head
        for name, part in parts.items():
            if not part:
                self.accuracy[name] = self.macro_f1[name] = None
                continue
            pred = self.head.predict(feats[name])
            self.accuracy[name] = float(np.mean([p == g for p, g in zip(pred, gold[name])]))
            self.macro_f1[name] = macro_f1(gold[name], pred, self.task.labels)
        self.head.summary.update(test_accuracy=self.accuracy["test"], n_test=len(self.test),
                                 feature_seconds=self.seconds["features"], training_seconds=self.seconds["training"])

    def result(self) -> dict:
        """{"stopped", "accuracy": {train, dev, test (None without test rows)}, "macro_f1", "n": {...},
        "seconds": {features, training}, "training": the head's summary (None without a head)}."""
        return {"stopped": self.stopped, "accuracy": self.accuracy, "macro_f1": self.macro_f1,
                "n": {"train": len(self.train), "dev": len(self.dev), "test": len(self.test)},
                "seconds": self.seconds, "training": None if self.head is None else self.head.summary}

    def table(self) -> str:
        """The per-split figures as a few lines of text (the CLI prints them)."""
        lines = [f"{'split':<6} {'rows':>5} {'accuracy':>9} {'macro-F1':>9}"]
        for name in ("train", "dev", "test"):
            acc, f1 = self.accuracy.get(name), self.macro_f1.get(name)
            n = len(getattr(self, name))
            lines.append(f"{name:<6} {n:>5} {'-' if acc is None else f'{acc:.3f}':>9} "
                         f"{'-' if f1 is None else f'{f1:.3f}':>9}")
        return "\n".join(lines)


def head_voter(head: Head, embedder: Embedder, model_sha256: str, name: str | None = None,
               cost: float | Callable[[int, float], float] | None = None, cache: bool = True) -> Voter:
    """The head as a voter: each text's features from `embedder` (on the head's model, checked by sha256), then the
    head's label probabilities; n_tokens is the tokens embedded (what a parameters x tokens cost counts)."""
    if embedder.normalize:
        raise HeadError("a head's features are unnormalised: use train.features.feature_extractor")
    head.check(model_sha256=model_sha256, dim=embedder.dim)

    def vote(text: str) -> SimpleNamespace:
        t = time.perf_counter()
        embedded = embedder.embed_one(text)
        probs = head.probs(embedded.vector)[0]
        return SimpleNamespace(probs=tuple(float(p) for p in probs), n_tokens=embedded.n_tokens,
                               seconds=time.perf_counter() - t)

    return Voter(name or f"{head.model_name or 'model'} head", vote, head.labels, cost, cache)
