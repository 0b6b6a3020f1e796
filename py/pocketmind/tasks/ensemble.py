"""Several small voters on one label task: an Ensemble combines them, a Cascade asks a bigger one only when unsure.

A Voter is a name and a callable text -> probabilities over the task's labels (a model with one prompt variant,
Voter.from_task, or any plain function). Its label is the most probable one (ties: the earlier label).

Ensemble rules (P: the voters' probability vectors, one row each):
- "majority": each voter's label is one vote; most votes wins. A tie between labels is broken by the higher summed
  probability of the tied labels over all voters, then by label order (the earlier label).
- "mean": the label with the highest mean probability (ties: label order).
- "weighted": the label with the highest weighted mean probability. Weights come from the dev split (fit): each
  voter's dev accuracy above chance (1 / number of labels), clipped at 0 and normalised to sum 1, so a voter that
  guesses has no say; when no voter beats chance, all weigh the same.
The combined distribution (the mean for "majority" and "mean", the weighted mean for "weighted") is calibrated by
temperature scaling, q_k ∝ p_k^(1/T), with T chosen on the dev split to minimise the negative log-likelihood of
the true labels (T = 1 before fit). `confidence` is q at the chosen label; `agreement` is the share of voters
whose own label is the chosen one.

Cascade: voters from smallest to biggest; voter i answers when its confidence (its probability of its own label)
is at least thresholds[i], else the next is asked; the last always answers. fit() picks the thresholds on the dev
split: among the thresholds whose dev accuracy is within `tolerance` (1 point) of the best any thresholds reach
(never below the biggest voter alone: small models are not always worse), those with the least compute (then the
highest accuracy). Compute per call is the voter's `cost` when given (e.g. its
parameter count times tokens), else the seconds the call took. Every voter before the one that answers is asked
(a middle voter cannot be skipped; leave it out of the cascade instead).
"""
from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

RULES = ("majority", "mean", "weighted")
TEMPERATURES = np.geomspace(0.05, 20.0, 121)  # the calibration grid: wide enough for over- and under-confidence
MAX_THRESHOLD_COMBINATIONS = 200_000  # beyond this, each stage's candidates are thinned to quantiles


@dataclass(frozen=True)
class Vote:
    """One voter's answer on one text."""

    voter: str
    label: str
    probs: tuple[float, ...]
    confidence: float
    n_tokens: int
    seconds: float
    cost: float


class Voter:
    """A name and fn(text) -> probabilities over `labels`. fn may return a sequence (in label order), a mapping
    label -> probability (missing labels 0), or an object with .probs (a TaskResult, LabelScores) and optionally
    .n_tokens and .seconds. Probabilities are normalised to sum 1. `cost` (what a cascade minimises) is a number
    per call, or cost(n_tokens, seconds) (e.g. tokens times parameters: deterministic), or None for the seconds.
    With cache=True, each text is asked once and the Vote (with the tokens and seconds of that first call) is
    reused: evaluation, fitting and ensembles share work."""

    def __init__(self, name: str, fn: Callable[[str], Any], labels: Sequence[str],
                 cost: float | Callable[[int, float], float] | None = None, cache: bool = False):
        if not name:
            raise ValueError("a voter needs a name")
        self.name, self.fn, self.labels = name, fn, tuple(labels)
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"voter {name!r}: labels must be at least 2 distinct strings")
        self.cost = cost
        self._cache: dict[str, Vote] | None = {} if cache else None

    @classmethod
    def from_task(cls, task, model_or_ctx, shots: int = 0, name: str | None = None,
                  cost: float | Callable[[int, float], float] | None = None, cache: bool = True) -> Voter:
        """A model with a prompt variant (k-shot) as a voter."""
        from .task import context_for

        ctx = context_for(model_or_ctx)
        task.messages("x", shots)  # refuse an impossible shot count now, not on the first item
        name = name or f"{ctx.model.description or 'model'} {shots}-shot"
        return cls(name, lambda text: task.run(ctx, text, shots), task.labels, cost, cache)

    def __repr__(self) -> str:
        return f"Voter({self.name!r})"

    def __call__(self, text: str) -> Vote:
        if self._cache is not None and text in self._cache:
            return self._cache[text]
        t = time.perf_counter()
        out = self.fn(text)
        seconds = time.perf_counter() - t
        probs = self._probs(out)
        best = int(np.argmax(probs))
        seconds = float(getattr(out, "seconds", seconds))
        n_tokens = int(getattr(out, "n_tokens", 0))
        cost = seconds if self.cost is None else self.cost(n_tokens, seconds) if callable(self.cost) else self.cost
        vote = Vote(self.name, self.labels[best], tuple(float(p) for p in probs), float(probs[best]), n_tokens,
                    seconds, float(cost))
        if self._cache is not None:
            self._cache[text] = vote
        return vote

    classify = __call__  # so a voter is a setup for evaluate() like an ensemble

    def _probs(self, out: Any) -> np.ndarray:
        if isinstance(out, Mapping):
            unknown = set(out) - set(self.labels)
            if unknown:
                raise ValueError(f"voter {self.name!r} gave probabilities for unknown labels: {sorted(unknown)}")
            out = [out.get(label, 0.0) for label in self.labels]
        elif hasattr(out, "probs"):
            out = out.probs
        probs = np.asarray(out, dtype=np.float64)
        if probs.shape != (len(self.labels),):
            raise ValueError(f"voter {self.name!r} gave {probs.size} probabilities for {len(self.labels)} labels")
        if not np.all(np.isfinite(probs)) or np.any(probs < 0) or probs.sum() <= 0:
            raise ValueError(f"voter {self.name!r} gave invalid probabilities: {probs.tolist()}")
        # already a distribution (a TaskResult's, or a vote sent by another worker): kept bit for bit, so a vote
        # that crossed a worker boundary gives the same ensemble and cascade as one computed here
        return probs if abs(probs.sum() - 1.0) < 1e-9 else probs / probs.sum()


