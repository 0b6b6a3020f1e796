#!/usr/bin/env python3
"""Two native builds of our library side by side: this checkout's build/native against a baseline copy (say, the
build saved before a patch to llama.cpp), on both benchmark models.

    python3 benchmarks/native_ab.py --baseline DIR [--label NAME] [--rounds 3] [--prompts 64,600] [--gen 64]
                                    [--threads 1,2]

DIR holds libpocketmind.so. Each round measures, for each model, thread count and prompt length, both libraries in
turn (the order alternating between rounds) as benchmarks/wllama_compare.py measures native llama.cpp: load, a
warm-up of the same shapes, the prompt in one batch, then --gen greedy single-token decodes. The table gives medians
over the rounds and the median of the per-round ratios new / baseline. Writes docs/native_ab.md (and .json).
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "py"), str(REPO / "wasm"), str(REPO / "benchmarks")]

from machine import cpu_name, write_doc  # noqa: E402
from pocketmind import Model  # noqa: E402
from pocketmind.bench import text_prompt  # noqa: E402
from pocketmind.native import NativeBackend  # noqa: E402
from wasm_ab import MODELS  # noqa: E402
from wllama_compare import native_sample  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--label", default="this change")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompts", default="64,600")
    parser.add_argument("--gen", type=int, default=64)
    parser.add_argument("--threads", default="1,2")
    args = parser.parse_args()
    prompts = [int(n) for n in args.prompts.split(",")]
    threads = [int(n) for n in args.threads.split(",")]
    libs = {"baseline": args.baseline / "libpocketmind.so", "new": REPO / "build" / "native" / "libpocketmind.so"}
    samples: dict[str, dict] = {}  # "model|threads|prompt" -> {"baseline": [...], "new": [...]}
    for r in range(args.rounds):
        for label, path in MODELS.items():
            with Model.from_file(path(), NativeBackend(str(libs["new"]))) as model:
                tokens = {n: text_prompt(model, n) for n in prompts}
            for t in threads:
                for n in prompts:
                    for build in (["baseline", "new"] if r % 2 == 0 else ["new", "baseline"]):
                        sample = native_sample(libs[build], path(), t, tokens[n], args.gen)
                        samples.setdefault(f"{label}|{t}|{n}", {"baseline": [], "new": []})[build].append(sample)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    lines = ["# Two native builds side by side", "",
             f"Written by `python3 benchmarks/native_ab.py --baseline ... --label \"{args.label}\" --rounds "
             f"{args.rounds} --prompts {args.prompts} --gen {args.gen} --threads {args.threads}` on "
             f"{datetime.date.today()} ({cpu_name()}). New: {args.label}.", "",
             "| model | threads | measure | baseline tokens/s | new tokens/s | new / baseline (median of rounds) |",
             "|---|---:|---|---|---|---|"]
    for key, pair in samples.items():
        label, t, n = key.split("|")
        for measure, name in (("pp_tps", f"prompt of {n}"), ("tg_tps", f"generation after {n}")):
            ratio = statistics.median(b[measure] / a[measure] for a, b in zip(pair["baseline"], pair["new"]))
            lines.append(f"| {label} | {t} | {name} | {statistics.median(s[measure] for s in pair['baseline']):.1f} | "
                         f"{statistics.median(s[measure] for s in pair['new']):.1f} | {ratio:.2f}x |")
    text = "\n".join(lines)
    write_doc(REPO / "docs" / "native_ab.md", text, {"label": args.label, "gen": args.gen, "samples": samples})
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
