"""A task head: multinomial logistic regression over a model's sentence features, trained with numpy alone (so it
trains in the page's Pyodide as under CPython), and its small JSON file.

The model: features are standardised with the training rows' mean and standard deviation (both stored in the head),
then p = softmax(z W + b). Training minimises the class-weighted cross-entropy plus (l2 / 2) |W|^2 (the bias is
not penalised) by full-batch gradient descent with Nesterov momentum, step 1 / L where L bounds the loss's
curvature (half the largest eigenvalue of the weighted feature covariance, found by a fixed power iteration, plus
l2). Class weights are "balanced": a row of label c weighs n / (k * n_c) over the k labels present, so a rare label
counts as much as a common one. One epoch is one step over all training rows. After each epoch the loss on the dev
rows (weighted the same way) is measured; training stops when it has not improved for `patience` epochs or after
`max_epochs`, and the head keeps the weights of the best dev epoch. The seed draws the initial weights; the same
rows, options and seed give bit-identical weights.

Bounds: at most MAX_ROWS training plus dev rows and MAX_EPOCHS epochs; each epoch is two (n x dim) by (dim x k)
products, so training is seconds even at the bounds. Features are the slow part (one forward pass per text), so
callers check the row count (check_rows) before computing any.
"""
from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..whole_file import read_whole, write_whole
from . import HeadError
from .features import FEATURE_KIND

FORMAT = "pocketmind-head"
VERSION = 1
MAX_ROWS = 10_000  # training + dev rows: one forward pass each (~0.3 s for SmolLM2 on one CPU thread, more in a
# page): 10 000 rows are most of an hour already; more is refused before any feature is computed
MIN_ROWS = 4  # at least a few rows to train on and one to stop on
MAX_EPOCHS = 5_000
DEFAULTS = {"l2": 1.0, "max_epochs": 500, "patience": 40}  # l2: see docs/task_heads.md
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Epoch:
    """One epoch's figures: the training loss (with the L2 term), and accuracy and loss (without it) on the train
    and dev rows."""

    epoch: int
    loss: float
    train_accuracy: float
    dev_loss: float
    dev_accuracy: float

    def as_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "loss": self.loss, "train_accuracy": self.train_accuracy,
                "dev_loss": self.dev_loss, "dev_accuracy": self.dev_accuracy}


