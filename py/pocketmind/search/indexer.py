"""Build an Index from documents: extract their text, chunk it, embed the chunks, and keep going past bad files.

The steps are a generator of progress events, so the command line draws a bar and a page's worker can report (and
stop) between batches; what was embedded before an interruption stays in `index`.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import SearchError
from .chunk import DEFAULT_MAX_CHARS, DEFAULT_OVERLAP, Chunk, chunk_text
from .embed import Embedder
from .extract import MAX_BYTES, extract_text, supported
from .index import Index

BLOCK = 64  # chunks gathered between two additions to the index (adding one at a time copies the matrix n times)


@dataclass(frozen=True)
class Skipped:
    name: str
    message: str  # says the name and why


@dataclass(frozen=True)
class Truncated:
    chunk: Chunk
    n_tokens: int  # what the model saw
    full_tokens: int


def folder_files(folder: str | os.PathLike) -> tuple[list[tuple[str, Path]], list[Skipped]]:
    """The files under folder that can be indexed, as (name relative to folder, path), sorted by name, and the
    ones that cannot (hidden files and folders are not looked at)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SearchError(f"{folder}: not a folder")
    found, skipped = [], []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        name = rel.as_posix()
        (found.append((name, path)) if supported(name) else
         skipped.append(Skipped(name, f"{name}: unsupported file type {path.suffix or '(none)'}")))
    return found, skipped


def read_documents(files: Iterable[tuple[str, Path]], max_bytes: int = MAX_BYTES
                   ) -> tuple[list[tuple[str, str]], list[Skipped]]:
    """(name, text) of every readable file, and what is wrong with the others; an over-size file is refused
    before it is read."""
    texts, skipped = [], []
    for name, path in files:
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise SearchError(f"{name}: {size:,} bytes is over the {max_bytes:,}-byte limit for one document; "
                                  "split it into smaller files")
            texts.append((name, extract_text(name, path.read_bytes(), max_bytes)))
        except SearchError as e:
            skipped.append(Skipped(name, str(e)))
        except OSError as e:
            skipped.append(Skipped(name, f"{name}: cannot read it ({e.strerror})"))
    return texts, skipped


class IndexBuild:
    """Adds documents to `index` with `embedder`; `truncated` lists the chunks the model saw only in part."""

    def __init__(self, embedder: Embedder, model_sha256: str, model_name: str = "",
                 max_chars: int = DEFAULT_MAX_CHARS, overlap: int = DEFAULT_OVERLAP):
        self.embedder = embedder
        self.index = Index(model_sha256, embedder.dim, model_name)
        self.max_chars, self.overlap = max_chars, overlap
        self.truncated: list[Truncated] = []

    def add(self, documents: Iterable[tuple[str, str]]) -> Iterator[tuple[str, int, int]]:
        """Chunk and embed (name, text) documents; yields ("embedding", chunks done, chunks in all)."""
        chunks = [c for name, text in documents for c in chunk_text(text, name, self.max_chars, self.overlap)]
        yield "embedding", 0, len(chunks)
        for done in embed_into(self.index, self.embedder, chunks, self.truncated):
            yield "embedding", done, len(chunks)


def embed_into(index: Index, embedder: Embedder, chunks: list[Chunk], truncated: list[Truncated]) -> Iterator[int]:
    """Embed chunks in order into index, yielding how many are done after each batch of the embedder. The command
    line and the page's worker both build through here, so the same chunks are batched (and rounded) the same way.
    Closing the generator early (a Stop) or a failing batch keeps what was embedded before, in whole batches."""
    pending: list[Chunk] = []
    vectors: list[np.ndarray] = []
    done = 0
    try:
        for batch in embedder.batches(c.text for c in chunks):
            for chunk, embedded in zip(chunks[done:done + len(batch)], batch):
                pending.append(chunk)
                vectors.append(embedded.vector)
                if embedded.truncated_from is not None:
                    truncated.append(Truncated(chunk, embedded.n_tokens, embedded.truncated_from))
            done += len(batch)
            if len(pending) >= BLOCK:
                index.add(pending, np.stack(vectors))
                pending, vectors = [], []
            yield done
    finally:
        if pending:
            index.add(pending, np.stack(vectors))
