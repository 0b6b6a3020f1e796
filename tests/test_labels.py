"""Label scoring on the native build: exact log-probabilities, one prompt decode per call, ties, bad label sets,
a real classification with SmolLM2, and every answer in the label set over 300 random runs."""
from __future__ import annotations

import numpy as np
import pytest
from tiny_gguf import WORDS, write_parrot_llama

from pocketmind import LabelScores, Model, score_labels
from pocketmind.generate import chat_prompt_tokens
from pocketmind.sampling import log_softmax


@pytest.fixture(scope="module", params=["F32", "Q4_0"])
def tiny(request, native, tiny_models):
    with Model.from_file(tiny_models[request.param], native) as model:
        yield model


@pytest.fixture
def ctx(tiny):
    with tiny.context(n_ctx=256, kv_f32=True) as ctx:
        yield ctx


def brute_force(ctx, prompt, label: str) -> float:
    """The reference: from an empty cache, prompt then label one token per decode, summing log_softmax."""
    ids = ctx.model.tokenize(label, add_special=False).tolist()
    ctx.kv_clear()
    total = 0.0
    for i, token in enumerate(list(prompt) + ids):
        if i >= len(prompt):
            total += float(log_softmax(ctx.logits())[token])
        ctx.decode([token])
    return total


# shared first tokens: "the" / "the word" / "the word is not a" / "the of"; byte-fallback tokens: "é", "xq"
LABELS = ["the", "the word", "the word is not a", "word", "the of", "é", "xq", "is"]


def test_logprobs_equal_a_token_by_token_reference(tiny, ctx):
    prompt = chat_prompt_tokens(tiny, [{"role": "user", "content": "what is it about"}])
    scores = score_labels(ctx, prompt, LABELS)
    assert sorted(set(scores.n_tokens)) == [1, 2, 3, 5]
    reference = [brute_force(ctx, prompt, label) for label in LABELS]
    assert np.max(np.abs(np.array(scores.logprobs) - reference)) < 1e-4
    assert scores.mean_logprobs == tuple(lp / n for lp, n in zip(scores.logprobs, scores.n_tokens))


def count_decodes(ctx) -> list[tuple[int, int | None]]:
    """From now on, every ctx.decode call appends (number of tokens, pos) to the returned list."""
    calls = []
    decode = ctx.decode

    def counting(tokens, pos=None, all_logits=False):
        calls.append((len(tokens), pos))
        return decode(tokens, pos, all_logits)

    ctx.decode = counting
    return calls


def test_the_prompt_is_decoded_once_per_call(tiny, ctx):
    prompt = tiny.tokenize("the word is")
    calls = count_decodes(ctx)
    first = score_labels(ctx, prompt, LABELS)
    n_tokens = [len(tiny.tokenize(label, add_special=False)) for label in LABELS]
    # the prompt once, then each label of n > 1 tokens once, after the prompt (its last token predicts nothing)
    assert calls == [(len(prompt), 0)] + [(n - 1, len(prompt)) for n in n_tokens if n > 1]
    assert ctx.n_past == len(prompt)  # the cache holds the shared prompt and no label
    calls.clear()
    assert score_labels(ctx, prompt, LABELS) == first and calls[0] == (len(prompt), 0)
    assert sum(pos == 0 for _, pos in calls) == 1


def test_a_shared_start_is_decoded_once_and_scores_do_not_depend_on_the_item_before(tiny, ctx):
    prompts = [tiny.tokenize(f"the word is {w}") for w in ("red", "green", "blue")]
    shared = len(tiny.tokenize("the word is"))
    assert all((p[:shared] == prompts[0][:shared]).all() for p in prompts)
    calls = count_decodes(ctx)
    ctx.kv_clear()
    forward = [score_labels(ctx, p, LABELS, shared=shared) for p in prompts]
    assert [c for c in calls if c[1] == 0] == [(shared, 0)]  # the shared start: once, as a batch of its own
    assert calls[1] == (len(prompts[0]) - shared, shared)
    ctx.kv_clear()
    backward = [score_labels(ctx, p, LABELS, shared=shared) for p in reversed(prompts)][::-1]
    assert forward == backward  # bit for bit: every item's batches are cut the same way, whatever came before
    ctx.decode(tiny.tokenize(" and more"))  # someone else's tokens after the prompt: kept start, new rest
    assert score_labels(ctx, prompts[1], LABELS, shared=shared) == forward[1]


def test_probs_sum_to_one_and_the_label_is_the_argmax(tiny, ctx):
    scores = score_labels(ctx, tiny.tokenize("of the"), LABELS, model=tiny)
    assert scores.labels == tuple(LABELS)
    assert abs(sum(scores.probs) - 1) < 1e-12
    best = int(np.argmax(scores.logprobs))
    assert scores.label == LABELS[best] and scores.confidence == max(scores.probs) == scores.probs[best]
    # probs are the softmax of the totals
    expected = np.exp(np.array(scores.logprobs) - max(scores.logprobs))
    assert np.allclose(scores.probs, expected / expected.sum(), atol=1e-12)


