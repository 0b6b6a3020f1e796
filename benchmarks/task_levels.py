#!/usr/bin/env python3
"""Every level of fitting a small model to a task, side by side per task: zero-shot and k-shot prompts, a task head,
fine-tuned weights, ensembles and the cascade: test accuracy, macro-F1, training time, inference ms per item, memory.

Measures nothing: it reads the numbers the three measuring benchmarks keep beside their docs (the same test rows in
all three) and says which level pays off for which task.

    docs/task_accuracy.json  <- benchmarks/task_accuracy.py   (prompts, ensembles, cascade; per-model peak RSS)
    docs/task_heads.json     <- benchmarks/task_heads.py      (heads on each model's features)
    docs/finetune.json       <- benchmarks/finetune.py        (SmolLM2 fine-tuned; natively, and the page's speed)

    python3 benchmarks/task_levels.py [--out docs/task_levels.md]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from task_accuracy import gold_labels, task_data  # noqa: E402

DOCS = REPO / "docs"
MB = 2 ** 20
# within this many accuracy points of the best, a cheaper level counts as just as good (about 2 test items here)
SAME_POINTS = 2.0


def load(name: str) -> dict:
    return json.loads((DOCS / name).read_text(encoding="utf-8"))


def model_of(setup: str) -> str:
    return setup.rsplit(" ", 1)[0]


def rows_for(task: str, accuracy: dict, heads: dict, finetune: dict) -> list[dict]:
    """One row per setup of the task; level, figures and the script they come from."""
    run = next(t for t in accuracy["tasks"] if t["name"] == task)
    rss = {name: bytes_ - accuracy["base_rss"] for name, bytes_ in accuracy["rss"].items()}  # each model alone
    rows = []
    for s in run["result"]["report"]["setups"]:
        name = s["name"]
        if name.endswith("-shot"):
            shots = int(name.rsplit(" ", 1)[1].split("-")[0])
            level = "zero-shot prompt" if shots == 0 else f"{shots}-shot prompt"
            memory = f"{rss[model_of(name)] / MB:.0f} MB"
            training = "none"
        else:
            level = "cascade" if name == "cascade" else "ensemble"
            memory = f"{sum(rss.values()) / MB:.0f} MB (both models)"
            training = "fitted on every voter's dev answers"
        rows.append({"level": level, "setup": name, "accuracy": s["accuracy"], "macro_f1": s["macro_f1"],
                     "training": training, "ms": s["ms_per_item"], "memory": memory, "source": "task_accuracy"})
    for r in heads["results"]:
        if r["task"] != task:
            continue
        model_rss = rss.get(r["model"])
        rows.append({
            "level": "task head", "setup": f"{r['model']} + head", "accuracy": r["test"][0],
            "macro_f1": r["macro_f1"][0],
            # the head's cost is its training rows' features (one forward pass each) plus numpy's few epochs
            "training": f"{r['features_s'] * r['n']['train'] / r['n_texts'] + r['training_s'][0]:.1f} s",
            "ms": 1000 * r["features_s"] / r["n_texts"],
            "memory": (f"{model_rss / MB:.0f} MB" if model_rss is not None else "not measured")
                      + f" + {r['head_json_bytes'] / 1024:.0f} KB head",
            "source": "task_heads"})
    tuned = finetune.get("native", {}).get(task)
    if tuned:
        written = tuned["written"]
        epochs = sum(1 for e in tuned["epochs"] if e["epoch"] > 0)
        rows.append({
            "level": "fine-tuned",
            "setup": f"SmolLM2 last {finetune['layers']} blocks, {epochs} epoch(s), Q8_0, loss on "
                     + ("the answers" if finetune.get("loss") == "answer tokens" else "every token"),
            "accuracy": written["accuracy"], "macro_f1": written["macro_f1"],
            "training": f"{tuned['seconds']['training'] / 60:.1f} min ({finetune['threads']} threads)",
            "ms": written["ms_per_item"],
            "memory": f"{tuned['peak_rss'] / MB:,.0f} MB training (process peak); file {written['bytes'] / MB:.0f} MB",
            "source": "finetune"})
    return rows


def verdict(task: str, rows: list[dict], baseline: float) -> str:
    """Which level pays off: the best test accuracy, and the cheapest level within SAME_POINTS of it."""
    best = max(rows, key=lambda r: r["accuracy"])
    by_level: dict[str, dict] = {}
    for r in rows:
        if r["level"] not in by_level or r["accuracy"] > by_level[r["level"]]["accuracy"]:
            by_level[r["level"]] = r
    order = ["zero-shot prompt", "3-shot prompt", "task head", "ensemble", "cascade", "fine-tuned"]  # by cost
    cheapest = next(by_level[lv] for lv in order if lv in by_level
                    and 100 * (best["accuracy"] - by_level[lv]["accuracy"]) <= SAME_POINTS)
    levels = "; ".join(f"{lv} {100 * by_level[lv]['accuracy']:.1f} %" for lv in order if lv in by_level)
    text = (f"**{task}**: best level by test accuracy: {best['level']} ({best['setup']}, "
            f"{100 * best['accuracy']:.1f} %, majority baseline {100 * baseline:.1f} %). Best of each level: "
            f"{levels}.")
    if cheapest is not best:
        text += (f" The cheapest level within {SAME_POINTS:.0f} points of it is the {cheapest['level']} "
                 f"({100 * cheapest['accuracy']:.1f} %).")
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DOCS / "task_levels.md")
    args = parser.parse_args()
    accuracy, heads, finetune = load("task_accuracy.json"), load("task_heads.json"), load("finetune.json")
    lines = [
        "# Which level of training pays off, per task",
        "",
        "Written by `benchmarks/task_levels.py` from the numbers three benchmarks keep beside their docs; it "
        "measures nothing itself. Every figure is on the same test rows of each task:",
        "",
        f"- prompts, ensembles, cascade, per-model memory: `{accuracy['argv']}` "
        f"({accuracy['started'][:10]}, {accuracy['threads']} thread(s)) -> [task_accuracy.md](task_accuracy.md);",
        f"- heads: `{heads['command']}` ({heads['date']}, {heads['threads']} thread(s)) -> "
        "[task_heads.md](task_heads.md) (seed 0; its spread over seeds is there);",
        f"- fine-tuning: `{finetune['command']}` ({finetune['date']}, {finetune['threads']} thread(s)) -> "
        "[finetune.md](finetune.md), where the page's figures are too.",
        "",
        "All natively (CPython, the native library) on a shared, noisy 2-core machine: **accuracy and macro-F1 are "
        "deterministic, the seconds are rough and were measured in different runs** (and at different thread "
        "counts: the fine-tuned row's ms/item is at its run's threads). Memory is native process memory (peak RSS "
        "above a process that only imports pocketmind), not the page's wasm heap. A head's ms/item is its "
        "model's forward pass over the text (the head itself is one matrix product); its training time is the "
        "forward passes over its training rows plus numpy's training. Ensembles and the cascade use the four "
        "prompt setups as voters (see task_accuracy.md).",
        "",
    ]
    for t in accuracy["tasks"]:
        task = t["name"]
        report = t["result"]["report"]
        rows = rows_for(task, accuracy, heads, finetune)
        task_json = REPO / "data" / "tasks" / f"{task}.json"
        gold = gold_labels(json.loads(task_json.read_text(encoding="utf-8")), task_data(task_json), "test",
                           accuracy["limit"])
        baseline = max(gold.count(label) for label in set(gold)) / len(gold)
        labels = report["labels"]
        lines += [f"## {task} ({len(gold)} test rows, {len(labels)} labels)", "",
                  "| level | setup | test accuracy | macro-F1 | training (once) | ms/item | memory | from |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['level']} | {r['setup']} | {100 * r['accuracy']:.1f} % | {r['macro_f1']:.3f} | "
                         f"{r['training']} | {r['ms']:.0f} | {r['memory']} | {r['source']} |")
        lines += ["", verdict(task, rows, baseline), ""]
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