def _labels_of(voters: Sequence[Voter]) -> tuple[str, ...]:
    if not voters:
        raise ValueError("give at least one voter")
    names = [v.name for v in voters]
    if len(set(names)) != len(names):
        raise ValueError(f"voter names must differ: {names}")
    labels = voters[0].labels
    for v in voters[1:]:
        if v.labels != labels:
            raise ValueError(f"voter {v.name!r} has labels {v.labels}, voter {voters[0].name!r} has {labels}")
    return labels


def _gold_indices(labels: Sequence[str], gold: Sequence[str]) -> np.ndarray:
    unknown = sorted(set(gold) - set(labels))
    if unknown:
        raise ValueError(f"dev labels not in the label set: {unknown}")
    return np.array([labels.index(g) for g in gold], dtype=np.int64)


def calibrate(dists: np.ndarray, gold: np.ndarray) -> float:
    """The temperature on TEMPERATURES minimising the negative log-likelihood of gold under q ∝ p^(1/T)."""
    logp = np.log(np.clip(dists, 1e-12, 1.0))
    nll = []
    for t in TEMPERATURES:
        z = logp / t
        z -= z.max(axis=1, keepdims=True)
        logq = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        nll.append(-logq[np.arange(len(gold)), gold].mean())
    return float(TEMPERATURES[int(np.argmin(nll))])  # first minimum: deterministic


def scale(dist: np.ndarray, temperature: float) -> np.ndarray:
    z = np.log(np.clip(dist, 1e-12, 1.0)) / temperature
    q = np.exp(z - z.max())
    return q / q.sum()


class _VoteTotals:
    """What a result's votes cost together (its `votes` field)."""

    votes: tuple[Vote, ...]

    @property
    def n_tokens(self) -> int:
        return sum(v.n_tokens for v in self.votes)

    @property
    def seconds(self) -> float:
        return sum(v.seconds for v in self.votes)

    @property
    def cost(self) -> float:
        return sum(v.cost for v in self.votes)


@dataclass(frozen=True)
class EnsembleResult(_VoteTotals):
    label: str
    probs: tuple[float, ...]  # the calibrated combined distribution
    confidence: float
    agreement: float
    votes: tuple[Vote, ...]

    @property
    def voter_labels(self) -> dict[str, str]:
        return {v.voter: v.label for v in self.votes}


class Ensemble:
    def __init__(self, voters: Sequence[Voter], rule: str = "majority", weights: Sequence[float] | None = None,
                 temperature: float = 1.0):
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}; the rules are: {', '.join(RULES)}")
        self.voters = list(voters)
        self.labels = _labels_of(self.voters)
        self.rule = rule
        self.weights = None if weights is None else self._check_weights(weights)
        if not temperature > 0:
            raise ValueError("temperature must be positive")
        self.temperature = float(temperature)

    def _check_weights(self, weights: Sequence[float]) -> np.ndarray:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(self.voters),) or np.any(w < 0) or not w.sum() > 0:
            raise ValueError(f"weights must be {len(self.voters)} non-negative numbers, not all 0")
        return w / w.sum()

    def fit(self, texts: Sequence[str], gold: Sequence[str]) -> Ensemble:
        """Learn the weights ("weighted") and the calibration temperature on the dev split."""
        g = _gold_indices(self.labels, gold)
        votes = [[voter(text) for voter in self.voters] for text in texts]
        if self.rule == "weighted":
            accuracy = np.array([[self.labels.index(v.label) == gi for v in row] for row, gi in zip(votes, g)]).mean(0)
            above = np.clip(accuracy - 1.0 / len(self.labels), 0.0, None)
            self.weights = above / above.sum() if above.sum() > 0 else np.full(len(self.voters), 1 / len(self.voters))
        dists = np.array([self._combine(row)[1] for row in votes])
        self.temperature = calibrate(dists, g)
        return self

    def _combine(self, votes: Sequence[Vote]) -> tuple[int, np.ndarray]:
        """(the chosen label's index, the uncalibrated combined distribution)."""
        P = np.array([v.probs for v in votes])
        if self.rule == "weighted":
            if self.weights is None:
                raise ValueError("the weighted rule needs weights: fit() it on the dev split or give weights")
            dist = self.weights @ P
            return int(np.argmax(dist)), dist
        dist = P.mean(axis=0)
        if self.rule == "mean":
            return int(np.argmax(dist)), dist
        counts = np.bincount([self.labels.index(v.label) for v in votes], minlength=len(self.labels))
        tied = np.flatnonzero(counts == counts.max())
        # among the tied labels, the higher summed probability; np.argmax keeps the earlier label on equal sums
        return int(tied[np.argmax(P.sum(axis=0)[tied])]), dist

    def combine(self, votes: Sequence[Vote]) -> EnsembleResult:
        best, dist = self._combine(votes)
        q = scale(dist, self.temperature)
        label = self.labels[best]
        agreement = sum(v.label == label for v in votes) / len(votes)
        return EnsembleResult(label, tuple(float(x) for x in q), float(q[best]), agreement, tuple(votes))

    def classify(self, text: str) -> EnsembleResult:
        return self.combine([voter(text) for voter in self.voters])


