"""Calibration makes scores mean what they say; thresholds meet the target they were chosen for."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.eval.metrics import expected_calibration_error
from bastion.models.calibration import (
    CategoryCalibrator,
    threshold_for_fpr,
    threshold_for_precision,
)


def _overconfident(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """True probability p; the raw score pushes it towards 0/1 (overconfident)."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.02, 0.98, size=n)
    y = (rng.uniform(size=n) < p).astype(float)
    raw = 1 / (1 + np.exp(-4 * np.log(p / (1 - p))))
    return raw, y


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibration_reduces_calibration_error_on_held_out_data(method: str) -> None:
    raw, y = _overconfident(seed=0)
    raw_test, y_test = _overconfident(seed=1)
    cal = CategoryCalibrator(method).fit(raw[:, None], y[:, None])  # type: ignore[arg-type]
    before = expected_calibration_error(y_test, raw_test)
    after = expected_calibration_error(y_test, cal.transform(raw_test[:, None])[:, 0])
    assert before > 0.1 and after < 0.04
    # Calibration keeps the ranking (monotone).
    order = np.argsort(raw_test)
    assert np.all(np.diff(cal.transform(raw_test[order][:, None])[:, 0]) >= -1e-12)


def test_columns_without_enough_labels_share_the_pool_and_nan_labels_are_ignored() -> None:
    raw, y = _overconfident(n=500)
    labels = np.column_stack([y, np.full_like(y, np.nan)])
    labels[:100, 0] = np.nan
    scores = np.column_stack([raw, raw])
    cal = CategoryCalibrator().fit(scores, labels)
    assert cal.fitted_.tolist() == [True, False] and cal.pooled_.tolist() == [False, True]
    out = cal.transform(scores)
    np.testing.assert_allclose(out[:, 1], out[:, 0])  # the pool holds only column 0's cells
    assert not np.allclose(out[:, 0], raw)
    assert np.isnan(cal.transform(np.array([[np.nan, 0.5]]))[0, 0])
    # With no labels anywhere there is nothing to pool: the scores pass through unchanged.
    bare = CategoryCalibrator().fit(scores, np.full_like(labels, np.nan))
    assert not bare.pooled_.any()
    np.testing.assert_array_equal(bare.transform(scores), scores)


def test_threshold_for_precision_hand_example() -> None:
    y = np.array([1, 1, 0, 1, 0, 0, 1, 0], dtype=float)
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    # Precision at cut 0.6: 3/4 = 0.75; at 0.8: 2/2; at 0.3: 4/7; at 0.2: 4/8.
    assert threshold_for_precision(y, s, 0.75) == pytest.approx(0.6)
    assert threshold_for_precision(y, s, 0.9) == pytest.approx(0.8)
    assert threshold_for_precision(y, s, 0.5) == pytest.approx(0.2)
    assert threshold_for_precision(y, s, 0.55) == pytest.approx(0.3)
    assert threshold_for_precision(np.zeros(3), s[:3], 0.5) is None


def test_threshold_for_fpr_hand_example() -> None:
    y = np.array([1, 1, 0, 1, 0, 0, 1, 0], dtype=float)
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    t = threshold_for_fpr(y, s, 0.25)  # 4 negatives: one false positive allowed
    assert t is not None and 0.5 < t <= 0.7 and ((s >= t) & (y == 0)).sum() == 1
    t0 = threshold_for_fpr(y, s, 0.0)
    assert t0 is not None and ((s >= t0) & (y == 0)).sum() == 0 and t0 > 0.7


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.floats(0, 1)), min_size=1, max_size=60),
    st.floats(0.0, 1.0),
)
def test_chosen_thresholds_meet_their_targets(
    rows: list[tuple[bool, float]], target: float
) -> None:
    y = np.array([float(a) for a, _ in rows])
    s = np.array([b for _, b in rows])
    t = threshold_for_precision(y, s, target)
    if t is not None:
        flagged = s >= t
        assert y[flagged].mean() >= target - 1e-9
    f = threshold_for_fpr(y, s, target)
    if f is not None and (y == 0).any():
        assert ((s >= f) & (y == 0)).sum() <= np.floor(target * (y == 0).sum()) + 1e-9


