"""How closely the wasm builds match native, per weight type the model families use, and why they differ where they
do (issue 11): wasm is compared with native (x86 SIMD, what the CPython glue runs) and with native-generic (the same
C API over ggml's scalar C kernels, wasm/build.py), KV cache in F32, same threads.

What the tests show:
- the wasm SIMD kernels quantize activations byte for byte like ggml's reference quantizers (q8_0, q8_1, q8_K) and
  compute the dot products of ggml's generic C kernels up to float rounding, for every type (the harness in
  tests/wasm/kernel_harness.c); the upstream wasm source fails this (its q8_0/q8_1 quantizers truncate:
  wasm-q8-round-to-nearest.patch, the one bug found);
- whole models still differ by more than float rounding, against native-generic as against native (x86 SIMD):
  every matmul input is re-quantized to 8 bits, and a last-bit difference of a sum (another order of addition) that
  moves a value across a rounding step changes it by a whole step, which the next layers carry on. Whether such a
  step happens in a given tiny model is chance: of seeds 0-5, wasm equals native-generic within 1.5e-6 for Q4_0
  and Q4_K in 3, Q5_0 and Q8_0 in 2, Q5_1 in 1, Q4_1 in none (its wasm kernel adds the min term apart, so nearly
  every sum differs in its last bit), Q5_K in 4, and Q6_K in all 6: its wasm kernel gives the generic kernel's
  bits (the harness: difference 0), so Q6_K is held to EQUAL_BOUND. Every other type, and every type against
  native (another order again), is held to ORDER_MAX and ORDER_MEAN, about 3x the largest measured
  (benchmarks/quant_parity.py, seed 0: max 0.068, mean 0.0095 on logits spanning ~6; seeds 0-5: max 0.078,
  mean 0.011);
- on the real models the two native builds differ from each other as much as wasm differs from either
  (test_real_models_wasm_is_as_close_to_native_as_native_generic).

Cost: the first run builds native-generic (about 10 minutes on 2 cores, then cached like the other builds); the
tests then take well under a minute, plus about 20 s for the real models.
"""
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
from pocketmind import Model
from pocketmind.native import backend
from tiny_gguf import write_tiny_llama

HERE = Path(__file__).resolve().parent
QUANT_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"]
ORDER_MAX, ORDER_MEAN = 0.2, 0.03
BIT_EXACT_KERNELS = {"Q6_K"}  # the wasm kernel returns the generic one's bits
# the types with 2x2 kernels: wasm-simd-2x2-dot.patch's, and Q6_K's in wasm-simd-q6_K-kernels.patch
TWO_BY_TWO = ["Q4_1", "Q5_0", "Q8_0", "Q4_K", "Q6_K"]
EQUAL_BOUND = 1e-5  # what the other ops (F32 attention matmuls, softmax) leave: 1.2e-6 measured
PROMPT = "the word and the other one was not said and then all of them were what they are"
WASM_QUANTS_C = "ggml/src/ggml-cpu/arch/wasm/quants.c"

emscripten = pytest.mark.skipif(shutil.which("emcc") is None, reason="needs Emscripten (installed by .ci/setup.sh)")


@pytest.fixture(scope="session")
def native_generic(built):
    return backend(str(built("native-generic") / "libpocketmind.so"))


def test_native_generic_has_no_x86_simd(native, native_generic):
    """native-generic really runs ggml's scalar paths: no instruction-set feature is compiled in (ggml reports
    them from its compile-time macros), where native has those of this machine."""
    features = ["sse3", "ssse3", "avx", "avx2", "fma", "f16c", "avx512", "llamafile"]
    generic = {f: getattr(native_generic.lib, f"ggml_cpu_has_{f}")() for f in features}
    assert generic == dict.fromkeys(features, 0)
    assert native.lib.ggml_cpu_has_sse3() == 1  # every x86-64 machine this runs on


# ---- the kernels alone ----

def build_kernel_harness(tree: Path, quants_c: Path, out: Path) -> Path:
    cpu = tree / "ggml" / "src" / "ggml-cpu"
    sources = [quants_c, cpu / "quants.c", tree / "ggml" / "src" / "ggml-quants.c", HERE / "wasm" / "kernel_harness.c"]
    exports = "-sEXPORTED_FUNCTIONS=_harness_dot,_harness_dot_2x2,_malloc,_free"
    return wasm_build.kernel_module(tree, sources, out, ["-O2", "-msimd128"], ["-sMODULARIZE=1", exports])


