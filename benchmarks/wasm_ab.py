#!/usr/bin/env python3
"""Two single-thread wasm builds side by side under Node: this checkout's build/wasm-st against a baseline copy
(say, build/wasm-st saved before a kernel patch), on both benchmark models, rounds interleaved.

    python3 benchmarks/wasm_ab.py --baseline DIR [--label NAME] [--rounds 5] [--prompts 64,63,256] [--gen 32]

DIR holds pocketmind-st.js/.wasm. Each sample is one wasm/run_node.cjs process with one {op: "bench"} task per
prompt length (a prompt of that many tokens in one batch, then --gen tokens one by one). The table gives medians
and the ratio this build / baseline; every sample goes to the JSON beside it. Writes docs/wasm_ab.md and
docs/wasm_ab.json.
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

import deps  # noqa: E402
from machine import cpu_name  # noqa: E402

MODELS = {"SmolLM2-135M-Instruct Q4_1": deps.smollm2, "Gemma-3-270M Q4_K_M": deps.gemma3_270m}


def bench(module: Path, model: Path, prompts: list[int], n_gen: int) -> list[dict]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as job:
        json.dump({"module": str(module), "model": str(model), "n_ctx": 1024, "n_batch": 512, "threads": 1,
                   "tasks": [{"op": "bench", "n_prompt": n, "n_gen": n_gen} for n in prompts]}, job)
    out = subprocess.run(["node", "--no-experimental-fetch", str(REPO / "wasm" / "run_node.cjs"), job.name],
                         capture_output=True, text=True, check=True, timeout=1200).stdout
    Path(job.name).unlink()
    return [r for r in json.loads(out.strip().splitlines()[-1]) if r.get("op") == "bench"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--label", default="this change")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prompts", default="64,63,256")
    parser.add_argument("--gen", type=int, default=32)
    args = parser.parse_args()
    prompts = [int(n) for n in args.prompts.split(",")]
    builds = {"baseline": args.baseline / "pocketmind-st.js", "new": REPO / "build" / "wasm-st" / "pocketmind-st.js"}
    samples: dict[str, dict[str, list[list[dict]]]] = {m: {b: [] for b in builds} for m in MODELS}
    for r in range(args.rounds):
        for label, path in MODELS.items():
            for build, module in builds.items():
                samples[label][build].append(bench(module, path(), prompts, args.gen))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    lines = ["# Two wasm builds side by side", "",
             f"Written by `python3 benchmarks/wasm_ab.py --baseline ... --label \"{args.label}\" --rounds "
             f"{args.rounds} --prompts {args.prompts} --gen {args.gen}` on {datetime.date.today()} ({cpu_name()}). "
             f"Single-thread builds under Node, 1 thread, rounds interleaved; medians of {args.rounds}. New: "
             f"{args.label}.", "",
             "| model | measure | baseline tokens/s | new tokens/s | new / baseline |", "|---|---|---|---|---|"]
    for label in MODELS:
        for i, n in enumerate(prompts):
            for key, name in (("pp_tps", f"prompt of {n}"), ("tg_tps", f"generation after {n}")):
                base = statistics.median(s[i][key] for s in samples[label]["baseline"])
                new = statistics.median(s[i][key] for s in samples[label]["new"])
                lines.append(f"| {label} | {name} | {base:.1f} | {new:.1f} | {new / base:.2f}x |")
    (REPO / "docs" / "wasm_ab.md").write_text("\n".join(lines) + "\n")
    (REPO / "docs" / "wasm_ab.json").write_text(json.dumps({"label": args.label, "prompts": prompts,
                                                            "gen": args.gen, "samples": samples}, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
