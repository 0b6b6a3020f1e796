"""The C API through the backend-neutral engine, on the native build."""
from __future__ import annotations

import numpy as np
import pytest

from pocketmind import Model, PocketmindError
from tiny_gguf import CHATML_TEMPLATE, vocabulary


@pytest.fixture
def f16(native, tiny_models):
    with Model.from_file(tiny_models["F16"], native) as model:
        yield model


def test_model_facts(f16):
    tokens, _, _ = vocabulary()
    assert f16.n_vocab == len(tokens)
    assert f16.n_ctx_train == 256
    assert f16.n_embd == 64
    assert (f16.bos, f16.eos) == (1, 2)
    assert f16.add_bos
    assert f16.is_eog(2) and not f16.is_eog(1) and not f16.is_eog(300)
    assert f16.chat_template == CHATML_TEMPLATE
    assert 0 < f16.size < 300_000
    # tok_embd + output (n_vocab x 64 each) + 2 layers of attention/ffn/norms + the final norm
    expected = 2 * f16.n_vocab * 64 + 2 * (64 * 64 * 2 + 32 * 64 * 2 + 3 * 64 * 128 + 2 * 64) + 64
    assert f16.n_params == expected


def test_metadata_and_card(f16):
    meta = f16.metadata
    assert meta["general.architecture"] == "llama"
    assert meta["general.name"] == "tiny-llama-f16-s0"
    assert meta["llama.block_count"] == "2"
    assert f16.meta("llama.embedding_length") == "64"
    assert f16.meta("no.such.key") is None
    assert f16.meta("tokenizer.chat_template") == CHATML_TEMPLATE  # longer than the first buffer try
    card = f16.card()
    assert card["architecture"] == "llama" and card["has_chat_template"]
    assert card["general"]["general.name"] == "tiny-llama-f16-s0"


def test_tokenize_round_trip_and_special_tokens(f16):
    text = "the word and é 日本 🙂"
    tokens = f16.tokenize(text)
    assert tokens[0] == f16.bos
    # SentencePiece marks the start of the text as a word start: the pieces read back with a leading space
    assert f16.detokenize(tokens[1:]).decode("utf-8") == " " + text
    assert len(f16.tokenize(text, add_special=False)) == len(tokens) - 1
    chat = "<|im_start|>user\nhi<|im_end|>"
    assert f16.tokenize(chat, add_special=False, parse_special=True)[0] == 3
    assert 3 not in f16.tokenize(chat, add_special=False, parse_special=False)
    long_text = " ".join(["the"] * 2000)
    assert len(f16.tokenize(long_text, add_special=False)) == 2000


def test_token_bytes_are_raw_pieces(f16):
    byte_e9 = 5 + 0xE9  # <0xE9>: half of a two-byte character
    assert f16.token_bytes(byte_e9) == b"\xe9"
    assert f16.token_bytes(3) == b""
    assert f16.token_bytes(3, special=True) == b"<|im_start|>"
    with pytest.raises(PocketmindError, match="outside the vocabulary"):
        f16.token_bytes(f16.n_vocab)


def test_decode_keeps_logits_of_every_position_or_the_last(f16):
    tokens = f16.tokenize("the word and the other")
    with f16.context(n_ctx=128) as ctx:
        ctx.decode(tokens, all_logits=True)
        every = np.stack([ctx.logits(i).copy() for i in range(len(tokens))])
        assert ctx.n_past == len(tokens)
        ctx.kv_clear()
        ctx.decode(tokens)
        last = ctx.logits().copy()
        with pytest.raises(PocketmindError, match="kept no logits"):
            ctx.logits(0)
    assert every.shape == (len(tokens), f16.n_vocab)
    np.testing.assert_allclose(last, every[-1], atol=1e-4)
    assert not np.allclose(every[0], every[-1])


def test_one_token_goes_without_the_token_buffer_and_decodes_alike(f16):
    tokens = f16.tokenize("the word and the other")
    with f16.context(n_ctx=16) as one, f16.context(n_ctx=16) as buffered:
        calls = []
        call = one.backend.call
        for i, t in enumerate(tokens):
            one.backend.call = lambda fn, *a: calls.append(fn) or call(fn, *a)
            one.decode([int(t)])
            del one.backend.call
            buffered.decode(np.array([t]), pos=i)  # an array: through the buffer
            np.testing.assert_array_equal(one.logits(), buffered.logits())
        assert calls.count("pm_decode_one") == len(tokens) and "pm_decode" not in calls
        assert one.cached_prefix(tokens) == buffered.cached_prefix(tokens) == len(tokens)
        for bad, message in [(f16.n_vocab, "outside the vocabulary"), (-3, "outside the vocabulary"),
                             (2**40, "fit in 32 bits")]:
            with pytest.raises(PocketmindError, match=message):
                one.decode([bad])
        with pytest.raises(PocketmindError, match="do not fit in the context"):
            one.decode([int(tokens[0])], pos=one.n_ctx)


