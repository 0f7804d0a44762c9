"""Evaluation metrics on small hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from bastion.eval.metrics import (
    binary_metrics,
    expected_calibration_error,
    pr_curve,
    recall_at_fpr,
    reliability,
)

NAN = float("nan")

# Ranked by score: 0.9 (+), 0.8 (+), 0.7 (-), 0.6 (+), 0.3 (+), 0.2 (-), 0.1 (-), 0.05 (-).
Y = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=float)
S = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.2, 0.1, 0.05])


def test_precision_recall_f1_at_a_threshold() -> None:
    m = binary_metrics(Y, S, threshold=0.65)
    # Flagged: 0.9, 0.8 (true positives) and 0.7 (false positive).
    assert m.n == 8
    assert m.positives == 4
    assert m.prevalence == 0.5
    assert m.threshold == 0.65
    assert m.precision == pytest.approx(0.6667)
    assert m.recall == 0.5
    assert m.f1 == pytest.approx(0.5714)  # 2 * (2/3 * 1/2) / (2/3 + 1/2) = 4/7


def test_score_equal_to_threshold_is_flagged() -> None:
    m = binary_metrics(Y, S, threshold=0.6)
    # 0.6 itself is flagged: tp = 3 (0.9, 0.8, 0.6), fp = 1 (0.7).
    assert m.precision == 0.75
    assert m.recall == 0.75
    assert m.f1 == 0.75


def test_auprc_matches_sklearn_and_hand_value() -> None:
    m = binary_metrics(Y, S, threshold=0.5)
    # Precision at each positive's rank: 1/1, 2/2, 3/4, 4/5 -> mean 0.8875.
    assert m.auprc == pytest.approx(0.8875)
    assert m.auprc == pytest.approx(round(float(average_precision_score(Y, S)), 4))
    assert m.roc_auc == pytest.approx(14 / 16)  # 14 of 16 (pos, neg) pairs ranked correctly


def test_recall_at_fpr_hand_example() -> None:
    # With 4 negatives, FPR moves in steps of 0.25. At FPR 0 only 0.9 and 0.8 are caught.
    assert recall_at_fpr(Y, S, 0.05) == 0.5
    assert recall_at_fpr(Y, S, 0.0) == 0.5
    # Allowing one false positive (0.7) catches 0.6 and 0.3 too.
    assert recall_at_fpr(Y, S, 0.25) == 1.0
    assert binary_metrics(Y, S, 0.5).recall_at_5pct_fpr == 0.5


def test_recall_at_fpr_with_many_negatives() -> None:
    # 20 negatives: 5% FPR allows exactly one negative above the cut.
    y = np.array([1.0] * 4 + [0.0] * 20)
    s = np.array([0.95, 0.9, 0.5, 0.4] + [0.8] + [0.45] + [0.1] * 18)
    assert recall_at_fpr(y, s, 0.05) == 0.75  # cut at 0.5: 3 positives, 1 negative (0.8)
    assert recall_at_fpr(y, s, 0.04) == 0.5  # no negative allowed: cut above 0.8


def test_nan_labels_are_dropped_not_counted_as_negative() -> None:
    y = np.concatenate([Y, [NAN, NAN, NAN]])
    s = np.concatenate([S, [0.99, 0.0, 0.5]])
    with_nan = binary_metrics(y, s, threshold=0.65)
    assert with_nan.n == 8
    assert with_nan == binary_metrics(Y, S, threshold=0.65)


def test_nan_scores_are_dropped() -> None:
    y = np.concatenate([Y, [1.0]])
    s = np.concatenate([S, [NAN]])
    m = binary_metrics(y, s, threshold=0.65)
    assert m.n == 8
    assert m.positives == 4


def test_all_positive_labels_give_no_auprc_and_a_note() -> None:
    m = binary_metrics(np.ones(3), np.array([0.9, 0.2, 0.6]), threshold=0.5)
    assert m.n == 3
    assert m.positives == 3
    assert m.prevalence == 1.0
    assert m.auprc is None
    assert m.roc_auc is None
    assert m.recall_at_5pct_fpr is None
    assert m.note is not None
    assert "only positives" in m.note
    assert m.precision == 1.0
    assert m.recall == pytest.approx(0.6667)
    assert m.f1 == pytest.approx(0.8)


def test_no_positive_labels() -> None:
    m = binary_metrics(np.zeros(3), np.array([0.9, 0.2, 0.6]), threshold=0.5)
    assert m.positives == 0
    assert m.auprc is None
    assert m.recall is None
    assert m.precision == 0.0
    assert m.note == "no positives"


def test_no_labelled_rows() -> None:
    m = binary_metrics(np.array([NAN, NAN]), np.array([0.9, 0.1]), threshold=0.5)
    assert m.n == 0
    assert m.auprc is None
    assert m.precision is None
    assert m.ece is None
    assert m.note == "no labelled rows"


def test_nothing_flagged_gives_f1_zero_and_no_precision() -> None:
    m = binary_metrics(Y, S, threshold=0.99)
    assert m.precision is None
    assert m.recall == 0.0
    assert m.f1 == 0.0


def test_flagged_overrides_the_threshold() -> None:
    # Threshold 0.99 flags nothing; the explicit decision flags rows 0, 3 and 4.
    flagged = np.array([True, False, False, True, True, False, False, False])
    m = binary_metrics(Y, S, threshold=0.99, flagged=flagged)
    assert m.precision == pytest.approx(0.6667)  # tp = 2 (rows 0, 3), fp = 1 (row 4)
    assert m.recall == 0.5
    # Ranking metrics still use the scores.
    assert m.auprc == pytest.approx(0.8875)


def test_flagged_is_aligned_with_rows_after_dropping_nan_labels() -> None:
    y = np.array([NAN, 1.0, 0.0, 1.0])
    s = np.array([0.5, 0.5, 0.5, 0.5])
    flagged = np.array([True, True, False, False])
    m = binary_metrics(y, s, threshold=0.0, flagged=flagged)
    assert m.n == 3
    assert m.precision == 1.0  # only row 1 is flagged among the kept rows
    assert m.recall == 0.5


def test_ece_is_zero_for_perfect_calibration() -> None:
    # Score 0.25 on four rows of which one is positive; 0.75 on four of which three are.
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0], dtype=float)
    s = np.array([0.25] * 4 + [0.75] * 4)
    assert expected_calibration_error(y, s) == pytest.approx(0.0, abs=1e-12)
    assert binary_metrics(y, s, 0.5).ece == 0.0


def test_ece_hand_computed() -> None:
    y = np.array([1, 1, 0, 0, 0], dtype=float)
    s = np.array([0.85, 0.85, 0.85, 0.15, 0.15])
    # Bin [0.8, 0.9): |2/3 - 0.85| * 3 = 0.55; bin [0.1, 0.2): |0 - 0.15| * 2 = 0.3; / 5 rows.
    assert expected_calibration_error(y, s) == pytest.approx(0.17)
    assert binary_metrics(y, s, 0.5).ece == pytest.approx(0.17)


def test_ece_single_bin_and_extremes() -> None:
    assert expected_calibration_error(np.array([1.0, 0.0]), np.array([0.95, 0.95])) == (
        pytest.approx(0.45)
    )
    # Scores of exactly 0 and 1 fall in the first and last bins.
    assert expected_calibration_error(np.array([0.0, 1.0]), np.array([0.0, 1.0])) == 0.0
    assert np.isnan(expected_calibration_error(np.array([]), np.array([])))


def test_reliability_counts_sum_to_n_and_bins_are_right() -> None:
    y = np.array([1, 0, 1, 1, NAN, 0, 1], dtype=float)
    s = np.array([0.05, 0.05, 0.55, 0.95, 0.5, 1.0, NAN])
    pred, obs, cnt = reliability(y, s)
    assert len(pred) == len(obs) == len(cnt) == 10
    assert cnt.sum() == 5  # the NaN label row and the NaN score row are dropped
    assert cnt[0] == 2
    assert cnt[5] == 1
    assert cnt[9] == 2  # 0.95 and 1.0
    assert pred[0] == pytest.approx(0.05)
    assert obs[0] == pytest.approx(0.5)
    assert obs[9] == pytest.approx(0.5)
    assert np.isnan(pred[3])
    assert np.isnan(obs[3])


def test_reliability_with_other_bin_counts() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=50).astype(float)
    s = rng.random(50)
    for bins in (1, 3, 7):
        _, _, cnt = reliability(y, s, bins=bins)
        assert len(cnt) == bins
        assert cnt.sum() == 50


def test_pr_curve_is_none_without_both_classes() -> None:
    assert pr_curve(np.ones(3), np.array([0.1, 0.2, 0.3])) is None
    curve = pr_curve(Y, S)
    assert curve is not None
    recall, precision = curve
    assert recall[0] == 1.0
    assert precision[-1] == 1.0