def run_kernel_job(script: str, module: Path, folder: Path, cases: list[dict]) -> list[dict]:
    """tests/wasm/<script> (kernel_run.cjs, kernel_run_2x2.cjs) on the harness `module`: a result per case."""
    job, out = folder / f"{module.stem}-job.json", folder / f"{module.stem}-out.json"
    job.write_text(json.dumps({"cases": cases}))
    subprocess.run(["node", "--no-experimental-fetch", str(HERE / "wasm" / script), str(module), str(job), str(out)],
                   check=True, timeout=120)
    return json.loads(out.read_text())


def kernel_results(module: Path, folder: Path, rows: int = 8, n: int = 2048) -> dict[str, list[dict]]:
    rng = np.random.default_rng(0)
    cases, norms = [], []
    for quant in QUANT_TYPES:
        for r in range(rows):
            w = rng.standard_normal(n).astype(np.float32)
            a = (rng.standard_normal(n) * rng.uniform(0.1, 10)).astype(np.float32)
            w.tofile(folder / f"w-{quant}-{r}.f32")
            a.tofile(folder / f"a-{quant}-{r}.f32")
            cases.append({"type": int(gguf.GGMLQuantizationType[quant]), "n": n, "quant": quant,
                          "w": str(folder / f"w-{quant}-{r}.f32"), "a": str(folder / f"a-{quant}-{r}.f32")})
            norms.append(float(np.linalg.norm(w) * np.linalg.norm(a)))  # bounds |w . a| (Cauchy-Schwarz)
    results: dict[str, list[dict]] = {q: [] for q in QUANT_TYPES}
    for case, norm, result in zip(cases, norms, run_kernel_job("kernel_run.cjs", module, folder, cases)):
        results[case["quant"]].append({**result, "norm": norm})
    return results


@emscripten
def test_wasm_kernels_match_ggml_generic_kernels(tmp_path):
    tree = wasm_build.source_tree()  # patched
    results = kernel_results(build_kernel_harness(tree, tree / WASM_QUANTS_C, tmp_path / "patched.js"), tmp_path)
    for quant, rows in results.items():
        # activations quantized byte for byte like the reference quantizer (q8_0, q8_1 or q8_K)
        assert all(r["same_activation"] == 1 for r in rows), quant
        for r in rows:
            # the dot product of the same blocks: the generic kernel's up to float rounding (measured <= 1.7e-8 of
            # |w| |a|, 0 for Q6_K)
            assert abs(r["wasm"] - r["generic"]) <= 1e-6 * r["norm"], (quant, r)
            if quant in BIT_EXACT_KERNELS:
                assert r["wasm"] == r["generic"], (quant, r)
            # and the generic kernel's is the dot product of the dequantized values, summed in double (measured
            # <= 1.3e-8 of |w| |a|; Q4_1 and Q5_1 <= 3.3e-5, by design: q8_1 keeps its block sum in fp16)
            assert abs(r["generic"] - r["exact"]) <= (2e-4 if quant in ("Q4_1", "Q5_1") else 1e-6) * r["norm"]

    # the upstream source fails: its q8_0/q8_1 activation quantizers truncate toward zero
    original = tmp_path / "quants-upstream.c"
    with tarfile.open(deps.fetch(deps.LLAMA_CPP_SDIST)) as tar:
        original.write_bytes(tar.extractfile(f"{deps.LLAMA_CPP_SUBDIR}/{WASM_QUANTS_C}").read())
    upstream = kernel_results(build_kernel_harness(tree, original, tmp_path / "upstream.js"), tmp_path)
    for quant, rows in upstream.items():
        if quant.endswith("_K"):  # q8_K rounds to nearest upstream too
            assert all(r["same_activation"] == 1 for r in rows), quant
            # so the same blocks meet our K-quant kernels (wasm-simd-q4_K-q5_K-one-row.patch,
            # wasm-simd-q6_K-kernels.patch: integer sums in other lanes and another order) and upstream's: same bits
            assert [r["wasm"] for r in rows] == [r["wasm"] for r in results[quant]], quant
        else:
            assert not any(r["same_activation"] == 1 for r in rows), quant


