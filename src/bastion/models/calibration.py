"""Per-category calibration (Platt or isotonic) and threshold choice, fit on held-out data.

A raw score is only a ranking; reviewers and thresholds need probabilities that mean what they
say ("0.8" = about 8 in 10 such items violate). Calibration maps each category's raw score to
that, using held-out labels only. Thresholds are then chosen from the calibrated scores for a
target the safety team sets (a precision to hold, or a false-positive rate not to exceed), not
picked by hand.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Method = Literal["platt", "isotonic"]


class CategoryCalibrator:
    """One calibration map per category column; NaN labels are ignored, columns without both
    classes stay uncalibrated (identity), and that is recorded in `fitted_`."""

    def __init__(self, method: Method = "platt", min_positives: int = 5) -> None:
        self.method = method
        self.min_positives = min_positives

    def fit(self, scores: np.ndarray, labels: np.ndarray) -> CategoryCalibrator:
        from sklearn.isotonic import IsotonicRegression
        from sklearn.linear_model import LogisticRegression

        scores, labels = np.asarray(scores, float), np.asarray(labels, float)
        n_cat = scores.shape[1]
        self.fitted_ = np.zeros(n_cat, dtype=bool)
        self.platt_ = np.tile([1.0, 0.0], (n_cat, 1))
        self.isotonic_: list[tuple[np.ndarray, np.ndarray] | None] = [None] * n_cat
        for j in range(n_cat):
            keep = np.isfinite(labels[:, j]) & np.isfinite(scores[:, j])
            y, s = labels[keep, j], scores[keep, j]
            if y.sum() < self.min_positives or (1 - y).sum() < self.min_positives:
                continue
            if self.method == "platt":
                lr = LogisticRegression(C=1e4).fit(_logit(s)[:, None], y)
                self.platt_[j] = [lr.coef_[0, 0], lr.intercept_[0]]
            else:
                iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, y)
                self.isotonic_[j] = (iso.X_thresholds_, iso.y_thresholds_)
            self.fitted_[j] = True
        return self

    def transform(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, float)
        out = scores.copy()
        for j in np.flatnonzero(self.fitted_):
            if self.method == "platt":
                a, b = self.platt_[j]
                out[:, j] = 1.0 / (1.0 + np.exp(-(a * _logit(scores[:, j]) + b)))
            else:
                xs, ys = self.isotonic_[j]  # type: ignore[misc]
                out[:, j] = np.interp(scores[:, j], xs, ys)
        return np.where(np.isfinite(scores), out, np.nan)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.asarray(np.log(p / (1 - p)))


def threshold_for_precision(y: np.ndarray, score: np.ndarray, precision: float) -> float | None:
    """Lowest threshold whose precision on (y, score) is at least `precision` (most recall).

    None when no threshold reaches it, so the caller can say so instead of shipping a bad cut.
    """
    keep = np.isfinite(y) & np.isfinite(score)
    y, score = y[keep], score[keep]
    if y.sum() == 0:
        return None
    order = np.argsort(-score, kind="stable")
    s, t = score[order], y[order]
    tp = np.cumsum(t)
    prec = tp / np.arange(1, len(t) + 1)
    # Only cut between distinct scores: every item at the threshold is flagged.
    last_of_tie = np.r_[s[1:] != s[:-1], True]
    ok = np.flatnonzero(last_of_tie & (prec >= precision))
    return float(s[ok[-1]]) if len(ok) else None


def threshold_for_fpr(y: np.ndarray, score: np.ndarray, max_fpr: float) -> float | None:
    """Lowest threshold whose false-positive rate on (y, score) is at most `max_fpr`."""
    keep = np.isfinite(y) & np.isfinite(score)
    y, score = y[keep], score[keep]
    neg = score[y == 0]
    if len(neg) == 0:
        return None
    allowed = int(np.floor(max_fpr * len(neg)))
    ranked = np.sort(neg)[::-1]
    if allowed >= len(ranked):
        return float(ranked[-1])
    # Flag strictly above the (allowed+1)-th highest negative score.
    return float(np.nextafter(ranked[allowed], np.inf))
