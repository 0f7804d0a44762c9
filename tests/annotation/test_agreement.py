"""Agreement measures against values computed by hand (the arithmetic is in each comment)."""

from __future__ import annotations

import math

import pytest

from bastion.annotation import Annotation, PathStep
from bastion.annotation.agreement import (
    acceptance,
    cohen_kappa,
    gold_accuracy,
    krippendorff_alpha,
    label_alpha,
    low_agreement,
    pairwise_kappa,
    step_alpha,
)


def test_alpha_for_two_coders() -> None:
    # Coincidences: o_aa = 2, o_ab = o_ba = 1, o_bb = 4; n_a = 3, n_b = 5, n = 8.
    # alpha = 1 - (n - 1) * (o_ab + o_ba) / (n_a n_b + n_b n_a) = 1 - 7 * 2 / 30 = 0.5333.
    units = [["a", "a"], ["a", "b"], ["b", "b"], ["b", "b"]]
    assert krippendorff_alpha(units) == pytest.approx(1 - 14 / 30)


def test_alpha_with_missing_values_and_three_coders() -> None:
    # Unit 1 (a, a): o_aa += 2. Unit 2 (a, b, b), m = 3, each ordered pair weighs 1/2:
    # o_ab += 1, o_ba += 1, o_bb += 1. Unit 3 has one value: left out.
    # n_a = 3, n_b = 2, n = 5: alpha = 1 - 4 * 2 / (2 * 3 * 2) = 1/3.
    units = [["a", "a", None], ["a", "b", "b"], [None, None, "a"]]
    assert krippendorff_alpha(units) == pytest.approx(1 / 3)


def test_alpha_extremes() -> None:
    assert krippendorff_alpha([["a", "a"], ["b", "b"]]) == 1.0
    assert krippendorff_alpha([["a", "b"], ["b", "a"]]) < 0  # worse than chance
    assert math.isnan(krippendorff_alpha([["a", "a"], ["a", "a"]]))  # one value: undefined
    assert math.isnan(krippendorff_alpha([["a"], ["b", None]]))  # no pairs


def test_cohen_kappa_by_hand() -> None:
    # Observed 3/4; chance: first is a/b half and half, second a 1/4, b 3/4:
    # 0.5 * 0.25 + 0.5 * 0.75 = 0.5; kappa = (0.75 - 0.5) / 0.5 = 0.5.
    assert cohen_kappa(["a", "a", "b", "b"], ["a", "b", "b", "b"]) == pytest.approx(0.5)
    assert cohen_kappa(["a", "b"], ["a", "b"]) == 1.0
    assert math.isnan(cohen_kappa(["a", "a"], ["a", "a"]))
    with pytest.raises(ValueError, match="same items"):
        cohen_kappa(["a"], ["a", "b"])


def test_pairwise_kappa_uses_the_items_both_labelled() -> None:
    labels = {
        "ann1": {"i1": 1, "i2": 1, "i3": 0, "i4": 0},
        "ann2": {"i1": 1, "i2": 0, "i3": 0, "i4": 0, "i9": 1},
        "ann3": {"i9": 0},
    }
    pairs = pairwise_kappa(labels)
    kappa, n = pairs[("ann1", "ann2")]
    assert n == 4 and kappa == pytest.approx(0.5)
    assert pairs[("ann1", "ann3")][1] == 0 and math.isnan(pairs[("ann1", "ann3")][0])


def _ann(violation: bool, *answers: tuple[str, str]) -> Annotation:
    return Annotation(
        category="c",
        path=[PathStep(step=s, answer=a) for s, a in answers],
        violation=violation,
        severity=2 if violation else 0,
        policy_version="p",
    )


def test_step_alpha_compares_only_those_who_reached_the_step() -> None:
    items = {
        "i1": [_ann(True, ("target", "yes"), ("harm", "yes")), _ann(True, ("target", "Yes"), ("harm", "yes"))],
        "i2": [_ann(False, ("target", "no")), _ann(False, ("target", "yes"), ("harm", "no"))],
        "i3": [_ann(False, ("target", "yes"), ("harm", "no")), _ann(True, ("target", "yes"), ("harm", "yes"))],
        "i4": [_ann(False, ("target", "no")), _ann(False, ("target", "no"))],
    }  # fmt: skip
    alphas = step_alpha(items)
    # target: units (yes,yes) (no,yes) (yes,yes) (no,no): o_yy = 4, o_yn = o_ny = 1, o_nn = 2;
    # n_y = 5, n_n = 3, n = 8: alpha = 1 - 7 * 2 / 30.
    assert alphas["target"] == pytest.approx(1 - 14 / 30)
    # harm: i1 (yes,yes), i2 has one answer (left out), i3 (no,yes): o_yy = 2, o_ny = o_yn = 1;
    # n_y = 3, n_n = 1, n = 4: alpha = 1 - 3 * 2 / 6 = 0.
    assert alphas["harm"] == pytest.approx(0.0)
    assert low_agreement(alphas) == ["harm", "target"]
    # Final label: (T,T) (F,F) (F,T) (F,F): o_tt = 2, o_ft = o_tf = 1, o_ff = 4: 1 - 14/30.
    assert label_alpha(items) == pytest.approx(1 - 14 / 30)


def test_gold_accuracy_per_annotator() -> None:
    labels = {"ann1": {"g1": 1, "g2": 0, "x": 1}, "ann2": {"g1": 0, "x": 0}, "ann3": {"x": 1}}
    gold = {"g1": 1, "g2": 1}
    accuracy = gold_accuracy(labels, gold)
    assert accuracy["ann1"] == (0.5, 2) and accuracy["ann2"] == (0.0, 1)
    assert math.isnan(accuracy["ann3"][0]) and accuracy["ann3"][1] == 0


def test_acceptance_in_the_shown_and_blind_slices() -> None:
    yes, no = _ann(True, ("target", "yes")), _ann(False, ("target", "no"))
    pairs = [
        (yes, yes, False), (yes, yes, False), (no, no, False), (yes, no, False),  # shown: 3/4
        (yes, no, True), (no, no, True),  # blind: 1/2
    ]  # fmt: skip
    rates = acceptance(pairs)
    assert rates["shown"] == (0.75, 4) and rates["blind"] == (0.5, 2)
    only_shown = acceptance(pairs[:4])
    assert math.isnan(only_shown["blind"][0]) and only_shown["blind"][1] == 0
