"""Write data/support_tickets.csv and data/review_sentiment.csv from the hand-written lists in data/source/.

Each source line is `label<TAB>text` (lines starting with # are comments). Within each label the items are
shuffled with a fixed seed and the first round(40 %) go to the dev split, the rest to test (stratified by label);
then all rows are shuffled (same seed) so the file is not sorted by label, and numbered t001/r001... in that order.
Deterministic: running it again writes the same files.

    python3 data/make_splits.py
"""
import csv
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20261129
DEV_SHARE = 0.4
SETS = {  # source file -> (output csv, id prefix, labels)
    "support_tickets": ("t", ["billing", "shipping", "technical", "account", "returns"]),
    "review_sentiment": ("r", ["positive", "negative", "neutral"]),
}


def norm(text: str) -> str:
    return " ".join(text.lower().split())


def read_source(path: Path, labels: list[str]) -> list[tuple[str, str]]:
    items, seen = [], {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        label, sep, text = line.partition("\t")
        text = text.strip()
        if not sep or not text:
            sys.exit(f"{path.name}:{n}: expected label<TAB>text")
        if label not in labels:
            sys.exit(f"{path.name}:{n}: unknown label {label!r}")
        if norm(text) in seen:
            sys.exit(f"{path.name}:{n}: duplicate of line {seen[norm(text)]}")
        seen[norm(text)] = n
        items.append((label, text))
    return items


def make(name: str, prefix: str, labels: list[str]) -> list[dict]:
    items = read_source(HERE / "source" / f"{name}.tsv", labels)
    rng = random.Random(f"{SEED}-{name}")
    rows = []
    for label in labels:
        texts = [t for lab, t in items if lab == label]
        rng.shuffle(texts)
        n_dev = round(len(texts) * DEV_SHARE)
        rows += [{"split": "dev" if i < n_dev else "test", "text": t, "label": label} for i, t in enumerate(texts)]
    rng.shuffle(rows)
    width = max(3, len(str(len(rows))))
    return [{"id": f"{prefix}{i:0{width}d}", **row} for i, row in enumerate(rows, 1)]


def main() -> None:
    for name, (prefix, labels) in SETS.items():
        rows = make(name, prefix, labels)
        with open(HERE / f"{name}.csv", "w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["id", "split", "text", "label"], lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        print(f"{name}.csv: {len(rows)} rows")


if __name__ == "__main__":
    main()
