#!/usr/bin/env python3
"""How closely the wasm builds (under Node) match the native build: max |logit difference| per tiny model quant,
with attention in F32 and with the defaults, and for SmolLM2 the cosine, max and mean difference; and how many of
32 greedy tokens (continuing past end-of-generation) agree. The tests assert bounds; this prints the figures.

    python3 benchmarks/parity_report.py
"""
from __future__ import annotations

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
from pocketmind.native import NativeBackend  # noqa: E402
from tiny_gguf import write_tiny_llama  # noqa: E402


def wasm_logits(variant: str, model: Path, tokens: list[int], n_ctx: int, kv_f32: bool, tmp: Path) -> np.ndarray:
    out = tmp / "logits.bin"
    job = tmp / "job.json"
    job.write_text(json.dumps({"module": str(REPO / "build" / variant / f"pocketmind-{variant.split('-')[1]}.js"),
                               "model": str(model), "n_ctx": n_ctx, "kv_f32": kv_f32,
                               "threads": 2 if variant == "wasm-mt" else 1,
                               "tasks": [{"op": "logits", "tokens": tokens, "out": str(out)},
                                         {"op": "greedy", "tokens": tokens, "n": 32, "ignore_eog": True}]}))
    proc = subprocess.run(["node", "--no-experimental-fetch", str(REPO / "wasm" / "run_node.cjs"), str(job)],
                          capture_output=True, text=True, check=True)
    greedy = json.loads(proc.stdout.strip().splitlines()[-1])[2]["tokens"]
    return np.fromfile(out, dtype=np.float32).reshape(len(tokens), -1), greedy


def native_run(model: Model, tokens: list[int], n_ctx: int, kv_f32: bool) -> tuple[np.ndarray, list[int]]:
    with model.context(n_ctx=n_ctx, kv_f32=kv_f32) as ctx:
        ctx.decode(tokens, all_logits=True)
        logits = np.stack([ctx.logits(i).copy() for i in range(len(tokens))])
        out = []
        for _ in range(32):
            out.append(int(np.argmax(ctx.logits())))
            ctx.decode([out[-1]])
    return logits, out


def main() -> int:
    for variant in ("native", "wasm-st", "wasm-mt"):
        wasm_build.build(variant)
    backend = NativeBackend(REPO / "build" / "native" / "libpocketmind.so")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print("| model | engine | attention | max abs diff | leading greedy tokens equal |\n|---|---|---|---:|---|")
        cases = [(q, write_tiny_llama(tmp / f"tiny-{q}.gguf", q), "the word and the other one was not said", 256)
                 for q in ("F32", "F16", "Q8_0", "Q4_0")]
        chat = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
        cases.append(("SmolLM2 Q4_1", deps.smollm2(), chat, 512))
        for name, path, text, n_ctx in cases:
            with Model.from_file(path, backend) as model:
                real = name.startswith("SmolLM2")
                tokens = model.tokenize(text, add_special=not real, parse_special=real).tolist()
                for variant in ("wasm-st", "wasm-mt"):
                    for kv_f32 in (True, False):
                        ref, ref_greedy = native_run(model, tokens, n_ctx, kv_f32)
                        got, greedy = wasm_logits(variant, path, tokens, n_ctx, kv_f32, tmp)
                        diff = np.abs(got - ref)
                        extra = ""
                        if real:
                            cosine = ((got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1))
                            extra = f" (mean {diff.mean():.3f}, min cosine {cosine.min():.5f})"
                        same = next((i for i, (a, b) in enumerate(zip(greedy, ref_greedy)) if a != b), 32)
                        eog = next((i for i, t in enumerate(ref_greedy) if model.is_eog(t)), None)
                        where = "" if eog is None else f" (the answer ends at token {eog})"
                        print(f"| {name} | {variant} | {'F32' if kv_f32 else 'default'} | {diff.max():.2e}{extra} | "
                              f"{same} of 32{where} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
