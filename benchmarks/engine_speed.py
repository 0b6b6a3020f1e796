#!/usr/bin/env python3
"""Prompt-processing and generation speed of SmolLM2-135M-Instruct Q4_1: native (ctypes) with 1 and 2 threads,
and the wasm builds under Node (single-thread, and multi-thread with 2 threads). Rounds are interleaved so the
machine's noise hits every engine alike; the table shows medians and the ratios the targets are about.

    python3 benchmarks/engine_speed.py [--rounds 3] [--prompt 64] [--gen 64]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "py"))
sys.path.insert(0, str(REPO / "wasm"))

import build as wasm_build  # noqa: E402
import deps  # noqa: E402
import numpy as np  # noqa: E402

from pocketmind import Model  # noqa: E402
from pocketmind.native import NativeBackend  # noqa: E402


def bench_native(model: Model, threads: int, n_prompt: int, n_gen: int) -> tuple[float, float]:
    prompt = [1 + (i * 7919) % (model.n_vocab - 1) for i in range(n_prompt)]  # same tokens as run_node.cjs
    with model.context(n_ctx=512, n_threads=threads) as ctx:
        ctx.decode(prompt)  # warm-up with the same shapes, as the wasm driver does
        ctx.decode(prompt[:8])
        ctx.kv_clear()
        t0 = time.perf_counter()
        ctx.decode(prompt)
        pp = n_prompt / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(n_gen):
            ctx.decode([int(np.argmax(ctx.logits()))])
        tg = n_gen / (time.perf_counter() - t0)
    return pp, tg


def bench_wasm(variant: str, model_path: Path, threads: int, n_prompt: int, n_gen: int) -> tuple[float, float]:
    module = REPO / "build" / variant / f"pocketmind-{variant.split('-')[1]}.js"
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as job:
        json.dump({"module": str(module), "model": str(model_path), "n_ctx": 512, "threads": threads,
                   "tasks": [{"op": "bench", "n_prompt": n_prompt, "n_gen": n_gen}]}, job)
    proc = subprocess.run(["node", "--no-experimental-fetch", str(REPO / "wasm" / "run_node.cjs"), job.name],
                          capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])[1]
    return result["pp_tps"], result["tg_tps"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--gen", type=int, default=64)
    args = parser.parse_args()

    for variant in ("native", "wasm-st", "wasm-mt"):
        wasm_build.build(variant)
    path = deps.smollm2()
    model = Model.from_file(path, NativeBackend(REPO / "build" / "native" / "libpocketmind.so"))
    engines = {
        "native 1 thread": lambda: bench_native(model, 1, args.prompt, args.gen),
        "native 2 threads": lambda: bench_native(model, 2, args.prompt, args.gen),
        "wasm-st (Node)": lambda: bench_wasm("wasm-st", path, 1, args.prompt, args.gen),
        "wasm-mt 2 threads (Node)": lambda: bench_wasm("wasm-mt", path, 2, args.prompt, args.gen),
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in engines}
    for r in range(args.rounds):
        for name, run in engines.items():
            runs[name].append(run())
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    med = {name: (statistics.median(p for p, _ in v), statistics.median(t for _, t in v)) for name, v in runs.items()}
    print(f"\nSmolLM2-135M-Instruct Q4_1, pp {args.prompt} tokens, tg {args.gen} tokens, median of {args.rounds}\n")
    print("| engine | pp tokens/s | tg tokens/s |\n|---|---:|---:|")
    for name, (pp, tg) in med.items():
        print(f"| {name} | {pp:.1f} | {tg:.1f} |")
    st, mt, n1 = med["wasm-st (Node)"], med["wasm-mt 2 threads (Node)"], med["native 1 thread"]
    print()
    print(f"wasm-st / native 1 thread:  pp {st[0] / n1[0]:.2f}x, tg {st[1] / n1[1]:.2f}x  (target tg >= 0.5x)")
    print(f"wasm-mt 2 threads / wasm-st: pp {mt[0] / st[0]:.2f}x, tg {mt[1] / st[1]:.2f}x  (target >= 1.5x)")
    print("\nbuild times (from the cache's records):")
    for variant in ("native", "wasm-st", "wasm-mt"):
        info = json.loads((REPO / "build" / variant / "BUILD_INFO.json").read_text())
        print(f"  {variant}: llama.cpp libraries {info['library_build_s']:.0f} s, binding + link {info['link_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
