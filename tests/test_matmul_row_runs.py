"""one-column-matmul-reads-long-row-runs.patch: a generated token's matrix products hand the threads chunks of at
least 256 KiB of weight rows, where upstream handed out 64 rows at a time (its speed: benchmarks/native_ab.py,
benchmarks/wasm_ab.py --threads 2). Every row must still be computed once, by the same dot-product call, whatever
the thread count: a generated token's logits at 2 and 3 threads equal one thread's bit for bit, natively and in the
multi-thread wasm build. The model's products take both of the patch's paths: its 4096-row F32 matrices (1 KiB a
row, 4 MiB) go in 16 dynamic chunks of 256 rows, its 256-row ones in one contiguous range per thread."""
from __future__ import annotations

import numpy as np
import pytest

from pocketmind import Model
from stepped_decode import stepped_logits, token_ids
from tiny_gguf import write_tiny_llama

PROMPT = 40  # tokens in one batch, then STEPS generated ones; the KV view stays under the split path's 512 cells
STEPS = 4
N_EMBD, N_FF = 256, 4096
ROW_BYTES = N_EMBD * 4  # an F32 row of the n_embd-wide matrices


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("row-runs") / "wide.gguf", "F32", n_embd=N_EMBD, n_ff=N_FF,
                            n_head=4, n_head_kv=2, n_ctx=512)


def test_the_model_takes_both_paths():
    chunk_rows = 256 * 1024 // ROW_BYTES  # the patch's chunk for these rows
    assert N_FF // chunk_rows >= 3 * 4  # up and gate: enough chunks for dynamic handing out at 2 and 3 threads
    assert N_EMBD // chunk_rows < 2 * 4  # q, k, v, o: too few, so one range per thread


def native_steps(native, path, n_threads: int) -> tuple[np.ndarray, list[int]]:
    """The STEPS generated tokens' logits, and the tokens decoded (the prompt's, then theirs)."""
    with Model.from_file(path, native) as model, model.context(n_ctx=512, n_threads=n_threads) as ctx:
        tokens = token_ids(model.n_vocab, PROMPT + STEPS, 7)
        return stepped_logits(ctx, tokens, STEPS), tokens


def test_native_threads_give_one_thread_s_bits(native, model_path):
    one, _ = native_steps(native, model_path, 1)
    for n_threads in (2, 3):
        many, _ = native_steps(native, model_path, n_threads)
        assert np.array_equal(many, one), f"{n_threads} threads: max difference {np.abs(many - one).max()}"


def test_wasm_threads_give_one_thread_s_bits(native, run_wasm, model_path, tmp_path):
    reference, tokens = native_steps(native, model_path, 1)
    n_vocab = reference.shape[1]
    got = {}
    for n_threads in (1, 2, 3):
        out = tmp_path / f"{n_threads}.f32"
        run_wasm("wasm-mt", model_path, [{"op": "stepped_logits", "tokens": tokens, "steps": STEPS, "out": str(out)}],
                 threads=n_threads, n_ctx=512)
        got[n_threads] = np.fromfile(out, dtype=np.float32).reshape(STEPS, n_vocab)
    for n_threads in (2, 3):
        assert np.array_equal(got[n_threads], got[1]), n_threads
    # and still native's token: F32 weights summed in other orders, logits of about 2; measured 1.8e-3 apart
    assert np.abs(got[1] - reference).max() < 5e-3
