"""The relaxed-SIMD builds (wasm/build.py: RELAXED) compute the plain builds' logits bit for bit, and the feature
test that picks them (site/wasm-features.js) tells a runtime with relaxed SIMD from one without."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

import build as wasm_build
from stepped_decode import token_ids
from tiny_gguf import write_tiny_llama

REPO = Path(__file__).resolve().parents[1]

STEPS = 6  # generated tokens (one-row kernels) after the prompt batch (2x2 kernels)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    # the weight types wasm-simd-relaxed-dot.patch changes; rows of 256 and 512 values
    folder = tmp_path_factory.mktemp("relaxed")
    return {q: write_tiny_llama(folder / f"tiny-{q}.gguf", q, n_embd=256, n_ff=512)
            for q in ("Q4_1", "Q5_0", "Q4_K", "Q5_K")}


@pytest.mark.parametrize("plain", ["wasm-st", "wasm-mt"])
@pytest.mark.parametrize("which", ["Q4_1", "Q5_0", "Q4_K", "Q5_K", "smollm2", "gemma3"])
def test_relaxed_build_gives_the_plain_builds_bits(run_wasm, tiny, smollm2, gemma3, tmp_path, plain, which):
    model = {"smollm2": smollm2, "gemma3": gemma3}.get(which) or tiny[which]
    threads = 2 if plain == "wasm-mt" else 1
    logits = {}
    for variant in (plain, plain + "-relaxed"):
        # ids under the tiny vocabulary's 408
        tasks = [{"op": "stepped_logits", "tokens": token_ids(400, n + STEPS, n), "steps": STEPS,
                  "out": str(tmp_path / f"{variant}-{n}.f32")} for n in (7, 40)]
        run_wasm(variant, model, tasks, threads=threads, n_ctx=256)
        logits[variant] = [np.fromfile(task["out"], dtype=np.float32) for task in tasks]
    for plain_rows, relaxed_rows in zip(logits[plain], logits[plain + "-relaxed"]):
        assert plain_rows.size > 0 and np.isfinite(plain_rows).all()
        assert np.array_equal(plain_rows.view(np.uint32), relaxed_rows.view(np.uint32))


def test_only_a_runtime_with_relaxed_simd_accepts_the_relaxed_modules(built):
    # Node 20 without its flag stands for a browser without relaxed SIMD: it must still take the plain modules
    files = {v: built(v) / f"{wasm_build.module_name(v)}.wasm" for v in ("wasm-st", "wasm-mt", *wasm_build.RELAXED)}
    script = ("const fs = require('fs');"
              "for (const f of process.argv.slice(1)) console.log(WebAssembly.validate(fs.readFileSync(f)));")
    for flag, expected in (([], ["true", "true", "false", "false"]),
                           ([wasm_build.NODE_RELAXED_FLAG], ["true"] * 4)):
        out = subprocess.run(["node", *flag, "-e", script, *map(str, files.values())], capture_output=True, text=True,
                             check=True).stdout.split()
        assert out == expected


@pytest.mark.parametrize("flag, expected", [([], "false"), ([wasm_build.NODE_RELAXED_FLAG], "true")])
def test_the_feature_test_tells_relaxed_simd_apart(flag, expected):
    script = (f"{(REPO / 'site' / 'wasm-features.js').read_text()}\n"
              "console.log(relaxedSimd(), unusedEngineFile('wasm/pocketmind-mt.wasm'),"
              " unusedEngineFile('wasm/pocketmind-mt-relaxed.wasm'), unusedEngineFile('wasm/pocketmind_api.js'))")
    out = subprocess.run(["node", *flag, "-e", script], capture_output=True, text=True, check=True).stdout.split()
    # with relaxed SIMD the plain build goes unused, without it the relaxed one; other files are always used
    assert out == [expected, expected, "false" if expected == "true" else "true", "false"]
