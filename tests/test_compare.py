"""The line-up's recommendation and the hosted price list: pure functions over a report's numbers."""
from __future__ import annotations

import re

import pytest

from pocketmind.tasks.compare import parse_shots, recommend
from pocketmind.tasks.hosted import dollars, hosted_costs, prices


def setup(name, accuracy, cost, model_bytes=100):
    return {"name": name, "accuracy": accuracy, "cost_per_item": cost, "model_bytes": model_bytes}


SUMMARY = {"setups": [setup("small", 0.70, 1.0), setup("big", 0.80, 4.0, 200), setup("both", 0.805, 5.0, 300),
                      setup("cascade", 0.79, 2.0, 300)]}


def test_no_target_takes_the_least_compute_within_a_point_of_the_best():
    rec = recommend(SUMMARY, None)
    assert rec == {"setup": "big", "accuracy": 0.80, "cost_per_item": 4.0, "model_bytes": 200, "target": None,
                   "reached": True,  # 0.795 is the bar: the cascade (0.79) misses it by half a point
                   "text": "Recommended for accuracy within a point of the best, with the least compute: big "
                           "(accuracy 0.800, 0.0 MB of models)."}


def test_a_target_takes_the_least_compute_reaching_it():
    assert recommend(SUMMARY, 0.75)["setup"] == "cascade"
    assert recommend(SUMMARY, 0.70)["setup"] == "small"  # reaching the target exactly counts
    assert recommend(SUMMARY, 0.0)["setup"] == "small"


def test_equal_compute_goes_to_fewer_model_bytes_then_higher_accuracy():
    tied = {"setups": [setup("a", 0.8, 1.0, 300), setup("b", 0.8, 1.0, 200), setup("c", 0.9, 1.0, 200)]}
    assert recommend(tied, 0.5)["setup"] == "c"
    assert recommend({"setups": tied["setups"][:2]}, 0.5)["setup"] == "b"


def test_an_unreachable_target_names_the_best():
    assert recommend(SUMMARY, 0.9) == {"setup": None, "best": "both", "accuracy": 0.805, "target": 0.9,
                                       "reached": False, "text": "No setup reaches accuracy of at least 0.900; the "
                                                                 "best is both at 0.805."}


@pytest.mark.parametrize("text, shots", [("0,3", [0, 3]), (" 3, 0,3 ", [0, 3]), ([2, 0], [0, 2]), ("5", [5])])
def test_shot_counts_parse_from_text_or_lists(text, shots):
    assert parse_shots(text) == shots


@pytest.mark.parametrize("text", ["", "a", "1.5", "-1", [True], [-2], ","])
def test_bad_shot_counts_are_refused(text):
    with pytest.raises(ValueError, match="^(give few-shot counts|few-shot counts are whole numbers)"):
        parse_shots(text)


@pytest.mark.parametrize("target", [-0.1, 1.5])
def test_a_target_outside_0_to_1_is_refused(target):
    with pytest.raises(ValueError, match="^the target accuracy is a fraction between 0 and 1"):
        recommend(SUMMARY, target)


def test_the_price_list_names_three_hosted_models_with_dates_and_sources():
    models = prices()["models"]
    assert [m["name"] for m in models] == ["GPT-4o mini", "Gemini 1.5 Flash", "Claude Instant 1.2"]
    for m in models:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", m["as_of"]) and m["source"].startswith("https://")
        assert 0 < m["input_per_million"] < m["output_per_million"]


def test_hosted_costs_are_tokens_times_prices():
    costs = {c["name"]: c for c in hosted_costs(n_items=4, input_tokens=2_000_000, output_tokens=100_000)}
    assert costs["GPT-4o mini"]["usd"] == pytest.approx(2 * 0.15 + 0.1 * 0.60)
    assert costs["Gemini 1.5 Flash"]["usd_per_million_items"] == pytest.approx((2 * 0.075 + 0.1 * 0.30) / 4 * 1e6)
    assert costs["GPT-4o mini"]["usd_text"] == "$0.36"
    assert costs["Gemini 1.5 Flash"]["per_million_items_text"] == "$45,000.00"
    with pytest.raises(ValueError, match="^no items to price$"):
        hosted_costs(0, 1, 1)


@pytest.mark.parametrize("value, text", [(0.00004, "$0.000040"), (0.000123, "$0.00012"), (0.009, "$0.0090"),
                                         (0.0123, "$0.01"), (4.2, "$4.20"), (12345.6, "$12,345.60"), (0, "$0.00")])
def test_dollars_keep_two_significant_digits_below_a_cent(value, text):
    assert dollars(value) == text
