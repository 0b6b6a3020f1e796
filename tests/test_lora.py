"""LoRA adapters (pm_adapter_* and engine.Adapter) on the native build: an adapter applied at a scale gives the
logits of a model whose weights had it merged in numpy; removing it gives the base logits back bit for bit;
mismatched or damaged adapters are refused with a message that says why."""
from __future__ import annotations

import json

import numpy as np
import pytest

from counting_backend import CountingBackend, load_like_the_worker
from pocketmind import Adapter, Model, PocketmindError
from pocketmind.chat_service import ChatService
from tiny_gguf import TINY_SHAPES, merged, random_lora, write_tiny_llama, write_tiny_lora

ALPHA = 8.0
RANK = 4
# What each adapter changes: attention and feed-forward matrices of both layers (not every one of them).
TARGETS_1 = {"blk.0.attn_q.weight": TINY_SHAPES["attn_q"], "blk.0.ffn_up.weight": TINY_SHAPES["ffn_up"],
             "blk.1.attn_v.weight": TINY_SHAPES["attn_v"], "blk.1.ffn_down.weight": TINY_SHAPES["ffn_down"]}
TARGETS_2 = {"blk.0.attn_q.weight": TINY_SHAPES["attn_q"], "blk.1.attn_output.weight": TINY_SHAPES["attn_output"],
             "blk.1.ffn_gate.weight": TINY_SHAPES["ffn_gate"]}
PROMPT = "the word and the other one was in a house"

# Adapter logits vs the merged model's, F32 weights and KV cache: the two compute the same sums in another order
# (W x + s (B (A x)) against (W + s B A) x), so they differ by float32 rounding only. Measured on this tiny model:
# at most 1.9e-6 (test_adapter_equals_merged_weights, logits of size ~1-4), against differences of 0.5 and more
# that the adapter makes to the base logits. The bound leaves room for other CPUs' summation orders.
TOLERANCE = 2e-5


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("lora")


@pytest.fixture(scope="module")
def pairs():
    return random_lora(TARGETS_1, rank=RANK, seed=11), random_lora(TARGETS_2, rank=2, seed=12)


@pytest.fixture(scope="module")
def files(lora_dir, pairs):
    one, two = pairs
    return {
        "base": write_tiny_llama(lora_dir / "base.gguf", "F32"),
        "one": write_tiny_lora(lora_dir / "one.gguf", one, alpha=ALPHA),
        "two": write_tiny_lora(lora_dir / "two.gguf", two, alpha=4.0),
    }


@pytest.fixture
def base(native, files):
    with Model.from_file(files["base"], native) as model:
        yield model


def logits(model_or_ctx, tokens) -> np.ndarray:
    """Logits of every position of tokens, decoded from an empty cache."""
    ctx = model_or_ctx
    ctx.kv_clear()
    ctx.decode(tokens, all_logits=True)
    return np.stack([ctx.logits(i).copy() for i in range(len(tokens))])


def merged_logits(native, path, adapters, tokens) -> np.ndarray:
    write_tiny_llama(path, "F32", transform=merged(adapters))
    with Model.from_file(path, native) as model, model.context(n_ctx=64, kv_f32=True) as ctx:
        return logits(ctx, tokens)


def test_adapter_equals_merged_weights(native, base, files, pairs, lora_dir):
    one, _ = pairs
    tokens = base.tokenize(PROMPT)
    with base.context(n_ctx=64, kv_f32=True) as ctx:
        plain = logits(ctx, tokens)
        adapter = Adapter.from_bytes(base, files["one"].read_bytes())
        assert adapter.alpha == ALPHA and adapter.name == "one"
        for scale in (1.0, 0.5, -2.0):
            ctx.set_adapters([(adapter, scale)])
            assert ctx.adapters == [(adapter, scale)]
            with_adapter = logits(ctx, tokens)
            expected = merged_logits(native, lora_dir / f"merged-{scale}.gguf", [(one, ALPHA, scale)], tokens)
            error = float(np.abs(with_adapter - expected).max())
            change = float(np.abs(with_adapter - plain).max())
            print(f"scale {scale}: adapter vs merged {error:.2e}, adapter vs base {change:.2f}")
            assert change > 0.1  # the adapter matters, so the comparison means something
            assert error <= TOLERANCE
        ctx.clear_adapters()
        assert ctx.adapters == []
        assert np.array_equal(logits(ctx, tokens), plain)  # removed: the base model again, bit for bit


def test_scale_zero_is_the_base_model(base, files):
    tokens = base.tokenize(PROMPT)
    with base.context(n_ctx=64, kv_f32=True) as ctx, Adapter.from_file(base, files["one"]) as adapter:
        plain = logits(ctx, tokens)
        ctx.set_adapters({adapter: 0.0})
        assert np.array_equal(logits(ctx, tokens), plain)


