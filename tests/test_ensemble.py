"""Voters, ensembles and cascades (pocketmind.tasks.ensemble) with voters whose outputs are known: plain Python
callables reading a table, so every rule's result, tie and threshold can be worked out by hand."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from pocketmind.tasks import Cascade, Ensemble, Voter
from pocketmind.tasks.ensemble import TEMPERATURES, calibrate

ABC = ("a", "b", "c")


def fixed(name: str, probs, labels=ABC, cost=None) -> Voter:
    """A voter that gives the same probabilities for every text."""
    return Voter(name, lambda text: probs, labels, cost=cost)


def table(name: str, rows: dict, labels=ABC, cost=None) -> Voter:
    """A voter that looks its answer up by text."""
    return Voter(name, lambda text: rows[text], labels, cost=cost)


# ---- voters ----

def test_voter_accepts_sequences_mappings_and_results():
    assert fixed("v", [2, 6, 2])("x").probs == (0.2, 0.6, 0.2)  # normalised
    vote = Voter("m", lambda t: {"c": 0.7, "a": 0.3}, ABC)("x")
    assert (vote.label, vote.probs, vote.confidence) == ("c", (0.3, 0.0, 0.7), 0.7)
    result = SimpleNamespace(probs=(0.1, 0.8, 0.1), n_tokens=42, seconds=0.5)
    vote = Voter("r", lambda t: result, ABC)("x")
    assert (vote.label, vote.n_tokens, vote.seconds, vote.cost) == ("b", 42, 0.5, 0.5)
    assert Voter("r", lambda t: result, ABC, cost=3.0)("x").cost == 3.0
    assert fixed("tie", [0.4, 0.4, 0.2])("x").label == "a"  # a voter's own tie: the earlier label


@pytest.mark.parametrize("out, message", [
    ([0.5, 0.5], "gave 2 probabilities for 3 labels"),
    ([0.5, -0.1, 0.6], "invalid probabilities"),
    ([0, 0, 0], "invalid probabilities"),
    ([float("nan"), 0.5, 0.5], "invalid probabilities"),
    ({"a": 0.5, "z": 0.5}, "unknown labels: \\['z'\\]"),
])
def test_voter_refuses_bad_outputs(out, message):
    with pytest.raises(ValueError, match=message):
        fixed("bad", out)("x")


def test_cached_voter_asks_once_and_keeps_the_first_cost():
    calls = []
    voter = Voter("c", lambda t: calls.append(t) or SimpleNamespace(probs=(1, 0, 0), n_tokens=5, seconds=2.0), ABC,
                  cache=True)
    assert voter("x") is voter("x") and calls == ["x"]
    assert voter("x").seconds == 2.0
    voter("y")
    assert calls == ["x", "y"]


# ---- ensemble rules ----

def test_majority_beats_mean_when_two_modest_voters_outvote_one_sure_one():
    voters = [fixed("v1", [0.4, 0.35, 0.25]), fixed("v2", [0.4, 0.35, 0.25]), fixed("v3", [0.0, 1.0, 0.0])]
    majority = Ensemble(voters, "majority").classify("x")
    assert majority.label == "a" and majority.agreement == pytest.approx(2 / 3)
    assert majority.voter_labels == {"v1": "a", "v2": "a", "v3": "b"}
    # confidence (T = 1): the mean probability of the chosen label
    assert majority.confidence == pytest.approx(0.8 / 3) and majority.probs == pytest.approx((0.8 / 3, 1.7 / 3, 0.5 / 3))
    mean = Ensemble(voters, "mean").classify("x")
    assert mean.label == "b" and mean.confidence == pytest.approx(1.7 / 3) and mean.agreement == pytest.approx(1 / 3)


def test_majority_tie_goes_to_the_higher_summed_probability():
    voters = [fixed("v1", [0.6, 0.3, 0.1]), fixed("v2", [0.2, 0.5, 0.3]), fixed("v3", [0.1, 0.2, 0.7])]
    # one vote each; sums a 0.9, b 1.0, c 1.1
    assert Ensemble(voters, "majority").classify("x").label == "c"
    # a 2-2 tie among four voters: b's sum (0.3 + 0.25 + 0.8 + 0.7 = 2.05) beats a's (0.6 + 0.55 + 0.1 + 0.2 = 1.45)
    four = [fixed("v1", [0.6, 0.3, 0.1]), fixed("v2", [0.55, 0.25, 0.2]), fixed("v3", [0.1, 0.8, 0.1]),
            fixed("v4", [0.2, 0.7, 0.1])]
    result = Ensemble(four, "majority").classify("x")
    assert result.label == "b" and result.agreement == 0.5


def test_majority_tie_with_equal_sums_goes_to_label_order():
    voters = [fixed("v1", [0.75, 0.25, 0.0]), fixed("v2", [0.25, 0.75, 0.0])]
    assert Ensemble(voters, "majority").classify("x").label == "a"
    assert Ensemble(voters[::-1], "majority").classify("x").label == "a"  # not the first voter's choice
    bac = ("b", "a", "c")
    swapped = [fixed("v1", [0.25, 0.75, 0.0], bac), fixed("v2", [0.75, 0.25, 0.0], bac)]
    assert Ensemble(swapped, "majority").classify("x").label == "b"


def test_mean_tie_goes_to_label_order():
    voters = [fixed("v1", [0.5, 0.0, 0.5]), fixed("v2", [0.0, 0.5, 0.5]), fixed("v3", [0.5, 0.5, 0.0])]
    assert Ensemble(voters, "mean").classify("x").label == "a"


def test_weighted_uses_given_weights_and_needs_them():
    voters = [fixed("v1", [0.7, 0.3, 0.0]), fixed("v2", [0.0, 0.6, 0.4]), fixed("v3", [0.0, 0.6, 0.4])]
    assert Ensemble(voters, "mean").classify("x").label == "b"
    result = Ensemble(voters, "weighted", weights=[4, 1, 1]).classify("x")
    # 2/3 * (0.7, 0.3, 0) + 1/6 * (0, 0.6, 0.4) * 2 = (0.467, 0.4, 0.133)
    assert result.label == "a" and result.probs == pytest.approx((0.7 * 2 / 3, 0.2 + 0.2, 0.4 / 3))
    with pytest.raises(ValueError, match="needs weights: fit"):
        Ensemble(voters, "weighted").classify("x")


DEV = ["d1", "d2", "d3", "d4"]
GOLD = ["a", "b", "c", "a"]
A, B, C = [0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]


def dev_voters():
    # v1 right on all 4, v2 on 1 (below chance 1/3), v3 on 2
    v1 = table("v1", {"d1": A, "d2": B, "d3": C, "d4": A, "x": [0.2, 0.5, 0.3]})
    v2 = table("v2", {"d1": A, "d2": C, "d3": A, "d4": B, "x": [0.0, 0.0, 1.0]})
    v3 = table("v3", {"d1": A, "d2": B, "d3": A, "d4": B, "x": [0.9, 0.05, 0.05]})
    return [v1, v2, v3]


def test_weighted_weights_are_dev_accuracy_above_chance():
    ensemble = Ensemble(dev_voters(), "weighted").fit(DEV, GOLD)
    # above chance: v1 1 - 1/3, v2 0 (clipped), v3 1/2 - 1/3 -> normalised 0.8, 0, 0.2
    assert ensemble.weights == pytest.approx([0.8, 0.0, 0.2])
    # x: 0.8 * (0.2, 0.5, 0.3) + 0.2 * (0.9, 0.05, 0.05) = (0.34, 0.41, 0.25) -> b
    # (weights by plain accuracy, 1 : 0.25 : 0.5, would give a; equal weights c)
    result = ensemble.classify("x")
    assert result.label == "b" and result.agreement == pytest.approx(1 / 3)
    # the mean follows v2's certainty: (0.367, 0.183, 0.45) -> c
    assert Ensemble(dev_voters(), "mean").classify("x").label == "c"


def test_weighted_falls_back_to_equal_weights_when_no_voter_beats_chance():
    wrong = [table(f"v{i}", {"d1": B, "d2": C, "d3": A, "d4": B}) for i in range(2)]
    assert Ensemble(wrong, "weighted").fit(DEV, GOLD).weights == pytest.approx([0.5, 0.5])


def test_calibration_softens_overconfidence_and_sharpens_underconfidence():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 3, 200)
    sure = np.full((200, 3), 0.005)
    pred = np.where(rng.random(200) < 0.6, gold, (gold + 1) % 3)  # right 60 % of the time, always 99 % sure
    sure[np.arange(200), pred] = 0.99
    t = calibrate(sure, gold)
    assert t > 1 and t in TEMPERATURES
    shy = np.full((200, 3), 0.3)
    shy[np.arange(200), gold] = 0.4  # always right, only 40 % sure
    assert calibrate(shy, gold) < 1


def test_fit_calibrates_the_confidence():
    overconfident = [table("v1", {"d1": [0.98, 0.01, 0.01], "d2": [0.98, 0.01, 0.01], "d3": [0.01, 0.01, 0.98],
                                  "d4": [0.01, 0.98, 0.01], "x": [0.98, 0.01, 0.01]}),
                     table("v2", {"d1": [0.98, 0.01, 0.01], "d2": [0.98, 0.01, 0.01], "d3": [0.01, 0.01, 0.98],
                                  "d4": [0.01, 0.98, 0.01], "x": [0.98, 0.01, 0.01]})]
    ensemble = Ensemble(overconfident, "mean")
    raw = ensemble.classify("x").confidence
    ensemble.fit(DEV, GOLD)  # right on 2 of 4 while 98 % sure
    assert ensemble.temperature > 1 and ensemble.classify("x").confidence < raw
    assert ensemble.classify("x").label == "a"  # calibration never changes the label


def test_ensemble_refuses_bad_setups():
    with pytest.raises(ValueError, match="unknown rule 'vote'"):
        Ensemble([fixed("v", A)], "vote")
    with pytest.raises(ValueError, match="voter 'w' has labels"):
        Ensemble([fixed("v", A), fixed("w", [0.5, 0.5], ("a", "b"))])
    with pytest.raises(ValueError, match="voter names must differ"):
        Ensemble([fixed("v", A), fixed("v", B)])
    with pytest.raises(ValueError, match="dev labels not in the label set: \\['z'\\]"):
        Ensemble(dev_voters(), "mean").fit(["d1"], ["z"])


def test_ensemble_adds_up_its_voters_work():
    out = SimpleNamespace(probs=(1, 0, 0), n_tokens=10, seconds=0.25)
    result = Ensemble([Voter("v1", lambda t: out, ABC), Voter("v2", lambda t: out, ABC)], "mean").classify("x")
    assert result.n_tokens == 20 and result.seconds == 0.5


# ---- cascade ----

AB = ("a", "b")


def sure(p: float, label: str = "a") -> list[float]:
    """Probabilities over AB with confidence p in `label`."""
    return [p, 1 - p] if label == "a" else [1 - p, p]


def test_cascade_routes_by_threshold_and_reports_the_work():
    small = Voter("small", lambda t: SimpleNamespace(probs=sure(0.9 if t == "easy" else 0.55), n_tokens=10,
                                                     seconds=0.1), AB)
    big = Voter("big", lambda t: SimpleNamespace(probs=sure(0.8, "b"), n_tokens=30, seconds=1.0), AB)
    cascade = Cascade([small, big], thresholds=[0.7])
    easy = cascade.classify("easy")
    assert (easy.label, easy.answered_by, easy.asked, easy.n_tokens, easy.seconds) == ("a", "small", ("small",), 10, 0.1)
    hard = cascade.classify("hard")
    assert (hard.label, hard.answered_by, hard.asked, hard.n_tokens) == ("b", "big", ("small", "big"), 40)
    assert hard.seconds == pytest.approx(1.1) and hard.confidence == pytest.approx(0.8)
    with pytest.raises(ValueError, match="no thresholds: fit"):
        Cascade([small, big]).classify("x")
    with pytest.raises(ValueError, match="give 1 thresholds"):
        Cascade([small, big], thresholds=[0.5, 0.5])


def two_stage(tolerance: float) -> Cascade:
    # 10 dev items, all "a". small: sure (0.9) and right on 6; 0.6 on 2 (one right); 0.5... on 2 (both wrong).
    small = {f"x{i}": sure(0.9) for i in range(6)}
    small |= {"x6": sure(0.6), "x7": sure(0.6, "b"), "x8": sure(0.55, "b"), "x9": sure(0.55, "b")}
    voters = [table("small", small, AB, cost=1.0), table("big", {f"x{i}": sure(0.7) for i in range(10)}, AB, cost=10.0)]
    return Cascade(voters).fit([f"x{i}" for i in range(10)], ["a"] * 10, tolerance=tolerance)


def test_cascade_fit_keeps_accuracy_within_a_point_at_least_cost():
    cascade = two_stage(0.01)
    # accept at 0.55: 0.6 right; at 0.6: 0.9 right (cost 10 + 20); at 0.9: 1.0 right (cost 10 + 40); never: 1.0, 110
    assert cascade.thresholds == (0.9,)
    assert cascade.dev == {"accuracy": 1.0, "cost": 50.0, "best_accuracy": 1.0, "biggest_accuracy": 1.0,
                           "biggest_cost": 100.0}
    assert cascade.classify("x0").answered_by == "small" and cascade.classify("x6").answered_by == "big"


def test_cascade_fit_tolerance_trades_accuracy_for_compute():
    cascade = two_stage(0.1)
    assert cascade.thresholds == (0.6,) and cascade.dev["accuracy"] == pytest.approx(0.9)
    assert cascade.dev["cost"] == 30.0


def test_three_stage_cascade_picks_each_threshold():
    items = ["x1", "x2", "x3", "x4"]
    small = table("small", {"x1": sure(0.9), "x2": sure(0.6, "b"), "x3": sure(0.6, "b"), "x4": sure(0.6, "b")}, AB, 1.0)
    middle = table("middle", {"x1": sure(0.9), "x2": sure(0.8), "x3": sure(0.7, "b"), "x4": sure(0.7, "b")}, AB, 3.0)
    big = table("big", {x: sure(0.6) for x in items}, AB, 10.0)
    cascade = Cascade([small, middle, big]).fit(items, ["a"] * 4)
    # small takes x1, middle x2, big x3 and x4: cost 4 * 1 + 3 * 3 + 2 * 10 = 33, every answer right
    assert cascade.thresholds == (0.9, 0.8) and cascade.dev["cost"] == 33.0 and cascade.dev["accuracy"] == 1.0
    assert [cascade.classify(x).answered_by for x in items] == ["small", "middle", "big", "big"]


def test_cascade_never_worse_than_the_biggest_by_more_than_the_tolerance_when_small_is_useless():
    items = [f"x{i}" for i in range(5)]
    small = table("small", {x: sure(0.95, "b") for x in items}, AB, 1.0)  # sure and always wrong
    big = table("big", {x: sure(0.6) for x in items}, AB, 10.0)
    cascade = Cascade([small, big]).fit(items, ["a"] * 5)
    assert cascade.thresholds == (float("inf"),) and all(cascade.classify(x).answered_by == "big" for x in items)


def test_cascade_fit_aims_at_the_best_thresholds_not_at_a_weak_biggest_voter():
    # the biggest voter is at chance; the small one is right when sure (0.9) and wrong when not (0.6); the middle
    # one is right on everything. The old bar (the biggest's accuracy) took the small voter alone, at 0.5.
    items = [f"x{i}" for i in range(10)]
    small = table("small", {x: sure(0.9) if i < 5 else sure(0.6, "b") for i, x in enumerate(items)}, AB, 1.0)
    middle = table("middle", {x: sure(0.8) for x in items}, AB, 3.0)
    big = table("big", {x: sure(0.6) if i % 2 else sure(0.6, "b") for i, x in enumerate(items)}, AB, 10.0)
    cascade = Cascade([small, middle, big]).fit(items, ["a"] * 10)
    assert cascade.dev["accuracy"] == 1.0 == cascade.dev["best_accuracy"] and cascade.dev["biggest_accuracy"] == 0.5
    assert cascade.thresholds[0] == 0.9 and cascade.thresholds[1] <= 0.8  # small when sure, else middle
    assert [cascade.classify(x).answered_by for x in items] == ["small"] * 5 + ["middle"] * 5
