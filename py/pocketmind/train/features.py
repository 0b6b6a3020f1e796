"""Sentence features for a task head: each text's pooled final hidden states, through the C API's embeddings path.

The C API pools as the model's GGUF says (a BERT embedding model such as all-MiniLM-L6-v2: its mean pooling); a
causal model without a pooling layer (SmolLM2, Gemma 3) gets the mean of its final hidden states over the text's
tokens. The vectors are kept as the model gives them (not L2-normalised: their length carries information, and the
head standardises every dimension anyway). The search embedder does the work (search.embed.Embedder), so features
and search embeddings share one code path, its truncation rule and its batching.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from ..engine import Model
from ..search.embed import Embedder

FEATURE_KIND = "pooled-hidden-states"  # what a head records and checks: the C API's pooled output, unnormalised
MAX_TOKENS = 512  # each text's leading tokens; bounds the context's memory (SmolLM2's own limit is 8192 tokens)


def feature_extractor(model: Model, n_threads: int = 1, max_tokens: int = MAX_TOKENS) -> Embedder:
    """An embedder that gives a head's features (its own embeddings context on `model`; close it when done)."""
    return Embedder(model, max_tokens=max_tokens, n_threads=n_threads, normalize=False)


def features(embedder: Embedder, texts: Sequence[str],
             progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """A (len(texts), dim) float32 matrix; progress(done, total) as the embedder reports it."""
    return embedder.embed(list(texts), progress)


def feature_steps(embedder: Embedder, texts: Sequence[str], out: np.ndarray) -> Iterator[int]:
    """Fill `out` (len(texts), dim) one decode batch of the embedder at a time (the texts that fit its token budget),
    yielding the number done after each: what a stepped service runs, so the page can draw progress, stop, and
    answer its watchdog between batches. The batches depend only on the texts, so the page and CPython compute the
    same batches."""
    done = 0
    for batch in embedder.batches(texts):
        out[done:done + len(batch)] = [e.vector for e in batch]
        done += len(batch)
        yield done
