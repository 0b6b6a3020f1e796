"""all-MiniLM-L6-v2 converted by wasm/convert_bert.py, run by llama.cpp through pocketmind.search.Embedder, against
the independent numpy BERT in bert_reference.py, sentence embeddings with cosine >= 0.999 (F16) and >= 0.995 (Q8_0):
- the forward pass: the numpy BERT on llama.cpp's own token ids, every sentence below;
- end to end: the numpy BERT on its own WordPiece ids, every sentence where the two tokenizers agree (all but the
  KNOWN_TOKENIZER_DEVIATIONS of llama.cpp's WordPiece normalisation, which the token test pins down)."""
from __future__ import annotations

import json

import gguf
import numpy as np
import pytest

import convert_bert
import deps
from bert_reference import BertEmbedder
from pocketmind.engine import Model, PocketmindError
from pocketmind.search import SearchError
from pocketmind.search.embed import Embedder

MIN_COSINE = {"F16": 0.999, "Q8_0": 0.995}

LONG_TEXT = " ".join(
    f"Paragraph {i}: the committee reviewed item {i * 7} of the budget, approved the changes to section {i % 13}, "
    f"and asked the treasurer to report back before meeting number {i + 1}."
    for i in range(20))  # ~500 words, ~700 tokens: more than the model's 512 positions

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is eating food.",
    "A man is riding a white horse on an enclosed ground.",
    "The new movie is awesome!",
    "How do I reset my password?",
    "Python is a programming language that lets you work quickly.",
    "Photosynthesis converts light energy into chemical energy.",
    "The stock market fell sharply on Monday after the announcement.",
    "Can you recommend a good Italian restaurant nearby?",
    "Water boils at 100 degrees Celsius at sea level.",
    "She sells sea shells by the sea shore.",
    "I can't believe it's not butter!",
    "To be, or not to be, that is the question.",
    "UNAFFABLE and UnAfFaBlE should tokenize identically.",
    "Supercalifragilisticexpialidocious is a very long word.",
    "Email me at jane.doe@example.com or visit https://example.org/path?q=1&r=2.",
    "Call +1 (555) 123-4567 before 9:30 a.m. on 2024-03-15.",
    "Prices rose 3.5% to $1,299.99 (before tax) — a record.",
    "def add(a, b): return a + b  # simple function",
    "x^2 + y^2 = z^2 and a <= b >= c | d ~ e `f`",
    "\"Quoted text\", 'single quotes' and [brackets] {braces}.",
    "Tabs\tand\nnewlines\r\nand   multiple    spaces.",
    "Café au lait, crème brûlée and a croissant, s'il vous plaît.",
    "Müller's Straße in Köln is schön.",
    "El niño comió piña en la mañana de año nuevo.",
    "São Paulo e Brasília são cidades do Brasil.",
    "Ångström, Øresund and Æsir in Scandinavian languages.",
    "Tiếng Việt có nhiều dấu thanh.",
    "Naïve coöperation in the façade's résumé.",
    "Zażółć gęślą jaźń.",
    "Ελληνικά γράμματα: αλφα, βήτα, γάμμα.",
    "Русский текст для проверки токенизатора.",
    "שלום עולם",
    "مرحبا بالعالم",
    "हिन्दी में एक वाक्य।",
    "机器学习很有趣。",
    "我喜欢在公园里散步。",
    "東京は日本の首都です。",
    "ひらがなとカタカナ",
    "한국어 문장입니다.",
    "Mixed 中文 and English 混合 text.",
    "I love pizza 🍕 and tacos 🌮!",
    "🙂🙂🙂",
    "Party time 🎉🎊 with friends 👨‍👩‍👧‍👦.",
    "Thumbs up 👍🏽 and a heart ❤️.",
    "The year 1969: Apollo 11 landed on the Moon.",
    "3.14159 2.71828 1.41421",
    "a",
    "?",
    "Hello",
    "OK!!!",
    "Don't stop believin'; hold on to that feelin'.",
    "The patient was prescribed 500mg of amoxicillin twice daily.",
    "Quantum entanglement links the states of two particles.",
    LONG_TEXT,
]

