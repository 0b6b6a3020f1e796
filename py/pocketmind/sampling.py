"""Choosing the next token from a float32 logits array with numpy, in llama.cpp's order.

The chain is: penalties -> top-k -> top-p -> min-p -> temperature -> draw, so top-p and min-p see the
(penalised) distribution at temperature 1, as in llama.cpp's default sampler. Greedy (temperature <= 0) takes
the argmax after the penalties. The logits passed in are never written to: they may be a view on library memory.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from numbers import Integral, Real

import numpy as np


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens. Defaults follow llama.cpp (repeat_penalty 1.0 = off); seed None = fresh entropy."""

    temperature: float = 0.8
    top_k: int = 40  # 0 = off
    top_p: float = 0.95  # 1.0 = off
    min_p: float = 0.05  # 0.0 = off
    repeat_penalty: float = 1.0  # > 1 discourages tokens seen in the last repeat_last_n tokens
    repeat_last_n: int = 64  # 0 = no penalties, -1 = the whole history
    presence_penalty: float = 0.0  # subtracted once from every token seen in the window
    frequency_penalty: float = 0.0  # subtracted per occurrence in the window
    seed: int | None = None

    def __post_init__(self):
        def number(name: str) -> float:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            return float(value)

        def integer(name: str) -> int:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Integral):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            return int(value)

        number("temperature")
        number("presence_penalty")
        number("frequency_penalty")
        if integer("top_k") < 0:
            raise ValueError(f"top_k must be >= 0 (0 turns it off), got {self.top_k}")
        if not 0.0 < number("top_p") <= 1.0:
            raise ValueError(f"top_p must be in (0, 1] (1 turns it off), got {self.top_p}")
        if not 0.0 <= number("min_p") <= 1.0:
            raise ValueError(f"min_p must be in [0, 1] (0 turns it off), got {self.min_p}")
        if number("repeat_penalty") <= 0.0:
            raise ValueError(f"repeat_penalty must be > 0 (1 turns it off), got {self.repeat_penalty}")
        if integer("repeat_last_n") < -1:
            raise ValueError(f"repeat_last_n must be >= -1 (-1 = whole history, 0 = off), got {self.repeat_last_n}")
        if self.seed is not None and integer("seed") < 0:
            raise ValueError(f"seed must be a non-negative integer or None, got {self.seed}")

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    @property
    def penalises(self) -> bool:
        return self.repeat_last_n != 0 and (
            self.repeat_penalty != 1.0 or self.presence_penalty != 0.0 or self.frequency_penalty != 0.0)


GREEDY = SamplingParams(temperature=0.0)

# What a chat uses unless told otherwise. The repeat penalty is what keeps small models from looping: SmolLM2-135M,
# asked "Write a haiku about a lighthouse." at temperature 0.7 / top-p 0.95 without it, repeats one line 9-11 times
# until max_tokens in 2 of 20 seeds; with 1.1 over the last 64 tokens no line repeats in those 20 seeds
# (tests/test_chat_service.py checks 5 of them).
CHAT_DEFAULTS = SamplingParams(temperature=0.7, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.1,
                               repeat_last_n=64)

# llama.cpp's GGUF keys for a model's recommended sampling (gguf.Keys.General.SAMPLING_*) -> our field, its type
GGUF_SAMPLING_KEYS = {
    "general.sampling.temp": ("temperature", float),
    "general.sampling.top_k": ("top_k", int),
    "general.sampling.top_p": ("top_p", float),
    "general.sampling.min_p": ("min_p", float),
    "general.sampling.penalty_repeat": ("repeat_penalty", float),
    "general.sampling.penalty_last_n": ("repeat_last_n", int),
}


