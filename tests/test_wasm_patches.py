"""Each patch of ours to llama.cpp, shown to matter (the mmap patch's test is in test_wasm_parity.py, the 2x2
kernels' in test_quant_parity.py: they change speed only, which benchmarks/wasm_kernels.py measures; so do the
fp16 conversions and fp16 row patches, tested here to keep ggml's bits, measured by benchmarks/wasm_ab.py)."""
from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import gguf
import numpy as np
import pytest

import build as wasm_build
import deps

HERE = Path(__file__).resolve().parent
QUANTS_C = "ggml/src/ggml-cpu/arch/wasm/quants.c"
SIMD_MAPPINGS_H = "ggml/src/ggml-cpu/simd-mappings.h"


def build_harness(tree: Path, quants_c: Path, out: Path) -> Path:
    return wasm_build.kernel_module(tree, [quants_c, HERE / "wasm" / "q8_harness.c"], out, ["-O2", "-msimd128"],
                                    ["-sMODULARIZE=1", "-sEXPORTED_FUNCTIONS=_harness_q8_0,_malloc"])


emscripten = pytest.mark.skipif(shutil.which("emcc") is None, reason="needs Emscripten (installed by .ci/setup.sh)")


@emscripten
def test_q8_rounding_patch_makes_wasm_quantize_like_the_reference(tmp_path):
    tree = wasm_build.source_tree()  # patched
    original = tmp_path / "quants-upstream.c"
    with tarfile.open(deps.fetch(deps.LLAMA_CPP_SDIST)) as tar:
        original.write_bytes(tar.extractfile(f"{deps.LLAMA_CPP_SUBDIR}/{QUANTS_C}").read())
    assert original.read_bytes() != (tree / QUANTS_C).read_bytes()

    x = np.random.default_rng(0).standard_normal(32 * 256).astype(np.float32)
    x.tofile(tmp_path / "x.f32")
    reference = gguf.quants.quantize(x.reshape(1, -1), gguf.GGMLQuantizationType.Q8_0).tobytes()

    def wasm_quantize(source: Path, name: str) -> bytes:
        module = build_harness(tree, source, tmp_path / f"{name}.js")
        subprocess.run(["node", "--no-experimental-fetch", str(HERE / "wasm" / "q8_run.cjs"), str(module),
                        str(tmp_path / "x.f32"), str(tmp_path / f"{name}.bin")], check=True, timeout=60)
        return (tmp_path / f"{name}.bin").read_bytes()

    patched = wasm_quantize(tree / QUANTS_C, "patched")
    upstream = wasm_quantize(original, "upstream")
    qs = lambda blob: np.frombuffer(blob, dtype=np.uint8).reshape(-1, 34)[:, 2:].view(np.int8)  # noqa: E731
    assert patched == reference  # bit-exact with llama.cpp's reference quantizer
    # upstream truncates toward zero: about half the values land one step off
    mismatched = np.mean(qs(upstream) != qs(reference))
    assert mismatched > 0.3
    assert np.abs(qs(upstream).astype(int) - qs(reference)).max() == 1


def test_a_changed_patch_rebuilds_the_libraries(monkeypatch, tmp_path):
    before = wasm_build.libs_dir("native")
    changed = tmp_path / wasm_build.PATCHES[0].name
    changed.write_bytes(wasm_build.PATCHES[0].read_bytes() + b"\n")
    monkeypatch.setattr(wasm_build, "PATCHES", [changed, *wasm_build.PATCHES[1:]])
    assert wasm_build.libs_dir("native") != before


@emscripten
def test_fp16_conversions_patch_keeps_ggml_s_bits(tmp_path):
    """wasm-simd-fp16-conversions.patch rounds four floats to halves at a time in SIMD lanes (ggml's F16 vector
    stores: flash attention's F16 accumulator, stored for every cached position) where upstream rounded one value
    at a time through memory: floats at, between and around the halves (ties to even included) and random bit
    patterns store as ggml's scalar rounding does. The harness checks the (unchanged) vector loads as well, and
    gqa-decode-reads-each-kv-row-once.patch's pm_round_to_f16 (a generated token's F16 accumulator, kept in F32)
    and its quick form, where trusted, against storing to F16 and loading back, on the same floats (and once by
    hand on all 2^32 floats: no mismatch); and wasm-simd-fp16-row-to-f32.patch's eight-halves conversion (a
    generated token's K and V rows) on every half, bit for bit."""
    tree = wasm_build.source_tree()  # patched
    with tarfile.open(deps.fetch(deps.LLAMA_CPP_SDIST)) as tar:
        upstream = tar.extractfile(f"{deps.LLAMA_CPP_SUBDIR}/{SIMD_MAPPINGS_H}").read()
    assert b"wasm_v128_store64_lane" in (tree / SIMD_MAPPINGS_H).read_bytes()
    assert b"wasm_v128_store64_lane" not in upstream
    module = wasm_build.kernel_module(tree, [HERE / "wasm" / "fp16_harness.c"], tmp_path / "fp16.js",
                                      ["-O2", "-msimd128"],
                                      ["-sMODULARIZE=1", "-sEXPORTED_FUNCTIONS=_harness_fp16,_malloc"])
    out = subprocess.run(["node", "--no-experimental-fetch", str(HERE / "wasm" / "fp16_run.cjs"), str(module),
                          "4000000"], check=True, capture_output=True, text=True, timeout=120).stdout
    load_mismatches, store_mismatches, stored, round_mismatches, quick_mismatches, quick_trusted, row_mismatches = \
        json.loads(out)
    assert stored == 65536 * 8 + 8 + 4000000
    assert (load_mismatches, store_mismatches, round_mismatches, quick_mismatches) == (0, 0, 0, 0)
    assert row_mismatches == 0  # wasm-simd-fp16-row-to-f32.patch: every half, bit for bit
    # the quick form trusted for the floats in F16's normal range: 8 around each of its 2 x 30 x 1024 values, and
    # about 12 % of random bit patterns (30 of 256 exponents)
    assert quick_trusted > 400000