@emscripten
def test_wasm_q6_K_kernel_keeps_the_generic_bits_at_the_extremes(tmp_path):
    """wasm-simd-q6_K-kernels.patch sums the products of values l and l + 8 of a group of 16 in a 16-bit lane before
    its scale weighs them: the largest weights times the largest activations, all of one sign (the largest such
    sums) or of opposite signs, and rows of widely mixed magnitudes still give the generic kernel's bits."""
    tree = wasm_build.source_tree()
    module = build_kernel_harness(tree, tree / WASM_QUANTS_C, tmp_path / "harness.js")
    n, rng = 2048, np.random.default_rng(2)
    # magnitudes near each block's largest, not all equal (on ties of |x| the wasm and reference q8_K quantizers may
    # pick a maximum of the other sign: the same values, other bytes)
    signs, near = rng.choice([-1.0, 1.0], n), lambda: rng.uniform(0.9, 1.0, n)
    rows = {"ones": (near(), near()), "same signs": (signs * near(), signs * near()),
            "opposite signs": (signs * near(), -signs * near()),
            "mixed": (rng.standard_normal(n) * np.exp(rng.uniform(-4, 4, n)), rng.standard_normal(n) * 10)}
    cases = []
    for name, (w, a) in rows.items():
        files = {k: tmp_path / f"{k}-{name.replace(' ', '-')}.f32" for k in ("w", "a")}
        w.astype(np.float32).tofile(files["w"])
        a.astype(np.float32).tofile(files["a"])
        cases.append({"type": int(gguf.GGMLQuantizationType.Q6_K), "n": n, "w": str(files["w"]), "a": str(files["a"])})
    results = dict(zip(rows, run_kernel_job("kernel_run.cjs", module, tmp_path, cases)))
    for name, r in results.items():
        assert r["same_activation"] == 1 and r["wasm"] == r["generic"] and r["wasm"] != 0, (name, r)
    # the extremes were reached: every product is near +-32 * 127 steps, of one sign, so the sums fill their lanes
    assert results["same signs"]["wasm"] > 0 > results["opposite signs"]["wasm"]


@emscripten
def test_wasm_2x2_kernels_give_the_one_row_kernels_bits(tmp_path):
    """ggml's matmul asks these types' wasm kernels for two weight rows by two activation columns in one call
    (nrc == 2; wasm-simd-2x2-dot.patch), which unpacks each weight block and widens each activation block once for
    two products (docs/wasm_kernels.md has the speed-ups, benchmarks/wasm_kernels.py); one column (a matrix times
    a vector) goes one row at a time. Every product must keep the one-row kernel's bits, so the patch changes speed
    only and every parity figure here holds as before. (The Q4_1 one-row kernel is itself patched to split its
    nibbles after widening, wasm-simd-q4_1-nibbles.patch: its products still equal the 2x2 kernel's, and ggml's
    generic kernel's in test_wasm_kernels_match_ggml_generic_kernels. The Q4_1, Q5_0 and Q8_0 one-row kernels widen
    their 8-bit operands as they load them, wasm-simd-widen-on-load.patch, where the 2x2 kernels do not: the same
    bits are asked of them here.)"""
    tree = wasm_build.source_tree()
    module = build_kernel_harness(tree, tree / WASM_QUANTS_C, tmp_path / "harness.js")
    rng, cases, n = np.random.default_rng(1), [], 2048
    for quant in TWO_BY_TWO:
        for case in range(4):
            files = {}
            for name in ("w0", "w1", "a0", "a1"):
                scale = rng.uniform(0.1, 10) if name.startswith("a") else 1.0
                files[name] = str(tmp_path / f"{name}-{quant}-{case}.f32")
                (rng.standard_normal(n) * scale).astype(np.float32).tofile(files[name])
            cases.append({"type": int(gguf.GGMLQuantizationType[quant]), "n": n, **files})
    results = run_kernel_job("kernel_run_2x2.cjs", module, tmp_path, cases)
    assert len(results) == len(cases)
    for case, result in zip(cases, results):
        assert result["rc"] == 0
        assert len(set(result["one_row"])) == 4 and all(abs(v) > 0 for v in result["one_row"])  # four real products
        assert result["two_by_two"] == result["one_row"], case


@pytest.mark.parametrize("quant", TWO_BY_TWO)
def test_2x2_kernels_in_odd_and_even_batches(native_generic, run_wasm, tmp_path, quant):
    """A batch of an odd number of tokens pairs every column but the last, which goes one row at a time (the
    patch's change to ggml's matmul loop; upstream fell back to one row for the whole matmul). Both parities agree
    with native-generic as closely as test_tiny_model_logits_per_weight_type asks, and the wasm builds with one
    and two threads give the same bits."""
    path = tiny_model(tmp_path, quant)
    with Model.from_file(path, native_generic) as model:
        tokens = model.tokenize(PROMPT).tolist()
    for batch in (tokens[:17], tokens[:18]):
        st = wasm_logits(run_wasm, "wasm-st", path, batch, tmp_path / "st.bin")
        mt = wasm_logits(run_wasm, "wasm-mt", path, batch, tmp_path / "mt.bin")
        assert np.array_equal(st, mt)
        diff = np.abs(st - native_logits(native_generic, path, batch))
        assert diff.max() < ORDER_MAX and diff.mean() < ORDER_MEAN, (len(batch), diff.max(), diff.mean())


# ---- whole models ----

def tiny_model(folder: Path, quant: str) -> Path:
    """4 layers so that differences have room to grow; K-quants need rows of a multiple of 256 values."""
    return write_tiny_llama(folder / f"tiny4-{quant.lower()}.gguf", quant, n_layer=4, n_embd=256, n_ff=512, n_ctx=512)


