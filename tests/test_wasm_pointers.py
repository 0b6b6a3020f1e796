"""wasm32 addresses and sizes: memory grows to 4 GiB, so pointers at or above 2 GiB (negative as JS sees an i32)
must work through the JS API, and sizes near 4 GiB must not wrap when pm_buffer_alloc rounds them up."""
from __future__ import annotations

import numpy as np
import pytest

from pocketmind import Model

WASM = ["wasm-st", "wasm-mt"]
HIGH = 1 << 31
FILLER = int(2.1 * (1 << 30))  # taken before the model loads: what follows lies above 2 GiB
PROMPT = "the word and the other one was not said"


def threads(variant: str) -> int:
    return 2 if variant == "wasm-mt" else 1


@pytest.mark.parametrize("variant", WASM)
def test_model_logits_and_tokens_above_2_gib(native, tiny_models, run_wasm, tmp_path, variant):
    path = tiny_models["Q8_0"]
    with Model.from_file(path, native) as model:
        tokens = model.tokenize(PROMPT).tolist()
        vocab = list(range(model.n_vocab))
        native_bytes = [list(model.token_bytes(t)) for t in vocab]

    def run(name: str, **job) -> tuple[list[dict], np.ndarray]:
        out = tmp_path / f"{name}.bin"
        results = run_wasm(variant, path, [
            {"op": "alloc", "size": 264},  # where a small argument buffer (tokenize, token_bytes) lands
            {"op": "tokenize", "text": PROMPT, "parse_special": False},
            {"op": "logits", "tokens": tokens, "out": str(out)},
            {"op": "token_bytes", "tokens": vocab},
        ], n_ctx=64, threads=threads(variant), **job)
        return results, np.fromfile(out, dtype=np.float32).reshape(len(tokens), -1)

    low, low_logits = run("low")
    high, high_logits = run("high", high_memory=FILLER)
    # the second run really works above 2 GiB: the model's bytes, the logits and the argument buffers
    assert low[0]["model_buffer"] < HIGH <= high[0]["model_buffer"]
    assert high[1]["address"] >= HIGH and high[3]["lowest_address"] >= HIGH
    assert high[2]["tokens"] == low[2]["tokens"] == tokens
    assert np.isfinite(high_logits).all() and high_logits.std() > 0
    assert np.array_equal(high_logits, low_logits)
    assert high[4]["bytes"] == low[4]["bytes"] == native_bytes


@pytest.mark.parametrize("variant", WASM)
def test_sizes_near_4_gib_are_refused(tiny_models, run_wasm, variant):
    """(size + 63) wrapped to a few bytes in 32 bits, and aligned_alloc handed out a tiny block for 4 GiB."""
    sizes = [0xFFFFFFFF, 0xFFFFFFF0, 0xFFFFFFC1, 0xFFFFFFC0, 4096]
    results = run_wasm(variant, tiny_models["F32"], [{"op": "alloc", "size": s} for s in sizes], n_ctx=64,
                       threads=threads(variant))
    addresses = [r["address"] for r in results[1:]]
    assert addresses[:4] == [0, 0, 0, 0]
    assert addresses[4] > 0


def test_native_sizes_near_the_top_are_refused(native):
    for size in [2**64 - 1, 2**64 - 16, 2**64 - 63]:
        assert native.call("pm_buffer_alloc", size) == 0, hex(size)
    ptr = native.call("pm_buffer_alloc", 100)
    assert ptr and ptr % 64 == 0
    native.call("pm_buffer_free", ptr)
