"""Sentence embeddings from any GGUF embedding model, L2-normalised, as a float32 matrix.

The model's own tokenizer is used as it is (a BERT model adds [CLS] ... [SEP]); the model's pooling (from its GGUF)
is applied by the C API, which averages the token embeddings when the model has none. Several texts share one
decode (up to the context's batch of tokens and EMBEDDINGS_MAX_SEQS texts), cut greedily in their order: the same
texts in the same order are always batched the same way, so the page and CPython compute the same batches.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from ..capi import EMBEDDINGS_MAX_SEQS
from ..engine import Model
from . import SearchError


@dataclass(frozen=True)
class Embedded:
    """One text's embedding and how many of its tokens the model saw (fewer than it has when truncated)."""

    vector: np.ndarray
    n_tokens: int
    truncated_from: int | None = None  # its full token count, when longer than the model's limit


class Embedder:
    """Embeds texts with `model`; max_tokens (default: the model's training context) bounds each text.
    normalize=False keeps the pooled vectors as the model gives them (a task head's features), not unit length."""

    def __init__(self, model: Model, max_tokens: int | None = None, n_threads: int = 1, normalize: bool = True):
        limit = model.n_ctx_train or 512
        self.model = model
        self.max_tokens = min(max_tokens or limit, limit)
        if self.max_tokens < 2:
            raise SearchError(f"max_tokens {max_tokens} leaves no room for text")
        self.ctx = model.context(n_ctx=self.max_tokens, n_batch=self.max_tokens, n_threads=n_threads,
                                 embeddings=True)
        self.dim = model.n_embd
        self.normalize = normalize

    def tokens(self, text: str) -> tuple[np.ndarray, int | None]:
        """The token ids the model sees for text, and the full count when they had to be cut to max_tokens.

        A long text keeps its leading tokens and the model's special tokens around them (a BERT's [CLS] and [SEP]):
        what sentence-transformers does, so the same text embeds the same way in both."""
        ids = self.model.tokenize(text, add_special=True)
        if len(ids) <= self.max_tokens:
            return ids, None
        body = self.model.tokenize(text, add_special=False)
        head = _find(ids, body)  # the specials before the text's own tokens
        tail = ids[head + len(body):]
        keep = self.max_tokens - head - len(tail)
        return np.concatenate([ids[:head], body[:keep], tail]).astype(np.int32), len(ids)

    def embed_one(self, text: str) -> Embedded:
        return next(self.batches([text]))[0]

    def batches(self, texts: Iterable[str]) -> Iterator[list[Embedded]]:
        """Embeds texts in order, several per decode; yields each batch's results as soon as it is done."""
        batch: list[tuple[np.ndarray, int | None]] = []
        n_tokens = 0
        for text in texts:
            if not text.strip():
                raise SearchError("cannot embed an empty text")
            ids, full = self.tokens(text)
            if batch and (n_tokens + len(ids) > self.max_tokens or len(batch) == EMBEDDINGS_MAX_SEQS):
                yield self._run(batch)
                batch, n_tokens = [], 0
            batch.append((ids, full))
            n_tokens += len(ids)
        if batch:
            yield self._run(batch)

    def _run(self, batch: list[tuple[np.ndarray, int | None]]) -> list[Embedded]:
        vectors = self.ctx.embed_batch([ids for ids, _ in batch])
        norms = np.linalg.norm(vectors, axis=1)
        if not np.all(np.isfinite(norms)) or np.any(norms == 0.0):
            raise SearchError("the model returned an empty or invalid embedding")
        if self.normalize:
            vectors = vectors / norms[:, None]
        return [Embedded(v, len(ids), full) for v, (ids, full) in zip(vectors.astype(np.float32), batch)]

    def embed(self, texts: Iterable[str], progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """A (len(texts), dim) float32 matrix of unit vectors (see normalize); progress(done, total) after each batch."""
        texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        done = 0
        for batch in self.batches(texts):
            out[done:done + len(batch)] = [e.vector for e in batch]
            done += len(batch)
            if progress is not None:
                progress(done, len(texts))
        return out

    def close(self) -> None:
        self.ctx.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _find(ids: np.ndarray, body: np.ndarray) -> int:
    """Where body starts inside ids (the tokens with specials); specials are few, so the first match is it."""
    n = len(body)
    for start in range(len(ids) - n + 1):
        if np.array_equal(ids[start:start + n], body):
            return start
    raise SearchError("the model's tokenizer gives different tokens with and without its special tokens; "
                      "cannot truncate this text safely")
