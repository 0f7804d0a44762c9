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


def test_columns_without_enough_labels_stay_identity_and_nan_labels_are_ignored() -> None:
    raw, y = _overconfident(n=500)
    labels = np.column_stack([y, np.full_like(y, np.nan)])
    labels[:100, 0] = np.nan
    scores = np.column_stack([raw, raw])
    cal = CategoryCalibrator().fit(scores, labels)
    assert cal.fitted_.tolist() == [True, False]
    out = cal.transform(scores)
    np.testing.assert_array_equal(out[:, 1], raw)
    assert not np.allclose(out[:, 0], raw)
    assert np.isnan(cal.transform(np.array([[np.nan, 0.5]]))[0, 0])


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