@dataclass(frozen=True)
class CascadeResult(_VoteTotals):
    label: str
    probs: tuple[float, ...]
    confidence: float
    answered_by: str
    votes: tuple[Vote, ...]  # every voter asked, in order

    @property
    def asked(self) -> tuple[str, ...]:
        return tuple(v.voter for v in self.votes)


class Cascade:
    def __init__(self, voters: Sequence[Voter], thresholds: Sequence[float] | None = None):
        self.voters = list(voters)
        self.labels = _labels_of(self.voters)
        if len(self.voters) < 2:
            raise ValueError("a cascade needs at least 2 voters, smallest first")
        self.thresholds = None if thresholds is None else self._check_thresholds(thresholds)
        self.dev: dict[str, float] | None = None  # what fit() measured

    def _check_thresholds(self, thresholds: Sequence[float]) -> tuple[float, ...]:
        t = tuple(float(x) for x in thresholds)
        if len(t) != len(self.voters) - 1 or any(math.isnan(x) for x in t):
            raise ValueError(f"give {len(self.voters) - 1} thresholds (every voter but the last)")
        return t

    def fit(self, texts: Sequence[str], gold: Sequence[str], tolerance: float = 0.01) -> Cascade:
        """Choose the thresholds on the dev split (see the module's docstring). Every voter sees every dev text."""
        g = _gold_indices(self.labels, gold)
        votes = [[voter(text) for text in texts] for voter in self.voters]
        conf = np.array([[v.confidence for v in row] for row in votes])
        correct = np.array([[self.labels.index(v.label) == gi for v, gi in zip(row, g)] for row in votes])
        cost = np.array([[v.cost for v in row] for row in votes])
        spent = np.cumsum(cost, axis=0)  # compute when voter i answers: every voter up to i was asked
        candidates = []
        for row in conf[:-1]:
            values = np.unique(row)  # "accept when conf >= value" for each seen value, and never (inf)
            per_stage = int(MAX_THRESHOLD_COMBINATIONS ** (1 / (len(self.voters) - 1)))
            if values.size + 1 > per_stage:
                values = np.unique(np.quantile(row, np.linspace(0, 1, max(per_stage - 1, 2))))
            candidates.append(list(values) + [math.inf])
        items = np.arange(len(texts))
        combos, accuracies, totals = [], [], []
        for combo in itertools.product(*candidates):
            accept = np.vstack([conf[:-1] >= np.array(combo)[:, None], np.ones((1, len(texts)), dtype=bool)])
            answered = np.argmax(accept, axis=0)  # the first voter that accepts
            combos.append(combo)
            accuracies.append(correct[answered, items].mean())
            totals.append(spent[answered, items].sum())
        accuracies, totals = np.array(accuracies), np.array(totals)
        # the bar: the best any choice of thresholds reaches (at least the biggest voter alone, every threshold inf)
        qualifies = accuracies >= accuracies.max() - tolerance - 1e-12
        best = min(np.flatnonzero(qualifies), key=lambda i: (totals[i], -accuracies[i]))
        self.thresholds = tuple(float(x) for x in combos[best])
        self.dev = {"accuracy": float(accuracies[best]), "cost": float(totals[best]),
                    "best_accuracy": float(accuracies.max()),
                    "biggest_accuracy": float(correct[-1].mean()), "biggest_cost": float(cost[-1].sum())}
        return self

    def classify(self, text: str) -> CascadeResult:
        if self.thresholds is None:
            raise ValueError("the cascade has no thresholds: fit() it on the dev split or give thresholds")
        votes = []
        for i, voter in enumerate(self.voters):
            vote = voter(text)
            votes.append(vote)
            if i == len(self.voters) - 1 or vote.confidence >= self.thresholds[i]:
                break
        return CascadeResult(vote.label, vote.probs, vote.confidence, vote.voter, tuple(votes))
