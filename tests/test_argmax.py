"""pm_argmax, the library's argmax that greedy decoding reads its token with where copying the logits out costs more
(the browser: the glue's Context.argmax and the JS engine's greedy loop): numpy's argmax on every kind of input, in
the native build (scalar C) and in both wasm builds (four lanes at a time), and the greedy token it gives."""
from __future__ import annotations

import numpy as np
import pytest

from pocketmind import Model
from pocketmind.generate import Generator
from pocketmind.sampling import GREEDY, Sampler, SamplingParams


def cases() -> dict[str, np.ndarray]:
    """Arrays whose argmax numpy defines by a rule: ties (the first), NaN (the first NaN), infinities, signed zeros;
    lengths around the SIMD width and a vocabulary's."""
    rng = np.random.default_rng(7)
    out = {f"random-{n}": rng.standard_normal(n).astype(np.float32) for n in (1, 3, 4, 5, 7, 8, 9, 31, 49152)}
    tie = rng.standard_normal(4099).astype(np.float32)
    tie[[17, 1000, 4098]] = 9.0
    out["tie"] = tie
    nan = rng.standard_normal(1031).astype(np.float32)
    nan[[500, 900]] = np.nan
    out["nan-after-max"] = nan
    late_nan = np.full(13, -1.0, dtype=np.float32)
    late_nan[12] = np.nan
    out["nan-in-tail"] = late_nan
    out["all-minus-inf"] = np.full(37, -np.inf, dtype=np.float32)
    inf = rng.standard_normal(64).astype(np.float32)
    inf[[3, 40]] = np.inf
    out["plus-inf"] = inf
    out["signed-zeros"] = np.array([-1.0, -0.0, 0.0, -0.0, 0.0, -2.0, -3.0, -4.0, -5.0], dtype=np.float32)
    out["max-in-tail"] = np.concatenate([np.zeros(48, np.float32), np.array([1.0, 2.0, 3.0], np.float32)])
    return out


def native_argmax(native, x: np.ndarray) -> int:
    buf = native.call("pm_buffer_alloc", max(x.nbytes, 4))
    try:
        native.write(buf, x)
        return int(native.call("pm_argmax", buf, x.size))
    finally:
        native.call("pm_buffer_free", buf)


def test_native_argmax_is_numpys(native):
    for name, x in cases().items():
        assert native_argmax(native, x) == int(np.argmax(x)), name
    assert native_argmax(native, np.zeros(0, np.float32)) == -1


@pytest.mark.parametrize("variant", ["wasm-st", "wasm-mt"])
def test_wasm_argmax_is_numpys(run_wasm, tiny_models, tmp_path, variant):
    tasks, expected = [], []
    for name, x in cases().items():
        path = tmp_path / f"{name}.f32"
        x.tofile(path)
        lengths = sorted({x.size, max(1, x.size - 1), max(1, x.size - 5)})
        tasks.append({"op": "argmax", "values": str(path), "lengths": lengths})
        expected.append([int(np.argmax(x[:n])) for n in lengths])
    tasks.append({"op": "argmax", "values": str(tmp_path / "random-8.f32"), "lengths": [0]})
    expected.append([-1])
    got = [r["indices"] for r in run_wasm(variant, tiny_models["Q8_0"], tasks)[1:]]
    assert got == expected


class CopyingBackend:
    """The native library, as if its arrays were copies (the browser's case): Context.argmax then asks pm_argmax."""

    arrays_are_views = False

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("copies", [False, True])
def test_greedy_generation_reads_the_argmax(native, tiny_models, copies):
    backend = CopyingBackend(native) if copies else native
    with Model.from_file(tiny_models["Q8_0"], backend) as model, model.context(n_ctx=64) as ctx:
        ctx.decode(model.tokenize("hello there").tolist(), pos=0)
        assert ctx.argmax() == int(np.argmax(ctx.logits()))
        generator = Generator(ctx)
        prompt = model.tokenize("once upon a time").tolist()
        done = generator.complete(prompt, params=GREEDY, max_tokens=12)
        # the same tokens by sampling each step's copied logits (the path every non-greedy sampler takes)
        ctx.kv_clear()
        ctx.decode(prompt, pos=0)
        expected = []
        for _ in range(len(done.tokens)):
            expected.append(Sampler(GREEDY).sample(ctx.logits().copy()))
            ctx.decode([expected[-1]], pos=len(prompt) + len(expected) - 1)
        assert list(done.tokens) == expected and len(expected) > 0


def test_only_a_plain_greedy_sampler_is_an_argmax():
    assert Sampler(GREEDY).is_argmax
    assert not Sampler(SamplingParams(temperature=0.0, repeat_penalty=1.3)).is_argmax
    assert not Sampler(SamplingParams(temperature=0.8)).is_argmax