def test_a_single_label_has_probability_one(tiny, ctx):
    scores = score_labels(ctx, tiny.tokenize("a"), ["the word"])
    assert scores.label == "the word" and scores.probs == (1.0,) and scores.confidence == 1.0
    assert scores.logprobs[0] < 0


def test_ties_go_to_the_earlier_label(native, tmp_path):
    # constructed: two labels with the same total
    scores = LabelScores.from_logprobs(["x", "y", "z"], [-2.0, -0.5, -0.5], [1, 1, 1])
    assert scores.label == "y" and scores.probs[1] == scores.probs[2]
    # a model whose logits are 0 for every token but one: single-token labels tie exactly
    with Model.from_file(write_parrot_llama(tmp_path / "parrot.gguf", "zz"), native) as model, \
            model.context(n_ctx=64) as ctx:
        for labels in (["the", "and", "of"], ["of", "the", "and"]):
            scores = score_labels(ctx, model.tokenize("is it"), labels)
            assert len(set(scores.logprobs)) == 1 and scores.label == labels[0]
            assert scores.probs == pytest.approx([1 / 3] * 3)


@pytest.mark.parametrize("labels, message", [
    ([], "the label set is empty"),
    ("positive", "a list of strings, not one string"),
    (["yes", ""], "label 1 is an empty string"),
    (["yes", "no", "yes"], "the label 'yes' appears more than once"),
    (["yes", None], "label 1 is not a string"),
])
def test_bad_label_sets(tiny, ctx, labels, message):
    with pytest.raises(ValueError, match=message):
        score_labels(ctx, tiny.tokenize("a"), labels)


def test_a_label_that_does_not_fit_after_the_prompt_is_named(tiny, ctx):
    prompt = [tiny.bos] + tiny.tokenize("the" + " the" * 249, add_special=False).tolist()  # 251 of 256
    assert len(prompt) == 251
    assert score_labels(ctx, prompt, ["the word is not a"]).label  # 5 tokens: fits exactly
    with pytest.raises(ValueError, match=r"the label 'positive' \(9 tokens\) does not fit after the prompt "
                                         r"\(251 tokens\) in the context of 256"):
        score_labels(ctx, prompt, ["the", "positive"])
    with pytest.raises(ValueError, match="the prompt needs at least one token"):
        score_labels(ctx, [], ["the"])


def test_six_hundred_labels(tiny, ctx):
    rng = np.random.default_rng(1)
    pairs = [f"{a} {b}" for a in WORDS for b in WORDS if a != b]
    labels = [pairs[i] for i in rng.choice(len(pairs), 600, replace=False)]
    prompt = tiny.tokenize("the word")
    scores = score_labels(ctx, prompt, labels)
    assert len(scores.probs) == 600 and abs(sum(scores.probs) - 1) < 1e-9
    assert scores.label == labels[int(np.argmax(scores.logprobs))]
    for i in rng.choice(600, 8, replace=False):
        assert abs(scores.logprobs[i] - brute_force(ctx, prompt, labels[i])) < 1e-4


def test_every_answer_is_in_the_label_set_over_300_random_runs(native, tiny_models):
    rng = np.random.default_rng(0)
    with Model.from_file(tiny_models["F16"], native) as model, model.context(n_ctx=128) as ctx:
        for run in range(300):
            words = lambda n: " ".join(rng.choice(WORDS, n))  # noqa: E731
            labels = list(dict.fromkeys(words(rng.integers(1, 4)) for _ in range(rng.integers(1, 9))))
            prompt = model.tokenize(words(rng.integers(1, 12)))
            scores = score_labels(ctx, prompt, labels)
            assert scores.label in labels, run
            assert abs(sum(scores.probs) - 1) < 1e-9 and scores.confidence == max(scores.probs), run


REVIEW_SYSTEM = "You classify the sentiment of reviews. Answer with one word: positive or negative."


@pytest.mark.parametrize("review, expected", [("I love it, best purchase ever!", "positive"),
                                              ("I hate it, worst purchase ever!", "negative")])
def test_smollm2_classifies_an_easy_review(native, smollm2, review, expected):
    with Model.from_file(smollm2, native) as model, model.context(n_ctx=512) as ctx:
        chat = [{"role": "system", "content": REVIEW_SYSTEM},
                {"role": "user", "content": f"Is the following review positive or negative? '{review}' "
                                            "Answer with one word."}]
        scores = score_labels(ctx, chat_prompt_tokens(model, chat), ["positive", "negative"])
        print(review, dict(zip(scores.labels, scores.probs)))
        assert scores.label == expected and scores.confidence > 0.5
