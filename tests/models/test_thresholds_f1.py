"""The F1 threshold: the cut with the best F1, flagging every score at or above it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.models.artifact import ThresholdTarget
from bastion.models.calibration import threshold_for_f1

nan = np.nan


def _best_f1_by_brute_force(y: np.ndarray, score: np.ndarray) -> float | None:
    """Every distinct score tried as "flag score >= t"; the best F1, ties to the lowest t."""
    keep = np.isfinite(y) & np.isfinite(score)
    y, score = y[keep], score[keep]
    if y.sum() == 0:
        return None
    best_t, best_f1 = None, -1.0
    for t in sorted(set(score.tolist()), reverse=True):
        flagged = score >= t
        tp = float((flagged & (y == 1)).sum())
        f1 = 2 * tp / (flagged.sum() + y.sum())
        if f1 >= best_f1 - 1e-12:
            best_t, best_f1 = t, max(f1, best_f1)
    return best_t


def test_picks_the_cut_with_the_best_f1() -> None:
    # Flagging the top k rows: F1 = 2 TP / (k + 3 positives)
    # k=1: 2/4 = .50, k=2: 2/5 = .40, k=3: 4/6 = .67, k=4: 6/7 = .86, k=5: 6/8 = .75, k=6: 6/9.
    score = np.array([0.5, 0.9, 0.4, 0.7, 0.8, 0.6])  # not in order
    y = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    assert threshold_for_f1(y, score) == 0.6


def test_equal_f1_prefers_the_lower_threshold() -> None:
    # k=1: 2/3 and k=4: 4/6 are both 0.667 (k=2: .5, k=3: .4): the lower cut catches more.
    y = np.array([1.0, 0.0, 0.0, 1.0])
    score = np.array([0.9, 0.8, 0.7, 0.6])
    assert threshold_for_f1(y, score) == 0.6


def test_rows_with_equal_scores_are_flagged_together() -> None:
    # Cutting inside the tie at 0.5 after the positive would claim F1 = 1 at threshold 0.5, but a
    # threshold of 0.5 flags all four rows at 0.5: F1 = 4/7. At 0.9 it is 2/3, the real best.
    y = np.array([1.0, 1.0, 0.0, 0.0, 0.0])
    score = np.array([0.9, 0.5, 0.5, 0.5, 0.5])
    assert threshold_for_f1(y, score) == 0.9


def test_no_positive_gives_none() -> None:
    assert threshold_for_f1(np.zeros(4), np.array([0.1, 0.2, 0.3, 0.4])) is None
    # The only positive has no score: still no positive to cut for.
    assert threshold_for_f1(np.array([0.0, 1.0, 0.0]), np.array([0.2, nan, 0.4])) is None


def test_unknown_labels_and_scores_are_left_out() -> None:
    y = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    score = np.array([0.5, 0.9, 0.4, 0.7, 0.8, 0.6])
    # A high-scoring row of unknown label, a positive with no score, a negative with no score.
    y_more = np.r_[y, nan, 1.0, 0.0]
    score_more = np.r_[score, 0.95, nan, nan]
    assert threshold_for_f1(y_more, score_more) == threshold_for_f1(y, score) == 0.6


def test_the_target_value_plays_no_part() -> None:
    # The training code passes the recipe's threshold value to every picker; F1 has none.
    y = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    score = np.array([0.9, 0.8, 0.3, 0.6, 0.2])
    assert threshold_for_f1(y, score, 0.1) == threshold_for_f1(y, score, 0.99)
    assert ThresholdTarget(kind="f1").value == 1.0  # no value needed in a recipe


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0.0, 1.0, nan]), st.integers(0, 6)), min_size=1, max_size=25
    )
)
def test_agrees_with_trying_every_threshold(rows: list[tuple[float, int]]) -> None:
    # Scores from a few levels, so ties are common.
    y = np.array([r[0] for r in rows])
    score = np.array([r[1] / 6 for r in rows])
    assert threshold_for_f1(y, score) == _best_f1_by_brute_force(y, score)


@pytest.mark.parametrize("seed", [0, 1])
def test_fit_model_with_an_f1_target_uses_the_f1_cut(seed: int) -> None:
    """A recipe's `threshold: {kind: f1}` sets each fitted category's threshold at the best F1 of
    its calibrated held-out scores."""
    art, scores, y = _fit_one_category(seed, {"kind": "f1"})
    expected = threshold_for_f1(y, scores)
    assert expected is not None
    category = art.manifest.categories[0]
    assert art.manifest.thresholds[category] == pytest.approx(expected, abs=1e-6)
    assert art.manifest.threshold_target.kind == "f1"
    assert "threshold_binary_shift" not in art.manifest.metrics


def test_fit_model_with_a_binary_beta_moves_the_cut_to_the_best_f_beta_of_any_flag() -> None:
    """`binary_beta` shifts the fitted thresholds together for the best F-beta of "any category"
    on the calibration rows, records the shift, and leaves the policy's defaults where they are."""
    from bastion.models.calibration import threshold_for_fbeta

    art, scores, y = _fit_one_category(0, {"kind": "f1", "binary_beta": 3.0})
    category = art.manifest.categories[0]
    # One fitted category: the any-category flag is its flag, so the cut is its best F3.
    expected = threshold_for_fbeta(y, scores, 3.0)
    assert expected is not None and expected < threshold_for_f1(y, scores)  # type: ignore[operator]
    assert art.manifest.thresholds[category] == pytest.approx(expected, abs=1e-6)
    assert art.manifest.metrics["threshold_binary_shift"] < 0
    plain, _, _ = _fit_one_category(0, {"kind": "f1"})
    others = art.manifest.categories[1:]  # not calibrated: the policy's thresholds, not moved
    assert [art.manifest.thresholds[c] for c in others] == [
        plain.manifest.thresholds[c] for c in others
    ]


def _fit_one_category(
    seed: int, threshold: dict[str, object]
) -> tuple[Any, np.ndarray, np.ndarray]:
    """A model fitted on rows labelled for the first category only; its calibrated scores and
    labels on the calibration split."""
    from bastion.models.artifact import TrainingSource
    from bastion.policy import load_policy
    from bastion.training.data import TrainingData, training_split
    from bastion.training.fit import fit_model
    from bastion.training.recipe import Recipe

    policy = load_policy("openai")
    n_cat = len(policy.category_ids)
    rng = np.random.default_rng(seed)
    dim = 8
    proto = rng.normal(size=dim)
    n = 600
    violating = rng.uniform(size=n) < 0.3
    X = np.asarray(
        np.where(violating[:, None], 0.8, -0.8) * proto + rng.normal(size=(n, dim)), np.float32
    )
    Y = np.full((n, n_cat), nan)
    Y[:, 0] = violating
    sources = [TrainingSource(name="s", licence="x", use="ship-ok", rows=n, positives=300)]
    data = TrainingData([f"t{i}" for i in range(n)], Y, np.zeros(n, np.int64), sources)
    recipe = Recipe.model_validate(
        {
            "name": "f1",
            "sources": [],
            "min_positives": 1,
            "head": {"epochs": 40, "lr": 0.02},
            "zero_shot_weight": 0,
            "threshold": threshold,
        }
    )
    zero_shot = np.full((n, n_cat), 0.5)
    art = fit_model(recipe, policy, data, X, zero_shot, "enc", dim)
    _, _, cal = training_split(recipe, policy, data)
    assert art.calibrator.fitted_[0]
    return art, art.predict_proba(X[cal], zero_shot[cal])[:, 0], Y[cal, 0]