def native_logits(lib, path: Path, tokens: list[int], threads: int = 1) -> np.ndarray:
    with Model.from_file(path, lib) as model, model.context(n_ctx=512, n_threads=threads, kv_f32=True) as ctx:
        ctx.decode(tokens, all_logits=True)
        return np.stack([ctx.logits(i).copy() for i in range(len(tokens))])


def wasm_logits(run_wasm, variant: str, path: Path, tokens: list[int], out: Path) -> np.ndarray:
    run_wasm(variant, path, [{"op": "logits", "tokens": tokens, "out": str(out)}], n_ctx=512, kv_f32=True,
             threads=2 if variant == "wasm-mt" else 1)
    return np.fromfile(out, dtype=np.float32).reshape(len(tokens), -1)


@pytest.mark.parametrize("quant", QUANT_TYPES)
def test_tiny_model_logits_per_weight_type(native, native_generic, run_wasm, tmp_path, quant):
    path = tiny_model(tmp_path, quant)
    with Model.from_file(path, native) as model:
        tokens = model.tokenize(PROMPT).tolist()
    st = wasm_logits(run_wasm, "wasm-st", path, tokens, tmp_path / "st.bin")
    mt = wasm_logits(run_wasm, "wasm-mt", path, tokens, tmp_path / "mt.bin")
    generic = native_logits(native_generic, path, tokens)
    simd = native_logits(native, path, tokens)
    assert np.array_equal(st, mt)  # threads split rows, not sums
    assert np.array_equal(simd, native_logits(native, path, tokens, threads=2))
    for reference in (generic, simd):
        diff = np.abs(st - reference)
        assert diff.max() < ORDER_MAX and diff.mean() < ORDER_MEAN
    if quant in BIT_EXACT_KERNELS:
        assert np.abs(st - generic).max() < EQUAL_BOUND


# The real models, KV cache in F32 as in the issue. Measured (benchmarks/quant_parity.py --real), mean / max |diff|:
# SmolLM2: wasm vs native 0.138 / 0.87, wasm vs native-generic 0.166 / 1.10, native-generic vs native 0.161 / 1.06;
# Gemma: 0.179 / 1.31, 0.204 / 1.26, 0.205 / 1.31. Logits span ~36-40.
REAL = {"smollm2": "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
        "gemma3": "The capital of France is Paris. The capital of Germany is"}


@pytest.mark.parametrize("name", list(REAL))
def test_real_models_wasm_is_as_close_to_native_as_native_generic(request, native, native_generic, run_wasm,
                                                                  tmp_path, name):
    path = request.getfixturevalue(name)
    with Model.from_file(path, native) as model:
        chat = name == "smollm2"
        tokens = model.tokenize(REAL[name], add_special=not chat, parse_special=chat).tolist()
    wasm = wasm_logits(run_wasm, "wasm-st", path, tokens, tmp_path / "st.bin")
    simd, generic = native_logits(native, path, tokens), native_logits(native_generic, path, tokens)
    to_simd, to_generic, natives = np.abs(wasm - simd), np.abs(wasm - generic), np.abs(generic - simd)
    # the two native builds of the same source differ by as much as wasm differs from either
    assert natives.mean() > 0.05
    assert to_simd.mean() < 1.5 * natives.mean() and to_generic.mean() < 1.5 * natives.mean()
    # the tolerance the README states for wasm against the CPython glue's native library
    assert to_simd.mean() < 0.3 and to_simd.max() < 2.0


def test_smollm2_with_f32_weights_matches_to_float_rounding(native, native_generic, smollm2, run_wasm, tmp_path):
    """The same 30-layer network with its weights dequantized to F32: no 8-bit rounding of matmul inputs, and wasm
    agrees with both native builds to float rounding (measured mean 4.0e-6, max 2.7e-5, against 0.14 / 0.87 with
    the Q4_1 weights: benchmarks/quant_parity.py --f32). So the Q4_1 figures are the rounding steps' doing, not a
    difference in what the builds compute. Costs about a minute (a 540 MB F32 file, loaded three times)."""
    from pocketmind.engine import convert_model

    f32 = tmp_path / "smollm2-f32.gguf"
    convert_model(smollm2, f32, "F32", n_threads=2, backend=native)
    with Model.from_file(f32, native) as model:
        tokens = model.tokenize(REAL["smollm2"], add_special=False, parse_special=True).tolist()
    wasm = wasm_logits(run_wasm, "wasm-st", f32, tokens, tmp_path / "st.bin")
    for reference in (native_logits(native, f32, tokens), native_logits(native_generic, f32, tokens)):
        diff = np.abs(wasm - reference)
        assert diff.mean() < 1e-4 and diff.max() < 1e-3
