"""The index: cosine top-k, save/load round trip, whole-or-nothing writes, and refusals of damaged or foreign files."""
from __future__ import annotations

import numpy as np
import pytest

from pocketmind.search import SearchError
from pocketmind.search.chunk import Chunk
from pocketmind.search.index import Index


def unit(rows) -> np.ndarray:
    m = np.asarray(rows, dtype=np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def small_index() -> Index:
    idx = Index("ab" * 32, 3, "model.gguf")
    chunks = [Chunk("a.txt", 0, 5, "alpha"), Chunk("b.md", 10, 14, "beta"), Chunk("a.txt", 6, 11, "gamma"),
              Chunk("c.csv", 0, 5, "délta ✓")]
    idx.add(chunks[:2], unit([[1, 0, 0], [0, 1, 0]]))
    idx.add(chunks[2:], unit([[1, 1, 0], [0, 0, 1]]))
    return idx


def test_search_ranks_by_cosine_best_first():
    idx = small_index()
    hits = idx.search(unit([[1, 0.2, 0]])[0], top=3)
    assert [h.chunk.text for h in hits] == ["alpha", "gamma", "beta"]
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].score == pytest.approx(1 / np.sqrt(1.04), abs=1e-6)
    assert hits[0].score >= hits[1].score >= hits[2].score


def test_top_larger_than_the_index_returns_everything_and_ties_keep_index_order():
    idx = Index("0" * 64, 2)
    idx.add([Chunk("x", i, i + 1, str(i)) for i in range(4)], unit([[1, 0], [0, 1], [1, 0], [0, 1]]))
    assert [h.chunk.text for h in idx.search(np.array([1, 0]), top=10)] == ["0", "2", "1", "3"]


def test_bad_queries_are_refused():
    idx = small_index()
    with pytest.raises(SearchError, match="dimension 2, the index 3"):
        idx.search(np.ones(2))
    with pytest.raises(SearchError, match="top"):
        idx.search(np.ones(3), top=0)


def test_save_and_load_give_the_same_index(tmp_path):
    idx = small_index()
    path = idx.save(tmp_path / "i.npz")
    back = Index.load(path)
    assert back.chunks == idx.chunks and back.model_sha256 == idx.model_sha256 and back.model_name == "model.gguf"
    assert back.vectors.dtype == np.float32 and np.array_equal(back.vectors, idx.vectors)
    assert Index.from_bytes(idx.to_bytes()).chunks == idx.chunks
    assert [p.name for p in tmp_path.iterdir()] == ["i.npz"]  # no temporary file left


def test_a_failed_save_leaves_the_previous_index_whole(tmp_path, monkeypatch):
    path = small_index().save(tmp_path / "i.npz")
    before = path.read_bytes()
    bigger = small_index()
    bigger.add([Chunk("d", 0, 1, "e")], unit([[1, 1, 1]]))

    def fail_midway(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", fail_midway)  # the bytes are written, the disk refuses to keep them
    with pytest.raises(OSError, match="No space"):
        bigger.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["i.npz"]


def test_the_model_check_names_both_models():
    idx = small_index()
    idx.check_model("ab" * 32)
    with pytest.raises(SearchError, match="built with model model.gguf"):
        idx.check_model("cd" * 32)


@pytest.mark.parametrize("data, message", [
    (b"not a zip at all", "not a pocketmind index"),
    (b"", "not a pocketmind index"),
])
def test_damaged_files_are_refused(tmp_path, data, message):
    path = tmp_path / "bad.npz"
    path.write_bytes(data)
    with pytest.raises(SearchError, match=message):
        Index.load(path)


def test_an_npz_that_is_not_an_index_or_whose_counts_disagree_is_refused(tmp_path):
    np.savez(tmp_path / "other.npz", vectors=np.zeros((2, 3), np.float32), meta=np.frombuffer(b'{"format": "x"}',
                                                                                               np.uint8))
    with pytest.raises(SearchError, match="not a version-1 pocketmind index"):
        Index.load(tmp_path / "other.npz")
    good = small_index().to_bytes()
    idx = Index.from_bytes(good)
    with pytest.raises(SearchError, match="do not match 4 chunks"):
        Index(idx.model_sha256, 3, chunks=idx.chunks, vectors=idx.vectors[:3])
    with pytest.raises(SearchError, match="cannot read"):
        Index.load(tmp_path / "missing.npz")