@dataclass
class Head:
    task: str
    labels: tuple[str, ...]
    model_sha256: str
    feature_kind: str
    weights: np.ndarray  # (dim, k) float64
    bias: np.ndarray  # (k,)
    mean: np.ndarray  # (dim,) the training rows' feature mean
    std: np.ndarray  # (dim,) and standard deviation (1 where a dimension is constant)
    model_name: str = ""
    summary: dict[str, Any] = field(default_factory=dict)  # how it was trained (options, epochs, sizes)

    def __post_init__(self):
        self.labels = tuple(self.labels)
        for name in ("weights", "bias", "mean", "std"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        _check_head(self, "head")

    @property
    def dim(self) -> int:
        return int(self.weights.shape[0])

    # ---- predicting ----

    def logits(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise HeadError(f"the features have shape {list(x.shape)}; this head takes {self.dim} per text")
        return ((x - self.mean) / self.std) @ self.weights + self.bias

    def probs(self, features: np.ndarray) -> np.ndarray:
        """(n, k) label probabilities, in the head's label order."""
        return _softmax(self.logits(features))

    def predict(self, features: np.ndarray) -> list[str]:
        return [self.labels[i] for i in np.argmax(self.logits(features), axis=1)]

    def check(self, model_sha256: str | None = None, labels: Sequence[str] | None = None,
              dim: int | None = None) -> None:
        """Refuse a head for another model, another label set or another feature size (HeadError saying which)."""
        if model_sha256 is not None and model_sha256 != self.model_sha256:
            raise HeadError(f"this head was trained on the features of another model ({self.model_name or '?'}, "
                            f"sha256 {self.model_sha256[:12]}…), not this one (sha256 {model_sha256[:12]}…); "
                            "train a head for this model")
        if labels is not None and tuple(labels) != self.labels:
            raise HeadError(f"this head's labels are {list(self.labels)}; the task's are {list(labels)}: "
                            "a head answers only for the label set it was trained on")
        if dim is not None and dim != self.dim:
            raise HeadError(f"this head takes features of size {self.dim}; the model gives {dim}")

    # ---- storage ----

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "task": self.task, "labels": list(self.labels),
                "model_sha256": self.model_sha256, "model_name": self.model_name, "feature_kind": self.feature_kind,
                "dim": self.dim, "weights": self.weights.tolist(), "bias": self.bias.tolist(),
                "mean": self.mean.tolist(), "std": self.std.tolist(), "training": self.summary}

    def to_json(self) -> str:
        # floats are written with repr: they read back bit for bit
        return json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes, name: str = "head") -> Head:
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise HeadError(f"{name}: not JSON ({e})") from None
        return cls.from_dict(doc, name)

    @classmethod
    def from_dict(cls, doc: Any, name: str = "head") -> Head:
        if not isinstance(doc, Mapping) or doc.get("format") != FORMAT:
            raise HeadError(f"{name}: not a pocketmind head (no \"format\": \"{FORMAT}\")")
        if doc.get("version") != VERSION:
            raise HeadError(f"{name}: a version-{doc.get('version')!r} head; this version of pocketmind reads "
                            f"version {VERSION}")
        missing = [k for k in ("task", "labels", "model_sha256", "feature_kind", "dim", "weights", "bias", "mean",
                               "std") if k not in doc]
        if missing:
            raise HeadError(f"{name}: the head has no {', '.join(map(repr, missing))}")
        arrays = {}
        for key in ("weights", "bias", "mean", "std"):
            try:
                arrays[key] = np.array(doc[key], dtype=np.float64)
            except (TypeError, ValueError):
                raise HeadError(f"{name}: {key!r} must be numbers (a list, or a list of lists for the weights)") \
                    from None
        dim = doc["dim"]
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise HeadError(f"{name}: 'dim' must be a positive integer, got {dim!r}")
        labels = doc["labels"]
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise HeadError(f"{name}: 'labels' must be a list of strings")
        if arrays["weights"].ndim != 2 or arrays["weights"].shape[0] != dim:
            raise HeadError(f"{name}: 'weights' has shape {list(arrays['weights'].shape)}; the head says dim {dim} "
                            f"and {len(labels)} labels, so [{dim}, {len(labels)}]")
        summary = doc.get("training", {})
        if not isinstance(summary, Mapping):
            raise HeadError(f"{name}: 'training' must be an object")
        try:
            return cls(str(doc["task"]), tuple(labels), str(doc["model_sha256"]), str(doc["feature_kind"]),
                       arrays["weights"], arrays["bias"], arrays["mean"], arrays["std"],
                       str(doc.get("model_name", "")), dict(summary))
        except HeadError as e:
            raise HeadError(f"{name}: {e}") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write the head whole or not at all (a temporary file, then a rename)."""
        return write_whole(path, self.to_json().encode("utf-8"))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Head:
        return cls.from_json(read_whole(path, "head", HeadError), str(path))


def _check_head(head: Head, name: str) -> None:
    labels = head.labels
    if len(labels) < 2 or len(set(labels)) != len(labels) or not all(isinstance(x, str) and x for x in labels):
        raise HeadError(f"the labels must be at least 2 distinct non-empty strings, got {list(labels)}")
    if not isinstance(head.model_sha256, str) or not _SHA256.match(head.model_sha256):
        raise HeadError(f"'model_sha256' must be 64 lowercase hex digits, got {head.model_sha256!r}")
    if head.feature_kind != FEATURE_KIND:
        raise HeadError(f"the features are {head.feature_kind!r}; this version of pocketmind makes {FEATURE_KIND!r}")
    k = len(labels)
    if head.weights.ndim != 2 or head.weights.shape[1] != k or head.weights.shape[0] < 1:
        raise HeadError(f"'weights' has shape {list(head.weights.shape)}; {k} labels need [dim, {k}]")
    dim = head.weights.shape[0]
    for key, shape in (("bias", (k,)), ("mean", (dim,)), ("std", (dim,))):
        value = getattr(head, key)
        if value.shape != shape:
            raise HeadError(f"{key!r} has shape {list(value.shape)}, not {list(shape)}")
    for key in ("weights", "bias", "mean", "std"):
        value = getattr(head, key)
        if not np.all(np.isfinite(value)):
            raise HeadError(f"{key!r} holds a number that is not finite (NaN or infinity)")
    if np.any(head.std <= 0):
        raise HeadError("'std' must be positive in every dimension")


# ---- training ----

def check_rows(n: int, labels: Sequence[str | None], label_set: Sequence[str], what: str = "row",
               numbers: Sequence[int] | None = None, who: str = "a head", max_rows: int = MAX_ROWS,
               why_max: str = "each row's features take a forward pass of the model, minutes per thousand rows") -> None:
    """Refuse training rows before any feature is computed: a missing or unknown label (naming the row: its number
    in `numbers`, else its position), fewer than MIN_ROWS or more than MAX_ROWS rows, or only one label among
    them."""
    allowed = set(label_set)
    for i, label in zip(numbers or range(1, len(labels) + 1), labels):
        if label is None or (isinstance(label, str) and not label.strip()):
            raise HeadError(f"{what} {i} has no label: every training row needs one of {list(label_set)}")
        if label not in allowed:
            raise HeadError(f"{what} {i} has the label {label!r}, which is not one of {list(label_set)}")
    if n < MIN_ROWS:
        raise HeadError(f"{who} needs at least {MIN_ROWS} labelled rows to train and stop on; got {n}")
    if n > max_rows:
        raise HeadError(f"{n} labelled rows: {who} trains on at most {max_rows} ({why_max}); use a sample, e.g. "
                        "the first rows (--limit)")
    present = sorted(set(labels), key=list(label_set).index)
    if len(present) < 2:
        raise HeadError(f"every training row has the label {present[0]!r}: {who} needs examples of at least two "
                        "labels")


def check_options(seed: Any = 0, **options: Any) -> dict[str, Any]:
    """The training options (seed, l2, max_epochs, patience; DEFAULTS for those not given), checked: HeadError naming
    a bad or unknown one."""
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise HeadError(f"unknown training option(s): {', '.join(unknown)}; the options are: seed, "
                        f"{', '.join(DEFAULTS)}")
    o = {**DEFAULTS, **options}
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise HeadError(f"the seed must be a non-negative integer, got {seed!r}")
    l2 = o["l2"]
    if not (isinstance(l2, (int, float)) and not isinstance(l2, bool) and math.isfinite(l2) and l2 >= 0):
        raise HeadError(f"l2 must be a number >= 0, got {l2!r}")
    for key in ("max_epochs", "patience"):
        value = o[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_EPOCHS:
            raise HeadError(f"{key} must be an integer from 1 to {MAX_EPOCHS}, got {value!r}")
    return {"seed": seed, "l2": float(l2), "max_epochs": o["max_epochs"], "patience": o["patience"]}


class Trainer:
    """Train a head on features X (n, dim) with labels y (label strings) and dev rows to stop on. Iterate
    epochs() for the per-epoch figures (a live curve), or call run(progress); `head` holds the result after."""

    def __init__(self, X: np.ndarray, y: Sequence[str], X_dev: np.ndarray, y_dev: Sequence[str],
                 labels: Sequence[str], *, task: str, model_sha256: str, model_name: str = "", seed: int = 0,
                 l2: float = DEFAULTS["l2"], max_epochs: int = DEFAULTS["max_epochs"],
                 patience: int = DEFAULTS["patience"], feature_kind: str = FEATURE_KIND):
        self.labels = tuple(labels)
        if len(self.labels) < 2:
            raise HeadError("a head needs a task with at least 2 labels")
        X, X_dev = np.asarray(X, dtype=np.float64), np.asarray(X_dev, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] != len(y) or X_dev.ndim != 2 or X_dev.shape != (len(y_dev), X.shape[1]):
            raise HeadError(f"features {list(X.shape)} and {list(X_dev.shape)} do not match {len(y)} training and "
                            f"{len(y_dev)} dev labels")
        check_rows(len(y) + len(y_dev), list(y) + list(y_dev), self.labels)
        if len(y) == 0 or len(y_dev) == 0:
            raise HeadError(f"a head needs training rows and dev rows to stop on; got {len(y)} and {len(y_dev)}")
        if len(set(y)) < 2:
            raise HeadError(f"every training row has the label {y[0]!r}: a head needs examples of at least two labels")
        if not (np.all(np.isfinite(X)) and np.all(np.isfinite(X_dev))):
            raise HeadError("the features hold a number that is not finite (NaN or infinity)")
        self.options = check_options(seed=seed, l2=l2, max_epochs=max_epochs, patience=patience)
        self.task, self.model_sha256, self.model_name, self.feature_kind = task, model_sha256, model_name, feature_kind
        index = {label: i for i, label in enumerate(self.labels)}
        self.y, self.y_dev = np.array([index[v] for v in y]), np.array([index[v] for v in y_dev])
        self.mean = X.mean(axis=0)
        std = X.std(axis=0)
        self.std = np.where(std > 1e-12 * max(1.0, float(np.abs(self.mean).max(initial=0.0))), std, 1.0)
        self.Z, self.Z_dev = (X - self.mean) / self.std, (X_dev - self.mean) / self.std
        k = len(self.labels)
        counts = np.bincount(self.y, minlength=k)
        present = counts > 0
        class_weight = np.zeros(k)
        class_weight[present] = len(self.y) / (present.sum() * counts[present])  # "balanced"
        self.class_weight = class_weight
        self.w, self.w_dev = class_weight[self.y], class_weight[self.y_dev]
        self.w_dev = np.where(self.w_dev > 0, self.w_dev, 1.0)  # a dev label absent from training still counts
        self.history: list[Epoch] = []
        self.head: Head | None = None
        self.final: tuple[np.ndarray, np.ndarray] | None = None

    def _loss(self, Z, yi, w, W, b, l2: float) -> tuple[float, np.ndarray, np.ndarray]:
        """(loss, dW, db) of the weighted cross-entropy + l2/2 |W|^2 at W, b."""
        logits = Z @ W + b
        logp = logits - logits.max(axis=1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
        total = w.sum()
        loss = -(w * logp[np.arange(len(yi)), yi]).sum() / total + 0.5 * l2 * float((W * W).sum())
        g = np.exp(logp)
        g[np.arange(len(yi)), yi] -= 1.0
        g *= (w / total)[:, None]
        return float(loss), Z.T @ g + l2 * W, g.sum(axis=0)

    def _measure(self, Z, yi, w, W, b) -> tuple[float, float]:
        """(weighted cross-entropy without the L2 term, accuracy)."""
        logits = Z @ W + b
        loss, _, _ = self._loss(Z, yi, w, W, b, 0.0)
        return loss, float((np.argmax(logits, axis=1) == yi).mean())

    def _step_size(self) -> float:
        """1 / L: L = 0.5 * the largest eigenvalue of [Z 1]^T diag(w / sum w) [Z 1], plus l2 (power iteration from a
        fixed start: deterministic), with a 10 % margin."""
        A = np.hstack([self.Z, np.ones((len(self.Z), 1))]) * np.sqrt(self.w / self.w.sum())[:, None]
        v = np.ones(A.shape[1]) / math.sqrt(A.shape[1])
        top = 1.0
        for _ in range(100):
            u = A.T @ (A @ v)
            top = float(np.linalg.norm(u))
            if top == 0.0:
                break
            v = u / top
        return 1.0 / (1.1 * (0.5 * top + self.options["l2"]) + 1e-12)

    def epochs(self, stop: Callable[[], bool] | None = None) -> Iterator[Epoch]:
        """Train, yielding each epoch's figures; `stop()` true ends training early (the best epoch so far is kept).
        Sets `head` at the end."""
        o = self.options
        rng = np.random.default_rng(o["seed"])
        dim, k = self.Z.shape[1], len(self.labels)
        W = rng.normal(0.0, 0.01, size=(dim, k))
        b = np.zeros(k)
        W_prev, b_prev = W.copy(), b.copy()
        step = self._step_size()
        best = (math.inf, 0, W.copy(), b.copy())
        for epoch in range(1, o["max_epochs"] + 1):
            momentum = (epoch - 1) / (epoch + 2)
            W_look, b_look = W + momentum * (W - W_prev), b + momentum * (b - b_prev)
            _, dW, db = self._loss(self.Z, self.y, self.w, W_look, b_look, o["l2"])
            W_prev, b_prev = W, b
            W, b = W_look - step * dW, b_look - step * db
            loss, _, _ = self._loss(self.Z, self.y, self.w, W, b, o["l2"])
            _, train_acc = self._measure(self.Z, self.y, self.w, W, b)
            dev_loss, dev_acc = self._measure(self.Z_dev, self.y_dev, self.w_dev, W, b)
            figures = Epoch(epoch, loss, train_acc, dev_loss, dev_acc)
            self.history.append(figures)
            if dev_loss < best[0] - 1e-9:
                best = (dev_loss, epoch, W.copy(), b.copy())
            yield figures
            if epoch - best[1] >= o["patience"] or (stop is not None and stop()):
                break
        self.final = (W, b)  # the last epoch's weights (the head keeps the best dev epoch's)
        _, best_epoch, W, b = best
        last = self.history[-1]
        at_best = self.history[best_epoch - 1] if best_epoch else last
        self.head = Head(self.task, self.labels, self.model_sha256, self.feature_kind, W, b, self.mean, self.std,
                         self.model_name, {
                             **o, "epochs": last.epoch, "best_epoch": best_epoch, "n_train": int(len(self.y)),
                             "n_dev": int(len(self.y_dev)), "dim": dim,
                             "class_weights": dict(zip(self.labels, map(float, self.class_weight))),
                             "train_accuracy": at_best.train_accuracy, "dev_accuracy": at_best.dev_accuracy,
                             "dev_loss": at_best.dev_loss, "stopped_early": last.epoch < o["max_epochs"]})

    def run(self, progress: Callable[[Epoch], None] | None = None) -> Head:
        for figures in self.epochs():
            if progress is not None:
                progress(figures)
        return self.head


def train_head(X, y, X_dev, y_dev, labels, progress: Callable[[Epoch], None] | None = None, **options) -> Head:
    """Trainer(...).run(progress): see Trainer."""
    return Trainer(X, y, X_dev, y_dev, labels, **options).run(progress)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
