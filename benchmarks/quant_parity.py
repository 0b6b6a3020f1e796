#!/usr/bin/env python3
"""Which part of the wasm/native logit difference is the kernels': logits of one prompt from four builds of the same
C API (wasm-st, wasm-mt, native with x86 SIMD, native-generic with ggml's scalar C kernels), KV cache in F32, for a
tiny random-weight 4-layer llama of each weight type the model families use, and for the real SmolLM2 (Q4_1) and
Gemma 3 270M (Q4_K_M). Prints max and mean |logit difference| per pair; tests/test_quant_parity.py asserts bounds.

    python3 benchmarks/quant_parity.py [--real] [--f32] [--quants Q4_1,Q6_K] [--json out.json]

Same threads on both sides of a pair: wasm-st and the native builds at 1 thread, wasm-mt and the native builds at 2.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for sub in ("py", "wasm", "tests"):
    sys.path.insert(0, str(REPO / sub))

import build as wasm_build  # noqa: E402
import deps  # noqa: E402
from pocketmind import Model  # noqa: E402
from pocketmind.engine import convert_model  # noqa: E402
from pocketmind.native import backend  # noqa: E402
from tiny_gguf import write_tiny_llama  # noqa: E402

QUANT_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"]
PROMPT = "the word and the other one was not said and then all of them were what they are"
CHAT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
GEMMA_TEXT = "The capital of France is Paris. The capital of Germany is"
# K-quants need rows of a multiple of 256 values: every tiny model here has that shape, whatever its type
TINY_SHAPE = {"n_layer": 4, "n_embd": 256, "n_ff": 512, "n_ctx": 512}


def write_quant_model(folder: Path, quant: str, seed: int = 0) -> Path:
    return write_tiny_llama(folder / f"tiny4-{quant.lower()}-s{seed}.gguf", quant, seed=seed, **TINY_SHAPE)


def native_logits(lib: Path, model_path: Path, tokens: list[int], threads: int, n_ctx: int = 512,
                  kv_f32: bool = True) -> np.ndarray:
    with Model.from_file(model_path, backend(str(lib))) as model, \
            model.context(n_ctx=n_ctx, n_threads=threads, kv_f32=kv_f32) as ctx:
        ctx.decode(tokens, all_logits=True)
        return np.stack([ctx.logits(i).copy() for i in range(len(tokens))])


def wasm_logits(variant: str, model_path: Path, tokens: list[int], tmp: Path, n_ctx: int = 512) -> np.ndarray:
    out, job = tmp / f"{variant}.bin", tmp / f"{variant}.json"
    job.write_text(json.dumps({"module": str(REPO / "build" / variant / f"pocketmind-{variant.split('-')[1]}.js"),
                               "model": str(model_path), "n_ctx": n_ctx, "kv_f32": True,
                               "threads": 2 if variant == "wasm-mt" else 1,
                               "tasks": [{"op": "logits", "tokens": tokens, "out": str(out)}]}))
    subprocess.run(["node", "--no-experimental-fetch", str(REPO / "wasm" / "run_node.cjs"), str(job)],
                   capture_output=True, text=True, check=True, timeout=600)
    return np.fromfile(out, dtype=np.float32).reshape(len(tokens), -1)


def all_logits(model_path: Path, tokens: list[int], tmp: Path, n_ctx: int = 512) -> dict[str, np.ndarray]:
    """{engine@threads: logits} for the six runs the comparison needs."""
    libs = {name: REPO / "build" / name / "libpocketmind.so" for name in ("native", "native-generic")}
    runs = {f"{name}@{t}": native_logits(lib, model_path, tokens, t, n_ctx) for name, lib in libs.items()
            for t in (1, 2)}
    runs["wasm-st@1"] = wasm_logits("wasm-st", model_path, tokens, tmp, n_ctx)
    runs["wasm-mt@2"] = wasm_logits("wasm-mt", model_path, tokens, tmp, n_ctx)
    return runs


PAIRS = [("wasm-st@1", "native-generic@1"), ("wasm-mt@2", "native-generic@2"), ("wasm-st@1", "native@1"),
         ("wasm-mt@2", "native@2"), ("native-generic@1", "native@1"), ("wasm-st@1", "wasm-mt@2"),
         ("native@1", "native@2"), ("native-generic@1", "native-generic@2")]


def differences(runs: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    out = {}
    for a, b in PAIRS:
        diff = np.abs(runs[a] - runs[b])
        out[f"{a} vs {b}"] = {"max": float(diff.max()), "mean": float(diff.mean()),
                              "argmax_equal": float((runs[a].argmax(1) == runs[b].argmax(1)).mean())}
    return out


def print_kernels(tmp: Path) -> None:
    """tests/test_quant_parity.py's kernel harness: per type, 8 rows of 2048 random values."""
    import test_quant_parity as t

    tree = wasm_build.source_tree()
    print("| type | activations as the reference quantizer's | max abs(wasm - generic) / (norm(w) norm(a)) | "
          "max abs(generic - exact) / (norm(w) norm(a)) |\n|---|---|---:|---:|")
    results = t.kernel_results(t.build_kernel_harness(tree, tree / t.WASM_QUANTS_C, tmp / "kernels.js"), tmp)
    for quant, rows in results.items():
        same = sum(r["same_activation"] == 1 for r in rows)
        dot = max(abs(r["wasm"] - r["generic"]) / r["norm"] for r in rows)
        exact = max(abs(r["generic"] - r["exact"]) / r["norm"] for r in rows)
        print(f"| {quant} | {same} of {len(rows)} rows | {dot:.1e} | {exact:.1e} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", action="store_true", help="also SmolLM2 Q4_1 and Gemma 3 270M Q4_K_M")
    parser.add_argument("--f32", action="store_true",
                        help="also SmolLM2 dequantized to F32 weights (no 8-bit rounding of matmul inputs)")
    parser.add_argument("--quants", default=",".join(QUANT_TYPES))
    parser.add_argument("--seeds", default="0", help="tiny models' seeds, e.g. 0,1,2,3,4,5")
    parser.add_argument("--kernels", action="store_true",
                        help="also the kernels alone: wasm SIMD vs ggml's generic C, in one wasm module")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    for variant in ("native", "native-generic", "wasm-st", "wasm-mt"):
        wasm_build.build(variant)
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.kernels:
            print_kernels(tmp)
        seeds = [int(x) for x in args.seeds.split(",")]
        cases = [(f"tiny {q}" + (f" seed {seed}" if seed else ""), write_quant_model(tmp, q, seed), PROMPT, True)
                 for q in args.quants.split(",") if q for seed in seeds]
        if args.real:
            cases += [("SmolLM2 Q4_1", deps.smollm2(), CHAT, False),
                      ("Gemma3 Q4_K_M", deps.gemma3_270m(), GEMMA_TEXT, True)]
        if args.f32:
            f32 = tmp / "smollm2-f32.gguf"
            convert_model(deps.smollm2(), f32, "F32", n_threads=2,
                          backend=backend(str(REPO / "build" / "native" / "libpocketmind.so")))
            cases.append(("SmolLM2 dequantized to F32", f32, CHAT, False))
        for name, path, text, plain in cases:
            with Model.from_file(path, backend(str(REPO / "build" / "native" / "libpocketmind.so"))) as model:
                tokens = model.tokenize(text, add_special=plain, parse_special=not plain).tolist()
            runs = all_logits(path, tokens, tmp)
            report[name] = differences(runs)
            span = float(np.ptp(runs["native@1"], axis=1).mean())
            print(f"\n{name}: {len(tokens)} tokens, logits span {span:.1f} on average", flush=True)
            print("| pair | max abs diff | mean abs diff | argmax equal |\n|---|---:|---:|---:|")
            if not name.startswith("tiny"):  # for scale: what the page's default KV cache (F16) does natively
                runs["native-default-kv@1"] = native_logits(REPO / "build" / "native" / "libpocketmind.so", path,
                                                            tokens, 1, kv_f32=False)
                diff = np.abs(runs["native-default-kv@1"] - runs["native@1"])
                report[name]["native-default-kv@1 vs native@1"] = {
                    "max": float(diff.max()), "mean": float(diff.mean()),
                    "argmax_equal": float((runs["native-default-kv@1"].argmax(1) == runs["native@1"].argmax(1)).mean())}
            for pair, d in report[name].items():
                print(f"| {pair} | {d['max']:.2e} | {d['mean']:.2e} | {d['argmax_equal']:.0%} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
