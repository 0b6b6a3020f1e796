"""`python -m pocketmind index` and `search` on a small folder written here, with the converted MiniLM (Q8_0)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import deps
from pocketmind.engine import Model
from pocketmind.search.embed import Embedder
from pocketmind.search.index import Index

from conftest import REPO

DOCS = {
    "animals/cats.md": "# Cats\n\nCats are small domesticated carnivores. They sleep most of the day and hunt mice at "
                       "night.\n\nA cat's whiskers tell it whether it can squeeze through a narrow gap.\n",
    "space/rockets.html": "<html><body><h1>Rocket engines</h1><p>Liquid-fuel rocket engines burn kerosene or "
                          "hydrogen with liquid oxygen to make thrust.</p><script>cats()</script>"
                          "<p>Solid boosters are simple but cannot be throttled.</p></body></html>",
    "countries.csv": "country,capital\nFrance,Paris\nJapan,Tokyo\nKenya,Nairobi\n",
    "cooking.txt": "Bread needs flour, water, salt and yeast.\n\nKnead the dough for ten minutes and let it rise "
                   "for an hour before baking at 230 degrees.\n",
}
BAD = {"broken.txt": "caf\xe9".encode("latin-1"), "empty.md": b"", "photo.jpg": b"\xff\xd8\xff"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("docs")
    for name, text in DOCS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    for name, data in BAD.items():
        (root / name).write_bytes(data)
    (root / ".hidden.txt").write_text("never indexed")
    return root


@pytest.fixture(scope="module")
def cli(built):
    env = {**os.environ, "PYTHONPATH": str(REPO / "py"),
           "POCKETMIND_NATIVE_LIB": str(built("native") / "libpocketmind.so")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pocketmind", *args], capture_output=True, text=True, env=env,
                              timeout=300)

    return run


@pytest.fixture(scope="module")
def indexed(cli, folder, tmp_path_factory):
    model = deps.minilm_gguf("Q8_0")
    out = tmp_path_factory.mktemp("index") / "docs.npz"
    proc = cli("index", str(folder), "--model", str(model), "--out", str(out), "--max-chars", "120",
               "--overlap", "40", "--no-progress")
    return proc, out, model


def test_index_embeds_the_good_files_and_names_each_skipped_one(indexed):
    proc, out, model = indexed
    assert proc.returncode == 0, proc.stderr
    assert "skipped broken.txt: not UTF-8 text" in proc.stderr
    assert "skipped empty.md: the file is empty" in proc.stderr
    assert "skipped photo.jpg: unsupported file type .jpg" in proc.stderr
    index = Index.load(out)
    assert index.sources() == sorted(DOCS)
    assert f"indexed {len(index)} chunks from 4 files" in proc.stdout and "skipped 3 files" in proc.stdout
    assert all("cats()" not in c.text and "never indexed" not in c.text for c in index.chunks)
    assert all(len(c.text) <= 120 for c in index.chunks)


@pytest.mark.parametrize("query, source, fact", [
    ("What is the capital of Japan?", "countries.csv", "Tokyo"),
    ("how long should dough rise", "cooking.txt", "rise"),
    ("what propellant do rockets use", "space/rockets.html", "kerosene"),
    ("can a pet fit through a small hole", "animals/cats.md", "whiskers"),
])
def test_search_finds_the_passage_that_answers(cli, indexed, query, source, fact):
    _, out, _ = indexed
    proc = cli("search", str(out), query, "--top", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    hits = json.loads(proc.stdout)
    assert len(hits) == 3 and [h["rank"] for h in hits] == [1, 2, 3]
    assert hits[0]["source"] == source and fact in hits[0]["text"], hits[0]
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]


def test_the_cli_ranking_equals_the_library_ranking(cli, indexed, native):
    _, out, model_path = indexed
    query = "baking bread at home"
    proc = cli("search", str(out), query, "--top", "4")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line[:1].isdigit()]
    index = Index.load(out)
    with Model.from_file(model_path, native) as model, Embedder(model) as embedder:
        hits = index.search(embedder.embed_one(query).vector, 4)
    assert [line.split(maxsplit=2)[2] for line in lines] == [f"{h.chunk.source} [{h.chunk.start}:{h.chunk.end}]"
                                                              for h in hits]
    assert np.allclose([float(line.split()[1]) for line in lines], [h.score for h in hits], atol=1e-4)


def test_search_with_another_model_or_a_missing_index_fails_clearly(cli, indexed, tmp_path):
    _, out, _ = indexed
    other = deps.minilm_gguf("F16")
    proc = cli("search", str(out), "cats", "--model", str(other))
    assert proc.returncode == 2 and "this index was built with model" in proc.stderr
    proc = cli("search", str(tmp_path / "none.npz"), "cats")
    assert proc.returncode == 2 and "cannot read the index" in proc.stderr


def test_index_of_a_folder_without_usable_files_fails_and_writes_nothing(cli, tmp_path):
    (tmp_path / "only.bin").write_bytes(b"\0\1")
    out = tmp_path / "i.npz"
    proc = cli("index", str(tmp_path), "--model", str(deps.minilm_gguf("Q8_0")), "--out", str(out))
    assert proc.returncode == 2 and "no file to index" in proc.stderr
    assert not out.exists()