def test_two_adapters_stack(native, base, files, pairs, lora_dir):
    one, two = pairs
    tokens = base.tokenize(PROMPT)
    expected = merged_logits(native, lora_dir / "merged-both.gguf", [(one, ALPHA, 0.7), (two, 4.0, 1.5)], tokens)
    with base.context(n_ctx=64, kv_f32=True) as ctx:
        plain = logits(ctx, tokens)
        first = Adapter.from_file(base, files["one"])
        second = Adapter.from_file(base, files["two"])
        ctx.set_adapters([(first, 0.7), (second, 1.5)])
        both = logits(ctx, tokens)
        assert float(np.abs(both - expected).max()) <= TOLERANCE
        ctx.set_adapters([(first, 0.7)])  # one taken off: no longer the merge of both
        assert float(np.abs(logits(ctx, tokens) - expected).max()) > 0.1
        second.close()
        first.close()  # closing an applied adapter takes it off the context
        assert ctx.adapters == []
        assert np.array_equal(logits(ctx, tokens), plain)


def test_changing_adapters_clears_the_cache(base, files):
    tokens = base.tokenize(PROMPT)
    with base.context(n_ctx=64) as ctx, Adapter.from_file(base, files["one"]) as adapter:
        ctx.decode(tokens)
        ctx.set_adapters([(adapter, 1.0)])
        assert ctx.n_past == 0  # what the cache held was computed with other weights
        ctx.decode(tokens)
        ctx.set_adapters([(adapter, 1.0)])  # the same set: the cache stays
        assert ctx.n_past == len(tokens)


def test_adapters_of_a_closed_model(native, files):
    model = Model.from_file(files["base"], native)
    ctx = model.context(n_ctx=32)
    adapter = Adapter.from_file(model, files["one"])
    ctx.set_adapters([(adapter, 1.0)])
    model.close()  # closes the context and the adapter too
    with pytest.raises(ValueError, match="closed"):
        adapter.meta("general.name")
    adapter.close()  # twice is fine


def test_misuse_is_refused(native, base, files):
    with base.context(n_ctx=32) as ctx, Adapter.from_file(base, files["one"]) as adapter, \
            Model.from_file(files["base"], native) as other:
        with Adapter.from_file(other, files["one"]) as foreign:
            with pytest.raises(PocketmindError, match="loaded for another model"):
                ctx.set_adapters([(foreign, 1.0)])
        with pytest.raises(PocketmindError, match="given twice"):
            ctx.set_adapters([(adapter, 1.0), (adapter, 0.5)])
        with pytest.raises(PocketmindError, match="not a finite number"):
            ctx.set_adapters([(adapter, float("nan"))])
        with pytest.raises(TypeError):
            ctx.set_adapters([(adapter, "1")])
        assert ctx.adapters == []
        with pytest.raises(PocketmindError, match="empty"):
            Adapter.from_bytes(base, b"")


def refusal(base, data: bytes) -> str:
    """Load data as an adapter for base: it must be refused; the model then still runs. Returns the message."""
    with pytest.raises(PocketmindError) as caught:
        Adapter.from_bytes(base, data)
    assert caught.value.status_name == "LOAD"
    with base.context(n_ctx=32) as ctx:
        ctx.decode(base.tokenize("the word"))
        assert np.isfinite(ctx.logits()).all()
    return str(caught.value)


def test_another_architecture_is_refused(base, lora_dir, pairs):
    path = write_tiny_lora(lora_dir / "gpt2.gguf", pairs[0], architecture="gpt2")
    assert "for architecture 'gpt2', the model is 'llama'" in refusal(base, path.read_bytes())


def test_wrong_shapes_are_refused(base, lora_dir):
    # the right names, but lora_a reads 32 inputs where attn_q has 64
    bad = random_lora({"blk.0.attn_q.weight": (64, 32)}, rank=RANK)
    message = refusal(base, write_tiny_lora(lora_dir / "shape.gguf", bad).read_bytes())
    assert "tensor 'blk.0.attn_q.weight' has incorrect shape" in message
    # lora_a and lora_b disagree on the rank
    a, b = random_lora({"blk.0.attn_q.weight": (64, 64)}, rank=RANK)["blk.0.attn_q.weight"]
    message = refusal(base, write_tiny_lora(lora_dir / "rank.gguf", {"blk.0.attn_q.weight": (a, b[:, :2])}).read_bytes())
    assert "lora_a tensor is not transposed" in message
    # a tensor the model does not have
    extra = random_lora({"blk.7.attn_q.weight": (64, 64)}, rank=RANK)
    assert "does not exist in base model" in refusal(base, write_tiny_lora(lora_dir / "extra.gguf", extra).read_bytes())


