#!/usr/bin/env python3
"""Two wasm builds side by side under Node: this checkout's build/wasm-st (or, with --threads 2 or more,
build/wasm-mt) against a baseline copy (say, the build saved before a kernel patch), on both benchmark models.

    python3 benchmarks/wasm_ab.py --baseline DIR [--label NAME] [--processes 2] [--rounds 5] [--prompts 64,63]
                                  [--gen 32] [--threads 1] [--model NAME=PATH ...] [--no-write]
    python3 benchmarks/wasm_ab.py --relaxed [--baseline DIR] ...

DIR holds pocketmind-st.js/.wasm (pocketmind-mt.* and its worker for --threads > 1). With --relaxed the new build
is the relaxed-SIMD one (build/wasm-st-relaxed or wasm-mt-relaxed), the baseline by default this checkout's plain
build. benchmarks/wasm_ab.cjs loads both builds into one Node process, each with the model, and benchmarks them in
turn --rounds times (a prompt of each length in one batch, then --gen tokens one by one, after a warm-up of the
same shapes): the same code's speed differs by up to 1.5x between Node processes on this machine, so the two are
compared inside each process. Not so for two multi-thread builds: the idle one's threads keep polling for work and
slowed the other to under half its speed here, so with --threads > 1 each round runs each build in a process of its
own, in turns. The table gives medians over every round of every process and the median of the per-round ratios
new / baseline; every sample goes to docs/wasm_ab.json. Writes docs/wasm_ab.md (keeping its part written by hand)
unless --no-write. --model (repeatable) benchmarks other GGUF files in place of the two benchmark models (say,
synthetic ones of a weight type they lack).
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "wasm"), str(REPO / "benchmarks")]

import build as wasm_build  # noqa: E402
import deps  # noqa: E402
from machine import cpu_name, write_doc  # noqa: E402

MODELS = {"SmolLM2-135M-Instruct Q4_1": deps.smollm2, "Gemma-3-270M Q4_K_M": deps.gemma3_270m}


def run(modules: dict[str, Path], model: Path, prompts: list[int], n_gen: int, rounds: int, threads: int) -> dict:
    if threads > 1:
        # two multi-thread modules in one process slow each other (the idle one's threads poll for work): one
        # process per build and round instead, in turns (the order turning each round)
        results: dict[str, list] = {name: [] for name in modules}
        for round_ in range(rounds):
            names = list(modules)[::-1] if round_ % 2 else list(modules)
            for name in names:
                results[name] += run_node({name: modules[name]}, model, prompts, n_gen, 1, threads)[name]
        return results
    return run_node(modules, model, prompts, n_gen, rounds, threads)


def run_node(modules: dict[str, Path], model: Path, prompts: list[int], n_gen: int, rounds: int, threads: int) -> dict:
    """One Node process of benchmarks/wasm_ab.cjs with these modules."""
    with tempfile.TemporaryDirectory() as tmp:
        job = Path(tmp) / "job.json"
        job.write_text(json.dumps({"modules": {k: str(v) for k, v in modules.items()}, "model": str(model),
                                   "n_ctx": 1024, "n_batch": 512, "threads": threads, "rounds": rounds,
                                   "tasks": [{"n_prompt": n, "n_gen": n_gen} for n in prompts]}))
        out = subprocess.run(["node", "--no-experimental-fetch", wasm_build.NODE_RELAXED_FLAG,
                              str(REPO / "benchmarks" / "wasm_ab.cjs"), str(job)],
                             capture_output=True, text=True, check=True, timeout=3600).stdout
    return json.loads(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path)
    parser.add_argument("--relaxed", action="store_true",
                        help="the new build is the relaxed-SIMD one; the baseline by default the plain one")
    parser.add_argument("--label", default="this change")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prompts", default="64,63")
    parser.add_argument("--gen", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                        help="a GGUF to benchmark in place of the benchmark models (repeatable)")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave docs/ alone")
    args = parser.parse_args()
    if args.baseline is None and not args.relaxed:
        parser.error("--baseline DIR is needed (or --relaxed)")
    models = MODELS
    if args.model:
        if any("=" not in m for m in args.model):
            parser.error("--model takes NAME=PATH")
        pairs = [m.split("=", 1) for m in args.model]
        missing = [path for _, path in pairs if not Path(path).is_file()]
        if missing:
            parser.error(f"no such model file: {', '.join(missing)}")
        models = {name: (lambda p=Path(path): p) for name, path in pairs}
    prompts = [int(n) for n in args.prompts.split(",")]
    plain = "wasm-st" if args.threads == 1 else "wasm-mt"
    new = plain + "-relaxed" if args.relaxed else plain
    modules = {"baseline": (args.baseline or REPO / "build" / plain) / f"{wasm_build.module_name(plain)}.js",
               "new": REPO / "build" / new / f"{wasm_build.module_name(new)}.js"}
    samples: dict[str, dict[str, list]] = {m: {"baseline": [], "new": []} for m in models}
    for process in range(args.processes):
        for label, path in models.items():
            result = run(modules, path(), prompts, args.gen, args.rounds, args.threads)
            for build in modules:
                samples[label][build] += result[build]
            print(f"process {process + 1}/{args.processes}: {label} done", file=sys.stderr, flush=True)

    lines = ["# Two wasm builds side by side", "",
             f"Written by `python3 benchmarks/wasm_ab.py{' --relaxed' if args.relaxed else ''}"
             f"{' --baseline ...' if args.baseline else ''} --label \"{args.label}\" --processes "
             f"{args.processes} --rounds {args.rounds} --prompts {args.prompts} --gen {args.gen} "
             f"--threads {args.threads}{''.join(f' --model {m}' for m in args.model)}` on "
             f"{datetime.date.today()} ({cpu_name()}). "
             f"{'Single-thread builds' if args.threads == 1 else 'Multi-thread builds'} under Node, {args.threads} "
             f"thread(s), {'both in each Node process' if args.threads == 1 else 'each in a Node process of its own'} "
             f"and benchmarked in turn; {args.processes * args.rounds} rounds per model. New: {args.label}.",
             "", "| model | measure | baseline tokens/s | new tokens/s | new / baseline (median of rounds) |",
             "|---|---|---|---|---|"]
    for label in models:
        base, new = samples[label]["baseline"], samples[label]["new"]
        for i, n in enumerate(prompts):
            for key, name in (("pp_tps", f"prompt of {n}"), ("tg_tps", f"generation after {n}")):
                ratio = statistics.median(b_new[i][key] / b_base[i][key] for b_base, b_new in zip(base, new))
                lines.append(f"| {label} | {name} | {statistics.median(r[i][key] for r in base):.1f} | "
                             f"{statistics.median(r[i][key] for r in new):.1f} | {ratio:.2f}x |")
    if not args.no_write:
        write_doc(REPO / "docs" / "wasm_ab.md", "\n".join(lines),
                  {"label": args.label, "prompts": prompts, "gen": args.gen, "samples": samples})
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