def test_rare_columns_get_the_pooled_map_not_identity() -> None:
    """Column 1 has 2 held-out positives: too few for its own map, so it shares the map fit on
    all columns together, which corrects the same over-statement that column 0 shows."""
    rng = np.random.default_rng(0)
    n = 2000
    y0 = (rng.random(n) < 0.3).astype(float)
    raw0 = np.clip(0.45 + 0.5 * y0 + rng.normal(0, 0.15, n), 0.01, 0.99)  # over-states
    y1 = np.full(n, np.nan)
    y1[:200] = 0.0
    y1[:2] = 1.0
    raw1 = np.clip(0.6 + rng.normal(0, 0.1, n), 0.01, 0.99)
    cal = CategoryCalibrator("platt").fit(np.column_stack([raw0, raw1]), np.column_stack([y0, y1]))
    assert cal.fitted_.tolist() == [True, False] and cal.pooled_.tolist() == [False, True]
    out = cal.transform(np.column_stack([raw0, raw1]))
    assert out[:, 1].mean() < raw1.mean() - 0.2  # no longer the raw, inflated score


def test_raise_for_flag_rate_is_the_least_shift_that_meets_the_cap() -> None:
    from bastion.models.calibration import raise_for_flag_rate

    scores = np.array([[0.9, 0.1], [0.7, 0.2], [0.6, 0.65], [0.2, 0.3], [0.99, 0.99]])
    th = np.array([0.5, 0.5])
    group = np.arange(4)  # row 4 is not in any safe group
    new, shift = raise_for_flag_rate(scores, th, [group], max_rate=0.25)
    flagged = (scores[group] >= new).any(axis=1)
    assert flagged.sum() == 1 and flagged[0]  # only the most confident safe row stays flagged
    # the shift is minimal: just above the second-highest margin (row 1: logit 0.7 - logit 0.5)
    margin = np.log(0.7 / 0.3)
    assert margin < shift < margin + 1e-6
    same, zero = raise_for_flag_rate(scores, th, [group], max_rate=1.0)
    assert zero == 0.0 and same.tolist() == th.tolist()
    fixed, _ = raise_for_flag_rate(scores, th, [group], 0.0, adjustable=np.array([True, False]))
    assert fixed[1] == 0.5 and fixed[0] > 0.9


def test_binary_shift_finds_the_best_f_beta_of_the_any_category_flag() -> None:
    from bastion.models.calibration import shift_for_binary_fbeta

    # Two categories; the any-category flag is what a user sees. Violations 0-3, safe 4-7.
    scores = np.array(
        [
            [0.9, 0.1],
            [0.1, 0.45],
            [0.4, 0.2],
            [0.1, 0.3],
            [0.35, 0.1],
            [0.2, 0.2],
            [0.1, 0.1],
            [0.05, 0.05],
        ]
    )
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0], float)
    th = np.array([0.5, 0.5])
    f1_th, f1_shift = shift_for_binary_fbeta(scores, th, y, beta=1.0)
    f1_flags = (scores >= f1_th).any(axis=1)
    # Best F1: flag rows 0-3 and the safe row 4 (F1 8/9) beats rows 0-2 only (F1 6/7).
    assert f1_flags.tolist() == [True] * 5 + [False] * 3
    assert f1_shift < 0  # thresholds went down
    # A brute force over every distinct shift agrees that no shift has a better F1.
    margins = np.log(scores / (1 - scores)) - np.log(th / (1 - th))
    for d in np.unique(margins):
        flags = (margins >= d).any(axis=1)
        tp = (flags & (y == 1)).sum()
        assert 2 * tp / (flags.sum() + 4) <= 8 / 9 + 1e-12
    # Favouring recall more never flags fewer rows; a fixed column is never moved.
    f4_th, _ = shift_for_binary_fbeta(scores, th, y, beta=4.0)
    assert (scores >= f4_th).any(axis=1).sum() >= f1_flags.sum()
    kept, _ = shift_for_binary_fbeta(scores, th, y, 1.0, adjustable=np.array([True, False]))
    assert kept[1] == 0.5


def test_binary_shift_counts_rows_no_shift_can_change_and_skips_unknown_labels() -> None:
    from bastion.models.calibration import shift_for_binary_fbeta

    # Row 0 is flagged by the fixed column whatever the shift; row 3's label is unknown.
    scores = np.array([[0.1, 0.9], [0.8, 0.1], [0.3, 0.1], [0.99, 0.1], [0.6, 0.1]])
    y = np.array([0, 1, 1, np.nan, 0], float)
    th, shift = shift_for_binary_fbeta(
        scores, np.array([0.5, 0.5]), y, 1.0, adjustable=np.array([True, False])
    )
    flags = (scores >= th).any(axis=1)
    # Flagging rows 1, 2 and 4 as well (F1 2/3 with row 0's fixed flag) beats row 1 alone (1/2).
    assert flags[[0, 1, 2, 4]].tolist() == [True, True, True, True]
    assert th[1] == 0.5 and shift < 0