def test_token_embedding_adapters_need_one_rank(base, lora_dir):
    # llama.cpp stores the token embeddings' pair the other way round (A: rank x n_vocab) and checks no rank there
    rng = np.random.default_rng(5)
    a = rng.standard_normal((base.n_vocab, 4)).astype(np.float32)
    b = rng.standard_normal((64, 4)).astype(np.float32)
    good = write_tiny_lora(lora_dir / "embd.gguf", {"token_embd.weight": (a, b)})
    with base.context(n_ctx=32) as ctx, Adapter.from_file(base, good) as adapter:
        ctx.set_adapters([(adapter, 1.0)])
        ctx.decode(base.tokenize("the word"))
        assert np.isfinite(ctx.logits()).all()
    bad = write_tiny_lora(lora_dir / "embd-rank.gguf", {"token_embd.weight": (a, b[:, :2])})
    assert "the rank of 'token_embd.weight.lora_a' (4) differs from its lora_b's (2)" in refusal(base, bad.read_bytes())


def test_integer_tensors_are_refused(base, lora_dir, pairs):
    path = write_tiny_lora(lora_dir / "int.gguf", pairs[0], dtype=np.int32)
    assert "is of type i32, not a floating-point or quantized one" in refusal(base, path.read_bytes())


def test_another_base_model_is_refused(base, lora_dir):
    # made for a llama twice as wide: every shape is off
    wide = {"blk.0.attn_q.weight": (128, 128), "blk.0.ffn_up.weight": (256, 128)}
    path = write_tiny_lora(lora_dir / "wide.gguf", random_lora(wide, rank=RANK))
    assert "has incorrect shape (hint: maybe wrong base model?)" in refusal(base, path.read_bytes())
    # one that records its base model's width is refused for that, before any tensor is looked at
    path = write_tiny_lora(lora_dir / "wide-kv.gguf", random_lora(wide, rank=RANK), kv={"llama.embedding_length": 128})
    assert "made for a base model with n_embd 128, this model has 64" in refusal(base, path.read_bytes())


def test_not_an_adapter_is_refused(base, files, lora_dir, pairs):
    assert "not a GGUF file" in refusal(base, b"definitely not a GGUF file, just some text" * 10)
    assert "not a GGUF file" in refusal(base, bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8)))
    # a model is not an adapter (gguf's writer leaves general.type out of a model)
    assert "not an adapter (general.type is missing, not 'adapter')" in refusal(base, files["base"].read_bytes())
    no_type = write_tiny_lora(lora_dir / "no-type.gguf", pairs[0], kv={"general.type": None})
    assert "not an adapter (general.type is missing, not 'adapter')" in refusal(base, no_type.read_bytes())
    cvec = write_tiny_lora(lora_dir / "cvec.gguf", pairs[0], kv={"adapter.type": "control_vector"})
    assert "not a LoRA adapter (adapter.type is 'control_vector'" in refusal(base, cvec.read_bytes())
    numbered = write_tiny_lora(lora_dir / "type-number.gguf", pairs[0], kv={"general.type": 7})
    assert "not an adapter (general.type is not a string, not 'adapter')" in refusal(base, numbered.read_bytes())
    no_arch = write_tiny_lora(lora_dir / "no-arch.gguf", pairs[0], architecture="")
    assert "it names no architecture (general.architecture is missing)" in refusal(base, no_arch.read_bytes())
    bad_alpha = write_tiny_lora(lora_dir / "alpha.gguf", pairs[0], kv={"adapter.lora.alpha": "eight"})
    assert "adapter.lora.alpha is a str, not a float32" in refusal(base, bad_alpha.read_bytes())
    empty = write_tiny_lora(lora_dir / "empty.gguf", {})
    assert "holds no tensors" in refusal(base, empty.read_bytes())


