"""Sampling on hand-made logits: filters keep the right sets, penalties follow llama.cpp, seeds reproduce."""
from __future__ import annotations

import re

import numpy as np
import pytest

from pocketmind.sampling import GREEDY, Sampler, SamplingParams, apply_penalties, candidates, log_softmax

OFF = dict(top_k=0, top_p=1.0, min_p=0.0)  # every filter off
PROBS = np.array([0.5, 0.3, 0.15, 0.05])
LOGITS = np.log(PROBS).astype(np.float32)


def kept(params: SamplingParams, logits=LOGITS, history=()) -> set[int]:
    return set(candidates(logits, params, history)[0].tolist())


@pytest.mark.parametrize("field, value, words", [
    ("top_k", -1, "top_k must be >= 0"),
    ("top_p", 0.0, "top_p must be in (0, 1]"),
    ("top_p", 1.5, "top_p must be in (0, 1]"),
    ("min_p", -0.1, "min_p must be in [0, 1]"),
    ("min_p", 2.0, "min_p must be in [0, 1]"),
    ("repeat_penalty", 0.0, "repeat_penalty must be > 0"),
    ("repeat_last_n", -2, "repeat_last_n must be >= -1"),
    ("temperature", float("nan"), "temperature must be a finite number"),
    ("presence_penalty", float("inf"), "presence_penalty must be a finite number"),
    ("top_k", 2.5, "top_k must be an integer"),
    ("top_k", True, "top_k must be an integer"),
    ("seed", -3, "seed must be a non-negative integer"),
    ("temperature", "hot", "temperature must be a finite number"),
])
def test_bad_params_are_refused_clearly(field, value, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        SamplingParams(**{field: value})


def test_params_are_frozen():
    with pytest.raises(AttributeError):
        GREEDY.temperature = 1.0


def test_greedy_is_argmax():
    rng = np.random.default_rng(1)
    for _ in range(20):
        logits = rng.standard_normal(1000).astype(np.float32)
        assert Sampler(GREEDY).sample(logits) == int(np.argmax(logits))
        assert Sampler(SamplingParams(temperature=-1.0)).sample(logits) == int(np.argmax(logits))


def test_top_k_1_is_greedy_at_any_temperature():
    rng = np.random.default_rng(2)
    for seed in range(20):
        logits = rng.standard_normal(500).astype(np.float32)
        sampler = Sampler(SamplingParams(temperature=2.0, top_k=1, top_p=1.0, min_p=0.0, seed=seed))
        assert sampler.sample(logits) == int(np.argmax(logits))


def test_same_seed_same_draws_and_different_seeds_differ():
    logits = np.zeros(50, dtype=np.float32)  # uniform: draws depend only on the generator

    def draws(seed):
        sampler = Sampler(SamplingParams(temperature=1.0, seed=seed, **OFF))
        return [sampler.sample(logits) for _ in range(40)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)
    assert len(set(draws(7))) > 10


def test_top_k_keeps_the_k_largest():
    assert kept(SamplingParams(temperature=1.0, top_k=2, top_p=1.0, min_p=0.0)) == {0, 1}
    assert kept(SamplingParams(temperature=1.0, top_k=10, top_p=1.0, min_p=0.0)) == {0, 1, 2, 3}


def test_top_p_keeps_the_smallest_head_reaching_p():
    assert kept(SamplingParams(temperature=1.0, top_k=0, top_p=0.5, min_p=0.0)) == {0}
    assert kept(SamplingParams(temperature=1.0, top_k=0, top_p=0.79, min_p=0.0)) == {0, 1}
    assert kept(SamplingParams(temperature=1.0, top_k=0, top_p=0.81, min_p=0.0)) == {0, 1, 2}
    assert kept(SamplingParams(temperature=1.0, top_k=0, top_p=0.99, min_p=0.0)) == {0, 1, 2, 3}
    assert kept(SamplingParams(temperature=1.0, top_k=0, top_p=0.01, min_p=0.0)) == {0}
    # the survivors are renormalised
    ids, probs = candidates(LOGITS, SamplingParams(temperature=1.0, top_k=0, top_p=0.79, min_p=0.0))
    np.testing.assert_allclose(probs[np.argsort(ids)], [0.5 / 0.8, 0.3 / 0.8], rtol=1e-6)


def test_top_p_on_shuffled_logits():
    order = np.array([3, 0, 2, 1])  # position i holds PROBS[order[i]]
    logits = np.log(PROBS[order]).astype(np.float32)
    assert kept(SamplingParams(temperature=1.0, top_k=0, top_p=0.79, min_p=0.0), logits) == {1, 3}


def test_min_p_keeps_tokens_above_a_share_of_the_best():
    assert kept(SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.2)) == {0, 1, 2}  # >= 0.1
    assert kept(SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.5)) == {0, 1}  # >= 0.25
    assert kept(SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=1.0)) == {0}
    assert kept(SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.09)) == {0, 1, 2, 3}