# llama.cpp's WordPiece (src/llama-vocab.cpp, llm_tokenizer_wpm_session::preprocess) strips every Unicode mark
# (\p{M}) when it strips accents, where BERT strips only nonspacing marks (Mn); and it loses Hangul vowel and final
# jamo after NFD. Fixing that is a llama.cpp patch (and a rebuild of all three variants): not done yet.
KNOWN_TOKENIZER_DEVIATIONS = {
    "हिन्दी में एक वाक्य।": "Devanagari vowel signs (Mc) are dropped",
    "한국어 문장입니다.": "Hangul vowel and final jamo are dropped",
}
AGREEING = [s for s in SENTENCES if s not in KNOWN_TOKENIZER_DEVIATIONS]


@pytest.fixture(scope="session")
def reference() -> BertEmbedder:
    return BertEmbedder(deps.minilm_dir())


@pytest.fixture(scope="session")
def reference_vectors(reference) -> np.ndarray:
    """The numpy BERT end to end (its own tokenizer) on the sentences both tokenizers agree on."""
    return np.stack([reference.embed(s) for s in AGREEING])


@pytest.fixture(scope="session")
def reference_on_ids(reference):
    """The numpy BERT on given token ids (cached: both quants ask for the same ids)."""
    cache: dict[tuple[int, ...], np.ndarray] = {}

    def embed(ids: np.ndarray) -> np.ndarray:
        key = tuple(int(i) for i in ids)
        if key not in cache:
            cache[key] = reference.embed_ids(list(key))
        return cache[key]

    return embed


@pytest.fixture(scope="session", params=["F16", "Q8_0"])
def embedder(request, native):
    model = Model.from_file(deps.minilm_gguf(request.param), native)
    embedder = Embedder(model)
    embedder.quant = request.param
    yield embedder
    model.close()


def test_there_are_enough_varied_sentences():
    assert len(AGREEING) >= 50
    assert len(LONG_TEXT.split()) >= 450


def test_llama_cpp_token_ids_equal_the_reference_wordpiece_but_for_the_known_deviations(embedder, reference):
    differ = {s for s in SENTENCES if embedder.tokens(s)[0].tolist() != reference.tokenizer.encode(s, 512)}
    assert differ == set(KNOWN_TOKENIZER_DEVIATIONS), "update KNOWN_TOKENIZER_DEVIATIONS (and docs/embeddings.md)"


def _report(capsys, what: str, quant: str, cosines: np.ndarray) -> None:
    with capsys.disabled():
        print(f"\n{quant} {what}: cosine to the numpy BERT over {len(cosines)} sentences: "
              f"min {cosines.min():.6f}, mean {cosines.mean():.6f}")


def test_the_forward_pass_matches_the_numpy_bert_on_the_same_tokens(embedder, reference_on_ids, capsys):
    cosines = np.array([embedder.embed_one(s).vector @ reference_on_ids(embedder.tokens(s)[0]) for s in SENTENCES])
    _report(capsys, "forward pass", embedder.quant, cosines)
    worst = int(np.argmin(cosines))
    assert cosines.min() >= MIN_COSINE[embedder.quant], f"{SENTENCES[worst]!r}: cosine {cosines[worst]:.6f}"


def test_sentence_embeddings_match_the_numpy_bert_end_to_end(embedder, reference_vectors, capsys):
    cosines = np.sum(embedder.embed(AGREEING) * reference_vectors, axis=1)
    _report(capsys, "end to end", embedder.quant, cosines)
    worst = int(np.argmin(cosines))
    assert cosines.min() >= MIN_COSINE[embedder.quant], f"{AGREEING[worst]!r}: cosine {cosines[worst]:.6f}"


def test_a_long_text_is_cut_to_the_model_context_keeping_cls_and_sep(embedder):
    ids, full = embedder.tokens(LONG_TEXT)
    assert embedder.max_tokens == 512
    assert len(ids) == 512 and full is not None and full > 512
    assert ids[0] == 101 and ids[-1] == 102  # [CLS] ... [SEP]
    embedded = embedder.embed_one(LONG_TEXT)
    assert embedded.n_tokens == 512 and embedded.truncated_from == full
    assert embedder.embed_one(SENTENCES[0]).truncated_from is None


def test_a_smaller_token_limit_cuts_earlier(embedder):
    small = Embedder(embedder.model, max_tokens=16)
    try:
        ids, full = small.tokens(SENTENCES[15])
        assert len(ids) == 16 and full > 16 and ids[-1] == 102
    finally:
        small.close()