def test_token_bytes_are_read_once_per_token(f16):
    calls = []
    f16._token_bytes.clear()  # what earlier tests read
    read = f16._read_token_bytes
    f16._read_token_bytes = lambda token, special: calls.append((token, special)) or read(token, special)
    try:
        assert [f16.token_bytes(t) for t in (300, 300, 301)] == [read(300, False), read(300, False), read(301, False)]
        assert f16.token_bytes(3, special=True) == b"<|im_start|>" and f16.token_bytes(3) == b""
    finally:
        del f16._read_token_bytes
    assert calls == [(300, False), (301, False), (3, True), (3, False)]


def test_batches_split_and_chunked_logits_agree(f16):
    tokens = f16.tokenize("the word and the other one which was not said " * 3)
    with f16.context(n_ctx=256, n_batch=512) as whole, f16.context(n_ctx=256, n_batch=7) as pieces:
        assert pieces.n_batch == 7
        whole.decode(tokens, all_logits=True)
        pieces.decode(tokens, all_logits=True)
        for i in (0, 6, 7, 20, len(tokens) - 1):
            np.testing.assert_allclose(pieces.logits(i), whole.logits(i), atol=1e-3)


def test_kv_remove_keeps_the_prefix(f16):
    first = f16.tokenize("the word and the")
    second = f16.tokenize("other one", add_special=False)
    with f16.context(n_ctx=128) as ctx:
        ctx.decode(np.concatenate([first, second]))
        expected = ctx.logits().copy()
        ctx.decode(f16.tokenize("was not", add_special=False))
        ctx.kv_remove(len(first))
        assert ctx.n_past == len(first)
        ctx.decode(second)  # only the new part is computed again
        np.testing.assert_allclose(ctx.logits(), expected, atol=1e-4)


def test_the_context_knows_which_tokens_its_cache_holds(f16):
    ctx = f16.context(n_ctx=64)
    tokens = f16.tokenize("the cat sat on the mat")
    assert ctx.cached_prefix(tokens) == 0
    ctx.decode(tokens[:4])
    ctx.decode(tokens[4:])
    assert ctx.cached_prefix(tokens) == len(tokens)
    assert ctx.cached_prefix(list(tokens[:3]) + [int(tokens[3]) + 1]) == 3  # where they differ
    ctx.kv_remove(2)
    assert ctx.cached_prefix(tokens) == 2
    ctx.kv_remove(0, 1)  # a hole in the middle: nothing is trusted
    assert ctx.cached_prefix(tokens) == 0
    ctx.kv_clear()
    ctx.decode(tokens)
    with pytest.raises(PocketmindError):
        ctx.decode(tokens, pos=ctx.n_ctx + 5)  # a failed decode: nothing is trusted
    assert ctx.cached_prefix(tokens) == 0


def test_loading_from_bytes_matches_loading_from_file(native, tiny_models):
    tokens = [1, 270, 300, 280]
    results = []
    for load in (lambda: Model.from_file(tiny_models["Q8_0"], native),
                 lambda: Model.from_bytes(tiny_models["Q8_0"].read_bytes(), native)):
        with load() as model, model.context(n_ctx=64) as ctx:
            ctx.decode(tokens)
            results.append(ctx.logits().copy())
    np.testing.assert_array_equal(results[0], results[1])


def test_embeddings_are_pooled_and_deterministic(f16):
    with f16.context(n_ctx=128, embeddings=True) as ctx:
        a = ctx.embed(f16.tokenize("the word"))
        b = ctx.embed(f16.tokenize("the other one"))
        a2 = ctx.embed(f16.tokenize("the word"))
    assert a.shape == (64,)
    np.testing.assert_allclose(a, a2, atol=1e-6)
    assert not np.allclose(a, b)


def test_threads_give_the_same_logits(native, tiny_models):
    tokens = [1, 270, 300, 280, 290, 299]
    out = []
    with Model.from_file(tiny_models["F32"], native) as model:
        for threads in (1, 2):
            with model.context(n_ctx=64, n_threads=threads) as ctx:
                ctx.decode(tokens)
                out.append(ctx.logits().copy())
    np.testing.assert_allclose(out[0], out[1], atol=1e-5)


def test_closing_a_model_closes_its_contexts_first(native, tiny_models):
    model = Model.from_file(tiny_models["F16"], native)
    ctx = model.context(n_ctx=32)
    ctx.decode([1, 270])
    model.close()  # would leave ctx pointing at freed weights
    with pytest.raises(ValueError, match="closed"):
        ctx.decode([271])


def test_closed_handles_refuse_use(native, tiny_models):
    model = Model.from_file(tiny_models["F16"], native)
    ctx = model.context(n_ctx=32)
    ctx.close()
    with pytest.raises(ValueError, match="closed"):
        ctx.decode([1])
    model.close()
    with pytest.raises(ValueError, match="closed"):
        model.tokenize("x")
