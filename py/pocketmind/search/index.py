"""A search index: unit vectors, the chunks they embed, and the sha256 of the model that made them.

Ranking is cosine similarity, a matrix-vector product on unit vectors. Saved as one .npz holding the vectors and a
JSON document (format, model, chunks) as bytes; files are written under a temporary name and renamed, so an
interrupted or failed save leaves the previous index whole.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..whole_file import read_whole, write_whole
from . import SearchError
from .chunk import Chunk

FORMAT = "pocketmind-index"
VERSION = 1


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float
    chunk: Chunk


@dataclass
class Index:
    model_sha256: str
    dim: int
    model_name: str = ""
    chunks: list[Chunk] = field(default_factory=list)
    vectors: np.ndarray | None = None  # (len(chunks), dim) float32, unit rows

    def __post_init__(self):
        if self.vectors is None:
            self.vectors = np.zeros((0, self.dim), dtype=np.float32)
        self._check()

    def __len__(self) -> int:
        return len(self.chunks)

    def _check(self) -> None:
        v = self.vectors
        if v.dtype != np.float32 or v.ndim != 2 or v.shape != (len(self.chunks), self.dim):
            raise SearchError(f"index vectors {v.dtype}{list(v.shape)} do not match {len(self.chunks)} chunks of "
                              f"dimension {self.dim}")

    def add(self, chunks: list[Chunk], vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(chunks), self.dim)
        self.chunks = [*self.chunks, *chunks]
        self.vectors = np.concatenate([self.vectors, vectors])
        self._check()

    def sources(self) -> list[str]:
        return sorted({c.source for c in self.chunks})

    def search(self, query: np.ndarray, top: int = 5) -> list[Hit]:
        """The `top` chunks most similar to the unit vector `query`, best first (ties: earlier chunk first)."""
        query = np.asarray(query, dtype=np.float32).ravel()
        if query.shape != (self.dim,):
            raise SearchError(f"the query has dimension {query.size}, the index {self.dim}")
        if top < 1:
            raise SearchError("top must be at least 1")
        scores = self.vectors @ query
        order = np.lexsort((np.arange(len(scores)), -scores))[:top]
        return [Hit(rank + 1, float(scores[i]), self.chunks[i]) for rank, i in enumerate(order)]

    def check_model(self, model_sha256: str) -> None:
        if model_sha256 != self.model_sha256:
            raise SearchError(f"this index was built with model {self.model_name or '?'} (sha256 "
                              f"{self.model_sha256[:12]}…), not with the given model ({model_sha256[:12]}…); "
                              "rebuild the index or pass the same model")

    # ---- storage ----

    def to_bytes(self) -> bytes:
        meta = {"format": FORMAT, "version": VERSION, "model_sha256": self.model_sha256,
                "model_name": self.model_name, "dim": self.dim, "chunks": [c.to_json() for c in self.chunks]}
        buf = io.BytesIO()
        np.savez(buf, vectors=self.vectors,
                 meta=np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), dtype=np.uint8))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "index") -> Index:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                vectors = np.array(npz["vectors"])
                meta = json.loads(npz["meta"].tobytes().decode("utf-8"))
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as e:
            raise SearchError(f"{name}: not a pocketmind index ({e})") from None
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise SearchError(f"{name}: not a version-{VERSION} pocketmind index")
        try:
            chunks = [Chunk.from_json(c) for c in meta["chunks"]]
            return cls(str(meta["model_sha256"]), int(meta["dim"]), str(meta.get("model_name", "")), chunks,
                       vectors)
        except (KeyError, TypeError, ValueError) as e:
            raise SearchError(f"{name}: damaged index ({e})") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index to path whole or not at all."""
        return write_whole(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Index:
        return cls.from_bytes(read_whole(path, "index", SearchError), str(path))


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a model file: what an index records and checks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
