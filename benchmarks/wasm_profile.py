#!/usr/bin/env python3
"""Where the wasm engine's time goes, by function: the single-thread build linked once more with function names
(--profiling-funcs), run under Node's sampling profiler on each benchmark model's prompt and generation.

    python3 benchmarks/wasm_profile.py [--n-prompt 256] [--n-gen 16] [--top 12] [--relaxed]

Each model is run by wasm/run_node.cjs with one {op: "bench"} task (1 thread, the batch of --n-prompt tokens in one
decode, then --n-gen tokens one by one) under `node --cpu-prof`; the table gives each function's self time as a
share of the run (model loading included). Writes docs/wasm_profile.md. The profiled build is this checkout's
(patched) libraries; the link takes about two minutes. --relaxed profiles the relaxed-SIMD build (wasm/build.py:
RELAXED; what Chromium runs) in place of the plain one.
"""
from __future__ import annotations

import argparse
import collections
import datetime
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "wasm"), str(REPO / "benchmarks")]

import build as wasm_build  # noqa: E402
import deps  # noqa: E402
import gguf  # noqa: E402
from machine import cpu_name  # noqa: E402

MODELS = {"SmolLM2-135M-Instruct Q4_1": deps.smollm2, "Gemma-3-270M Q4_K_M": deps.gemma3_270m}
WATCHDOG = ("on_graph_node", "pm_js_busy")  # wasm/pocketmind.cpp's abort callback and the JS function it calls


def profiling_build(out: Path, variant: str) -> Path:
    tree = wasm_build.source_tree()
    libs = wasm_build.build_libs(wasm_build.plain(variant), tree)
    cmd, outputs = wasm_build.link_command(variant, tree, libs)
    subprocess.run([*cmd, "--profiling-funcs", "-o", str(out / outputs[0])], check=True,
                   env=wasm_build.emscripten_env())
    return out / outputs[0]


def self_times(profile: Path) -> collections.Counter:
    """Microseconds of self time per function name in a .cpuprofile."""
    data = json.loads(profile.read_text())
    names = {node["id"]: node["callFrame"]["functionName"] or "(anonymous)" for node in data["nodes"]}
    spent = collections.Counter()
    for node_id, delta in zip(data["samples"], data["timeDeltas"]):
        spent[names[node_id]] += delta
    return spent


def layer_weights_by_type(model: Path) -> collections.Counter:
    """How many of the model's layer matrix weights (blk.*, 2-D) each quantization type holds: what one token's
    prompt work passes through, and so which dot-product kernels run."""
    counts = collections.Counter()
    for tensor in gguf.GGUFReader(model).tensors:
        if tensor.name.startswith("blk.") and len(tensor.shape) == 2:
            counts[tensor.tensor_type.name] += int(tensor.n_elements)
    return counts


def profile_model(module: Path, model: Path, n_prompt: int, n_gen: int, folder: Path,
                  node_flags: list[str]) -> tuple[dict, collections.Counter]:
    job = folder / "job.json"
    job.write_text(json.dumps({"module": str(module), "model": str(model), "n_ctx": max(512, n_prompt + n_gen),
                               "n_batch": max(512, n_prompt), "threads": 1,
                               "tasks": [{"op": "bench", "n_prompt": n_prompt, "n_gen": n_gen}]}))
    prof_dir = folder / "prof"
    out = subprocess.run(["node", "--no-experimental-fetch", *node_flags, "--cpu-prof", f"--cpu-prof-dir={prof_dir}",
                          str(REPO / "wasm" / "run_node.cjs"), str(job)],
                         check=True, capture_output=True, text=True, timeout=900).stdout
    bench = next(r for r in json.loads(out) if r.get("op") == "bench")
    return bench, self_times(next(prof_dir.glob("*.cpuprofile")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-prompt", type=int, default=256)
    parser.add_argument("--n-gen", type=int, default=16)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--relaxed", action="store_true", help="profile the relaxed-SIMD build (what Chromium runs)")
    args = parser.parse_args()
    variant = "wasm-st-relaxed" if args.relaxed else "wasm-st"
    node_flags = [wasm_build.NODE_RELAXED_FLAG] if args.relaxed else []
    lines = [
        "# Where the wasm engine's time goes",
        "",
        f"Written by `python3 benchmarks/wasm_profile.py --n-prompt {args.n_prompt} --n-gen {args.n_gen}"
        f"{' --relaxed' if args.relaxed else ''}` on {datetime.date.today()} ({cpu_name()}): the single-thread build "
        f"({variant}) with function names under Node's sampling "
        "profiler, one prompt batch and then generated tokens one by one. Self time per function as a share of the "
        "whole run (loading the model included).",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        module = profiling_build(Path(tmp), variant)
        for label, path in MODELS.items():
            folder = Path(tmp) / label.split()[0]
            folder.mkdir()
            bench, spent = profile_model(module, path(), args.n_prompt, args.n_gen, folder, node_flags)
            total = sum(spent.values())
            lines += ["", f"## {label}", "",
                      f"Prompt {bench['pp_tps']:.1f} tokens/s, generation {bench['tg_tps']:.1f} tokens/s (profiled, "
                      "so slower than unprofiled).", ""]
            weights = layer_weights_by_type(path())
            lines += ["Layer matrix weights by type (from the GGUF's tensor table): " + ", ".join(
                f"{kind} {n / 1e6:.1f} M ({100 * n / sum(weights.values()):.0f} %)" for kind, n in weights.most_common())
                + ".", "", "| function | self time | share |", "|---|---|---|"]
            for name, micros in spent.most_common(args.top):
                lines.append(f"| `{name[:90]}` | {micros / 1e6:.2f} s | {100 * micros / total:.1f} % |")
            # the watchdog's sign of life: one call per graph node into JS (Module.onBusy is not set under Node,
            # so the page adds the throttle's clock check to this)
            busy = sum(micros for name, micros in spent.items() if name.startswith(WATCHDOG))
            lines += ["", f"The watchdog's sign of life (`{'`, `'.join(WATCHDOG)}`, once per graph node): "
                      f"{busy / 1e3:.1f} ms, {100 * busy / total:.3f} % of the run."]
    (REPO / "docs" / "wasm_profile.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