def test_embeddings_are_unit_float32_rows_and_rank_by_meaning(embedder):
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market crashed today."]
    done = []
    m = embedder.embed(texts, progress=lambda d, t: done.append((d, t)))
    assert m.dtype == np.float32 and m.shape == (3, 384)
    assert np.allclose(np.linalg.norm(m, axis=1), 1.0, atol=1e-5)
    assert m[0] @ m[1] > m[0] @ m[2] + 0.3
    assert done == [(3, 3)]  # three short texts share one decode: progress comes per batch


# How far a text's embedding moves when other texts share its decode (each attends only to itself, but the matrix
# products are shared and take other paths). Measured when this was written: 1 - cosine <= 4e-7 for F16; Q8_0
# quantizes the activations row by row, and a last-bit difference that flips a rounding moves it up to 2.8e-4.
BATCH_TOLERANCE = {"F16": 2e-6, "Q8_0": 5e-4}


def test_texts_batched_together_embed_as_they_do_alone(embedder):
    texts = [s for s in SENTENCES if s.strip()][:24]
    batches = [len(b) for b in embedder.batches(texts)]
    batched = embedder.embed(texts)
    alone = np.stack([embedder.embed_one(t).vector for t in texts])
    assert max(batches) > 1 and sum(batches) == len(texts)
    cosines = np.sum(batched * alone, axis=1)
    print(f"\n{embedder.quant}: batched vs alone, {len(batches)} batches: max 1 - cosine {1 - cosines.min():.2e}")
    assert 1 - cosines.min() <= BATCH_TOLERANCE[embedder.quant]


def test_batches_are_cut_by_the_token_budget_and_the_text_limit(embedder):
    small = Embedder(embedder.model, max_tokens=16)
    try:
        texts = ["one two three", "four five six", "seven eight", "nine ten", "eleven"]  # 5, 5, 4, 4, 3 tokens
        sizes = [[e.n_tokens for e in b] for b in small.batches(texts)]
        assert sizes == [[5, 5, 4], [4, 3]]  # 14 + 4 would pass 16
        many = [["w"] * 1 for _ in range(200)]
        lengths = [len(b) for b in embedder.batches(" ".join(w) for w in many)]  # 3 tokens each, 512 per batch
        assert lengths == [64, 64, 64, 8]  # EMBEDDINGS_MAX_SEQS texts at most
    finally:
        small.close()


def test_the_c_api_refuses_a_batch_it_cannot_take(embedder):
    with pytest.raises(PocketmindError, match="exceed the batch"):
        embedder.ctx.embed_batch([[101] + [1000] * 10 + [102]] * 60)  # 720 tokens
    with pytest.raises(PocketmindError, match="a batch holds 1..64"):
        embedder.ctx.embed_batch([[101, 102]] * 65)
    with pytest.raises(PocketmindError, match="has no tokens"):
        embedder.ctx.embed_batch([[101, 102], []])
    assert embedder.ctx.embed_batch([]).shape == (0, 384)


def test_an_empty_text_is_refused(embedder):
    with pytest.raises(SearchError, match="empty"):
        embedder.embed_one("   \n")


def test_the_gguf_declares_what_llama_cpp_bert_needs():
    reader = gguf.GGUFReader(deps.minilm_gguf("Q8_0"))
    fields = {name: reader.fields[name] for name in reader.fields}

    def scalar(name):
        return fields[name].contents()

    assert scalar("general.architecture") == "bert"
    assert scalar("tokenizer.ggml.model") == "bert"
    assert scalar("bert.pooling_type") == int(gguf.PoolingType.MEAN)
    assert scalar("bert.attention.causal") is False
    assert scalar("tokenizer.ggml.token_type_count") == 2
    assert scalar("tokenizer.ggml.normalizer.lowercase") is True
    tokens = fields["tokenizer.ggml.tokens"].contents()
    assert tokens[101] == "[CLS]" and tokens[7592] == "\u2581hello" and "ing" in tokens  # "##ing" -> "ing"
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.0.attn_q.weight"] == "Q8_0" and types["token_embd.weight"] == "Q8_0"
    assert types["position_embd.weight"] == "F32" and types["token_types.weight"] == "F32"
    assert types["blk.5.layer_output_norm.bias"] == "F32"
    assert len(types) == 5 + 16 * 6


def test_the_converter_refuses_what_it_cannot_convert(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    with pytest.raises(convert_bert.ConversionError, match="only BERT"):
        convert_bert.convert(tmp_path, tmp_path / "out.gguf")
    with pytest.raises(convert_bert.ConversionError, match="quant"):
        convert_bert.convert(tmp_path, tmp_path / "out.gguf", "Q4_K")