def defaults_from_metadata(metadata: Mapping[str, str], base: SamplingParams = CHAT_DEFAULTS) -> SamplingParams:
    """`base`, with every value the model's GGUF recommends (general.sampling.*) in its place. The file is untrusted:
    a value that does not parse or is out of range is ignored, not an error."""
    params = base
    for key, (field, kind) in GGUF_SAMPLING_KEYS.items():
        try:
            number = float(metadata[key])
            if kind is int and not number.is_integer():
                continue
            params = replace(params, **{field: kind(number)})
        except (KeyError, ValueError, TypeError, OverflowError):
            continue
    return params


def settings_dict(params: SamplingParams) -> dict[str, float | int]:
    """The settings a page shows and sends back (the seed is left out: None means fresh entropy)."""
    return {field: getattr(params, field) for _, (field, _) in GGUF_SAMPLING_KEYS.items()}


def apply_penalties(logits: np.ndarray, history: Sequence[int] | np.ndarray, params: SamplingParams) -> np.ndarray:
    """A penalised copy of logits: tokens in the last repeat_last_n of history get positive logits divided and
    negative ones multiplied by repeat_penalty, then presence/frequency penalties subtracted."""
    out = np.array(logits, dtype=np.float32, copy=True)
    window = np.asarray(history, dtype=np.int64)
    if params.repeat_last_n > 0:
        window = window[-params.repeat_last_n:]
    if not params.penalises or window.size == 0:
        return out
    ids, counts = np.unique(window, return_counts=True)
    values = out[ids]
    values = np.where(values > 0, values / params.repeat_penalty, values * params.repeat_penalty)
    values -= counts * params.frequency_penalty + params.presence_penalty
    out[ids] = values
    return out


def candidates(logits: np.ndarray, params: SamplingParams,
               history: Sequence[int] | np.ndarray = ()) -> tuple[np.ndarray, np.ndarray]:
    """The tokens that survive the filters and their final probabilities (float64, summing to 1)."""
    x = apply_penalties(logits, history, params) if params.penalises else np.asarray(logits, dtype=np.float32)
    if params.greedy:
        return np.array([int(np.argmax(x))]), np.ones(1)
    ids = np.arange(x.size)
    if 0 < params.top_k < x.size:
        ids = np.argpartition(-x, params.top_k - 1)[:params.top_k]
    values = x[ids].astype(np.float64)
    if params.top_p < 1.0:
        order = np.argsort(-values, kind="stable")
        ids, values = ids[order], values[order]
        probs = np.exp(values - values[0])
        cumulative = np.cumsum(probs / probs.sum())
        # keep the shortest head whose mass reaches top_p (at least one token)
        n = min(int(np.searchsorted(cumulative, params.top_p)) + 1, ids.size)
        ids, values = ids[:n], values[:n]
    if params.min_p > 0.0:
        # p_i >= min_p * p_max  <=>  x_i >= x_max + log(min_p); the max always stays
        keep = values >= values.max() + math.log(params.min_p)
        ids, values = ids[keep], values[keep]
    scaled = (values - values.max()) / params.temperature
    probs = np.exp(scaled)
    return ids, probs / probs.sum()


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities (float64) of raw logits."""
    x = np.asarray(logits, dtype=np.float64)
    shifted = x - x.max()
    return shifted - np.log(np.exp(shifted).sum())


class Sampler:
    """One generation's sampler: the params plus its own random generator (same seed => same draws)."""

    def __init__(self, params: SamplingParams | None = None):
        self.params = params or SamplingParams()
        self.rng = np.random.default_rng(self.params.seed)

    @property
    def is_argmax(self) -> bool:
        """Whether sample() is the logits' argmax (greedy, no penalties): a caller may ask Context.argmax instead."""
        return self.params.greedy and not self.params.penalises

    def sample(self, logits: np.ndarray, history: Sequence[int] | np.ndarray = ()) -> int:
        p = self.params
        if self.is_argmax:
            return int(np.argmax(logits))  # no copy needed
        ids, probs = candidates(logits, p, history)
        if ids.size == 1:
            return int(ids[0])
        i = int(np.searchsorted(np.cumsum(probs), self.rng.random(), side="right"))
        return int(ids[min(i, ids.size - 1)])
