"""Bad input gets an error code and a readable message, never a crash; the library stays usable."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gguf_mutations import tensor_past_end, write_corpus
from pocketmind import Model, PocketmindError

HERE = Path(__file__).resolve().parent


def broken_files(good: Path) -> dict[str, bytes]:
    data = good.read_bytes()
    return {
        "truncated": data[: len(data) // 2],
        "header-only": data[:24],
        "not-gguf": b"<html>this is not a model</html>" * 100,
        "tensor-past-end": tensor_past_end(good),
    }


@pytest.mark.parametrize("kind", ["truncated", "header-only", "not-gguf", "tensor-past-end"])
def test_broken_model_is_an_error_then_a_good_model_loads(native, tiny_models, kind, tmp_path):
    good = tiny_models["Q8_0"]
    bad = broken_files(good)[kind]
    with pytest.raises(PocketmindError) as err:
        Model.from_bytes(bad, native)
    assert err.value.status_name == "LOAD"
    assert "cannot load model" in str(err.value) and len(str(err.value)) > 25
    (tmp_path / "bad.gguf").write_bytes(bad)
    with pytest.raises(PocketmindError, match="cannot load model"):
        Model.from_file(tmp_path / "bad.gguf", native)
    with Model.from_file(good, native) as model, model.context(n_ctx=32) as ctx:
        ctx.decode([1, 270])
        assert np.isfinite(ctx.logits()).all()


def test_tensor_past_end_names_the_problem(native, tiny_models):
    with pytest.raises(PocketmindError, match="(?i)bounds|end of|offset|size"):
        Model.from_bytes(tensor_past_end(tiny_models["F16"]), native)


def test_missing_file_and_empty_bytes(native, tmp_path):
    with pytest.raises(PocketmindError, match="cannot load model"):
        Model.from_file(tmp_path / "nope.gguf", native)
    with pytest.raises(PocketmindError, match="empty"):
        Model.from_bytes(b"", native)


@pytest.mark.parametrize("n_ctx", [-1, 1 << 30, 257])
def test_absurd_context_sizes(native, tiny_models, n_ctx):
    with Model.from_file(tiny_models["F16"], native) as model:
        with pytest.raises(PocketmindError, match="n_ctx") as err:
            model.context(n_ctx=n_ctx)
        assert err.value.status_name == "INVALID_ARGUMENT"
        with model.context(n_ctx=256) as ctx:  # the model's own limit is fine
            assert ctx.n_ctx == 256


def test_bad_threads_and_batch(native, tiny_models):
    with Model.from_file(tiny_models["F16"], native) as model:
        with pytest.raises(PocketmindError, match="n_threads"):
            model.context(n_threads=0)
        with pytest.raises(PocketmindError, match="n_batch"):
            model.context(n_batch=-5)


def test_bad_tokens(native, tiny_models):
    with Model.from_file(tiny_models["F16"], native) as model, model.context(n_ctx=32) as ctx:
        with pytest.raises(PocketmindError, match="at least one token"):
            ctx.decode([])
        with pytest.raises(PocketmindError, match="outside the vocabulary") as err:
            ctx.decode([1, model.n_vocab + 5])
        assert err.value.status_name == "TOKEN"
        with pytest.raises(PocketmindError, match="outside the vocabulary"):
            ctx.decode([-3])
        with pytest.raises(PocketmindError, match="32 bits"):
            ctx.decode([1 << 40])
        with pytest.raises(PocketmindError, match="do not fit"):
            ctx.decode([1] * (ctx.n_ctx + 1))
        with pytest.raises(PocketmindError, match="no decoded tokens"):
            ctx.logits()
        ctx.decode([1, 270])  # still usable
        assert ctx.n_past == 2
        with pytest.raises(PocketmindError, match="(?i)position|sequence|inconsistent|llama_decode"):
            ctx.decode([270], pos=10)  # a gap in the positions
        ctx.decode([271])
        assert ctx.n_past == 3


def test_fuzzed_models_never_crash_or_hang(native, built, tiny_models, tmp_path):
    """200+ mutated copies of a tiny GGUF: each either loads (and runs) or errors, in a child process."""
    folder = tmp_path / "mutants"
    cases = write_corpus(folder, tiny_models["Q8_0"], tiny_models["F16"])
    lib = built("native") / "libpocketmind.so"
    try:
        proc = subprocess.run([sys.executable, str(HERE / "fuzz_load.py"), str(lib), str(folder)],
                              capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as e:
        last = (e.stdout or b"").decode(errors="replace").strip().splitlines()[-1:]
        pytest.fail(f"fuzzing hung; last line: {last}")
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    started = [x for x in lines if x.get("started")]
    assert proc.returncode == 0 and lines and lines[-1].get("done"), (
        f"crash (exit {proc.returncode}) while loading {started[-1]['file'] if started else '?'}\n{proc.stderr[-3000:]}")
    results = [x["result"] for x in lines if "result" in x]
    assert len(results) == len(cases) >= 200
    errors = [r for r in results if r.startswith(("load-error", "run-error"))]
    assert all(len(r) > 30 for r in errors), [r for r in errors if len(r) <= 30]
    # the mutations must really exercise the error paths, and some still load
    assert len(errors) > len(cases) // 2
    assert any(r == "ran" for r in results)