def test_truncated_adapters_are_refused(base, files):
    data = files["one"].read_bytes()
    # cut in the header, in the metadata, in the tensor table, in the tensor data, one byte short
    for cut in (10, 100, 300, len(data) // 2, len(data) - 1):
        message = refusal(base, data[:cut])
        assert "not a GGUF file, or a damaged or truncated one" in message or \
            "not within the file bounds, file is corrupted or incomplete" in message, (cut, message)


@pytest.mark.parametrize("variant", ["wasm-st", "wasm-mt"])
def test_wasm_gives_the_native_logits(native, base, files, run_wasm, tmp_path, variant):
    """The same adapters in the WebAssembly modules (loaded from wasm memory, under Node) give the native logits
    within test_wasm_parity's bound for F32 models; a refused adapter is an error and leaves the module usable."""
    tokens = base.tokenize(PROMPT).tolist()
    stacked = [{"file": str(files["one"]), "scale": 0.7}, {"file": str(files["two"]), "scale": 1.5}]
    outs = [tmp_path / f"{name}.bin" for name in ("plain", "stacked", "one", "after")]
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not an adapter" * 50)
    results = run_wasm(variant, files["base"], [
        {"op": "logits", "tokens": tokens, "out": str(outs[0])},
        {"op": "adapters", "adapters": stacked},
        {"op": "logits", "tokens": tokens, "out": str(outs[1])},
        {"op": "adapters", "adapters": stacked[:1]},
        {"op": "logits", "tokens": tokens, "out": str(outs[2])},
        {"op": "adapters", "adapters": [{"file": str(garbage), "scale": 1.0}]},
        {"op": "logits", "tokens": tokens, "out": str(outs[3])},
    ], n_ctx=64, threads=2 if variant == "wasm-mt" else 1, kv_f32=True)
    assert results[2] == {"op": "adapters", "n": 2} and results[4] == {"op": "adapters", "n": 1}
    assert "not a GGUF file" in results[6]["error"]
    wasm = [np.fromfile(out, dtype=np.float32).reshape(len(tokens), -1) for out in outs]
    with base.context(n_ctx=64, kv_f32=True) as ctx:
        first, second = Adapter.from_file(base, files["one"]), Adapter.from_file(base, files["two"])
        expected = [logits(ctx, tokens)]
        ctx.set_adapters([(first, 0.7), (second, 1.5)])
        expected.append(logits(ctx, tokens))
        ctx.set_adapters([(first, 0.7)])
        expected.append(logits(ctx, tokens))
    expected.append(expected[0])
    differences = [float(np.abs(got - want).max()) for got, want in zip(wasm, expected)]
    print(f"{variant} vs native, max |logit difference| (base, two adapters, one, after a refusal): {differences}")
    assert max(differences) < 1e-4  # test_wasm_parity's EXACT_BOUND for F32
    assert float(np.abs(wasm[1] - wasm[0]).max()) > 0.1


# ---- the chat service (what the chat page's worker calls) ----

def add_like_the_worker(service, backend, path, scale=1.0):
    """Copy the adapter into library memory, hand it to add_adapter, free the buffer: (adapters JSON or None,
    error message or None)."""
    data = path.read_bytes()
    buffer = backend.call("pm_buffer_alloc", len(data))
    backend.write(buffer, data)
    try:
        return json.loads(service.add_adapter(buffer, len(data), scale)), None
    except Exception as e:
        return None, str(e)
    finally:
        backend.call("pm_buffer_free", buffer)


def test_chat_service_adds_and_removes_adapters(native, files, pairs, lora_dir):
    request = json.dumps({"messages": [{"role": "user", "content": "what is the word"}], "max_tokens": 12,
                          "settings": {"temperature": 0}})
    backend = CountingBackend(native)
    service, error = load_like_the_worker(ChatService, backend, files["base"], n_ctx=256)
    assert error is None
    plain = service.answer(request)["done"]["tokens"]

    listed, error = add_like_the_worker(service, backend, files["one"], scale=1.0)
    assert error is None and listed == {"adapters": [{"id": 1, "name": "one", "alpha": ALPHA, "scale": 1.0}]}
    adapted = service.answer(request)["done"]["tokens"]
    merged_path = write_tiny_llama(lora_dir / "merged-chat.gguf", "F32", transform=merged([(pairs[0], ALPHA, 1.0)]))
    with Model.from_file(merged_path, native) as model:
        assert adapted == ChatService(model, n_ctx=256).answer(request)["done"]["tokens"]
    assert adapted != plain

    # a refused adapter: the library's reason, the buffer freed once (by the caller), the adapters as they were
    garbage = lora_dir / "garbage.gguf"
    garbage.write_bytes(b"garbage" * 100)
    live = set(backend.live)
    listed, error = add_like_the_worker(service, backend, garbage)
    assert listed is None and "not a GGUF file" in error
    assert backend.bad_frees == [] and backend.live == live
    assert [a["id"] for a in json.loads(service.adapters_json())["adapters"]] == [1]

    service.start(request)  # no changes while an answer runs
    with pytest.raises(RuntimeError, match="an answer is running"):
        service.set_adapter_scale(1, 0.5)
    while service.step() is not None:
        pass

    assert json.loads(service.set_adapter_scale(1, 0.0))["adapters"][0]["scale"] == 0.0
    assert service.answer(request)["done"]["tokens"] == plain
    with pytest.raises(ValueError, match="finite number"):
        service.set_adapter_scale(1, float("inf"))
    assert json.loads(service.remove_adapter(1)) == {"adapters": []}
    with pytest.raises(KeyError):
        service.remove_adapter(1)
    assert service.answer(request)["done"]["tokens"] == plain
    service.close()
