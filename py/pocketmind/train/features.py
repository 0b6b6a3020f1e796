"""Sentence features for a task head: each text's pooled final hidden states, through the C API's embeddings path.

The C API pools as the model's GGUF says (a BERT embedding model such as all-MiniLM-L6-v2: its mean pooling); a
causal model without a pooling layer (SmolLM2, Gemma 3) gets the mean of its final hidden states over the text's
tokens. The vectors are kept as the model gives them (not L2-normalised: their length carries information, and the
head standardises every dimension anyway). The search embedder does the work (search.embed.Embedder), so features
and search embeddings share one code path, its truncation rule and its batching.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from ..engine import Model
from ..search.embed import Embedder

FEATURE_KIND = "pooled-hidden-states"  # what a head records and checks: the C API's pooled output, unnormalised
MAX_TOKENS = 512  # each text's leading tokens; bounds the context's memory (SmolLM2's own limit is 8192 tokens)
CHUNK = 16  # at most this many texts per step in feature_steps (the embedder may batch them)
STEP_SECONDS = 1.0  # feature_steps aims at steps about this long: a page's worker answers its watchdog between them


def feature_extractor(model: Model, n_threads: int = 1, max_tokens: int = MAX_TOKENS) -> Embedder:
    """An embedder that gives a head's features (its own embeddings context on `model`; close it when done)."""
    return Embedder(model, max_tokens=max_tokens, n_threads=n_threads, normalize=False)


def features(embedder: Embedder, texts: Sequence[str],
             progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """A (len(texts), dim) float32 matrix; progress(done, total) as the embedder reports it."""
    return embedder.embed(list(texts), progress)


def feature_steps(embedder: Embedder, texts: Sequence[str], out: np.ndarray, chunk: int = CHUNK,
                  step_seconds: float = STEP_SECONDS) -> Iterator[int]:
    """Fill `out` (len(texts), dim) a few texts at a time, yielding the number done after each step: what a stepped
    service runs, so the page can draw progress, stop, and answer its watchdog between steps. The first step is one
    text; then each step takes as many texts (up to `chunk`) as fit in about `step_seconds` at the speed so far (a
    big model in a page: one text a step; a small embedding model: a batch)."""
    texts = list(texts)
    start, size, spent = 0, 1, 0.0
    while start < len(texts):
        part = texts[start:start + size]
        t = time.perf_counter()
        out[start:start + len(part)] = embedder.embed(part)
        spent += time.perf_counter() - t
        start += len(part)
        yield start
        size = max(1, min(chunk, int(step_seconds * start / max(spent, 1e-9))))