def test_temperature_scales_the_kept_distribution():
    ids, probs = candidates(LOGITS, SamplingParams(temperature=2.0, **OFF))
    expected = np.sqrt(PROBS) / np.sqrt(PROBS).sum()
    np.testing.assert_allclose(probs[np.argsort(ids)], expected, rtol=1e-6)


def test_draws_follow_the_distribution():
    sampler = Sampler(SamplingParams(temperature=1.0, seed=3, **OFF))
    counts = np.bincount([sampler.sample(LOGITS) for _ in range(20000)], minlength=4)
    np.testing.assert_allclose(counts / counts.sum(), PROBS, atol=0.015)


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    logits = np.array([2.0, -1.0, 0.5, 1.0], dtype=np.float32)
    params = SamplingParams(repeat_penalty=2.0, repeat_last_n=3)
    np.testing.assert_allclose(apply_penalties(logits, [0, 1, 1], params), [1.0, -2.0, 0.5, 1.0])
    # only the last repeat_last_n tokens count: token 0 is out of the window here
    np.testing.assert_allclose(apply_penalties(logits, [0, 2, 1, 1], params), [2.0, -2.0, 0.25, 1.0])
    # -1: the whole history; 0: no penalty at all
    np.testing.assert_allclose(apply_penalties(logits, [0, 2, 1, 1], SamplingParams(repeat_penalty=2.0,
                                                                                    repeat_last_n=-1)),
                               [1.0, -2.0, 0.25, 1.0])
    np.testing.assert_allclose(apply_penalties(logits, [0], SamplingParams(repeat_penalty=2.0, repeat_last_n=0)),
                               logits)


def test_repetition_penalty_lowers_the_probability_of_a_repeated_token():
    params = SamplingParams(temperature=1.0, repeat_penalty=1.5, **OFF)
    ids, probs = candidates(LOGITS, params, history=[1])
    p = dict(zip(ids.tolist(), probs.tolist()))
    # token 1's logit log(0.3) is negative: multiplied by 1.5, i.e. its weight becomes 0.3**1.5
    weights = PROBS.copy()
    weights[1] = 0.3 ** 1.5
    assert p[1] == pytest.approx(weights[1] / weights.sum(), rel=1e-5)
    assert p[1] < 0.3 and p[0] > 0.5
    # greedy also sees the penalty: the repeated best token loses to the runner-up
    logits = np.array([1.0, 0.9, 0.0], dtype=np.float32)
    assert Sampler(SamplingParams(temperature=0.0, repeat_penalty=1.5)).sample(logits, [0]) == 1


def test_presence_and_frequency_penalties():
    logits = np.zeros(4, dtype=np.float32)
    params = SamplingParams(presence_penalty=0.5, frequency_penalty=0.25)
    np.testing.assert_allclose(apply_penalties(logits, [2, 2, 2, 3], params), [0.0, 0.0, -1.25, -0.75])


def test_input_logits_are_never_written():
    logits = np.array(np.random.default_rng(4).standard_normal(300), dtype=np.float32)
    logits.setflags(write=False)  # as a view on library memory may be
    before = logits.copy()
    params = SamplingParams(temperature=0.7, top_k=20, top_p=0.9, min_p=0.05, repeat_penalty=1.3,
                            presence_penalty=0.2, frequency_penalty=0.1, seed=0)
    sampler = Sampler(params)
    for _ in range(5):
        sampler.sample(logits, history=list(range(0, 300, 7)))
    Sampler(SamplingParams(temperature=0.0, repeat_penalty=1.3)).sample(logits, [int(np.argmax(logits))])
    np.testing.assert_array_equal(logits, before)


def test_log_softmax():
    lp = log_softmax(LOGITS + 3.0)  # invariant to a shift
    np.testing.assert_allclose(np.exp(lp), PROBS, rtol=1e-6)
    assert log_softmax(np.array([1000.0, 0.0], dtype=np.float32))[0] == pytest.approx(0.0)
