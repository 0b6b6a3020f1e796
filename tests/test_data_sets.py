"""The example tasks' labelled data sets (data/*.csv) and task documents (data/tasks/*.json): format, labels,
stratified dev/test splits, few-shot examples from dev, and the counts stated in data/README.md."""
from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import jsonschema
import pytest

DATA = Path(__file__).resolve().parents[1] / "data"
TASKS = ["support_tickets", "review_sentiment"]

# The task-document shape of issue 8, as far as these example tasks use it (labels output only).
TASK_SCHEMA = {
    "type": "object",
    "required": ["name", "instruction", "output", "examples", "data", "text_column", "label_column"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "instruction": {"type": "string", "minLength": 1, "maxLength": 400},
        "output": {
            "type": "object",
            "required": ["labels"],
            "additionalProperties": False,
            "properties": {
                "labels": {"type": "array", "items": {"type": "string", "minLength": 1},
                           "minItems": 2, "uniqueItems": True},
            },
        },
        "examples": {
            "type": "array", "minItems": 3, "maxItems": 5,
            "items": {
                "type": "object", "required": ["text", "label"], "additionalProperties": False,
                "properties": {"text": {"type": "string", "minLength": 1}, "label": {"type": "string"}},
            },
        },
        "data": {"type": "string", "pattern": r"\.csv$"},
        "text_column": {"const": "text"},
        "label_column": {"const": "label"},
    },
}


def norm(text: str) -> str:
    return " ".join(text.casefold().split())


def load_task(name: str) -> dict:
    return json.loads((DATA / "tasks" / f"{name}.json").read_text(encoding="utf-8"))


def load_rows(name: str) -> tuple[list[str], list[dict]]:
    task = load_task(name)
    path = (DATA / "tasks" / task["data"]).resolve()
    assert path == (DATA / f"{name}.csv").resolve(), task["data"]
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


@pytest.mark.parametrize("name", TASKS)
def test_task_document_valid(name):
    task = load_task(name)
    jsonschema.validate(task, TASK_SCHEMA)
    labels = task["output"]["labels"]
    assert all(ex["label"] in labels for ex in task["examples"])


@pytest.mark.parametrize("name", TASKS)
def test_csv_format(name):
    fields, rows = load_rows(name)
    assert fields == ["id", "split", "text", "label"]
    assert len(rows) >= 150
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids), [i for i, n in Counter(ids).items() if n > 1]
    labels = set(load_task(name)["output"]["labels"])
    for n, r in enumerate(rows, 2):  # row 1 is the header
        assert None not in r and all(v is not None for v in r.values()), f"row {n}: wrong number of fields"
        assert r["id"].strip(), f"row {n}: empty id"
        assert r["label"] in labels, f"row {n}: unknown label {r['label']!r}"
        assert r["split"] in ("dev", "test"), f"row {n}: split {r['split']!r}"
        assert r["text"].strip(), f"row {n}: empty text"


@pytest.mark.parametrize("name", TASKS)
def test_no_duplicate_texts(name):
    _, rows = load_rows(name)
    seen: dict[str, str] = {}
    dups = []
    for r in rows:
        key = norm(r["text"])
        if key in seen:
            dups.append((seen[key], r["id"]))
        seen.setdefault(key, r["id"])
    assert not dups


@pytest.mark.parametrize("name", TASKS)
def test_labels_and_splits_balanced(name):
    _, rows = load_rows(name)
    labels = load_task(name)["output"]["labels"]
    per_label = Counter(r["label"] for r in rows)
    per_cell = Counter((r["label"], r["split"]) for r in rows)
    for label in labels:
        assert per_label[label] >= 25, (label, per_label[label])
        for split in ("dev", "test"):
            assert per_cell[label, split] > 0, (label, split)
    dev = sum(r["split"] == "dev" for r in rows) / len(rows)
    assert 0.30 <= dev <= 0.50, dev
    # stratified: each label's dev share within 10 points of the file's
    for label in labels:
        share = per_cell[label, "dev"] / per_label[label]
        assert abs(share - dev) <= 0.10, (label, share, dev)


@pytest.mark.parametrize("name", TASKS)
def test_few_shot_examples_from_dev(name):
    _, rows = load_rows(name)
    by_text = {r["text"]: r for r in rows}
    for ex in load_task(name)["examples"]:
        row = by_text.get(ex["text"])
        assert row is not None, f"example not in {name}.csv: {ex['text']!r}"
        assert row["split"] == "dev", f"example {row['id']} is in the {row['split']} split"
        assert row["label"] == ex["label"], (row["id"], row["label"], ex["label"])


def readme_tables() -> dict[str, dict[str, tuple[int, int, int]]]:
    """The count tables under '## Counts' in data/README.md: {file stem: {label or 'all': (dev, test, total)}}."""
    text = (DATA / "README.md").read_text(encoding="utf-8")
    counts_part = text.split("## Counts", 1)[1].split("\n## ", 1)[0]
    tables: dict[str, dict[str, tuple[int, int, int]]] = {}
    current = None
    for line in counts_part.splitlines():
        m = re.match(r"###\s+(\w+)\.csv\s*$", line)
        if m:
            current = tables.setdefault(m.group(1), {})
            continue
        m = re.match(r"\|\s*(\*\*all\*\*|[\w-]+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*$", line)
        if m and current is not None:
            key = "all" if m.group(1) == "**all**" else m.group(1)
            current[key] = (int(m.group(2)), int(m.group(3)), int(m.group(4)))
    return tables


@pytest.mark.parametrize("name", TASKS)
def test_readme_counts_match(name):
    tables = readme_tables()
    assert name in tables, f"data/README.md has no count table for {name}.csv"
    _, rows = load_rows(name)
    labels = load_task(name)["output"]["labels"]
    cell = Counter((r["label"], r["split"]) for r in rows)
    expected = {l: (cell[l, "dev"], cell[l, "test"], cell[l, "dev"] + cell[l, "test"]) for l in labels}
    dev = sum(r["split"] == "dev" for r in rows)
    expected["all"] = (dev, len(rows) - dev, len(rows))
    assert tables[name] == expected


def test_make_splits_reproduces_files():
    """The CSVs are exactly what data/make_splits.py writes from data/source/ (nothing edited by hand)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_splits", DATA / "make_splits.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name, (prefix, labels) in mod.SETS.items():
        assert labels == load_task(name)["output"]["labels"]
        _, rows = load_rows(name)
        assert mod.make(name, prefix, labels) == rows
