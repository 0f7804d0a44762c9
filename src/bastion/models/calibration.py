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

from bastion.models.scoring import logit

Method = Literal["platt", "isotonic"]


class CategoryCalibrator:
    """One calibration map per category column; NaN labels are ignored.

    A column with too few held-out positives or negatives of its own gets the *pooled* map, fit
    on every category's held-out cells together (`pooled_` marks those columns): a head trained
    with balanced classes over-states every category alike, so leaving a rare category raw
    would make it the one that fires on everything. Only when even the pool is too small does a
    column stay uncalibrated (identity). `fitted_` marks columns with a map of their own.
    """

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
        self.pooled_ = np.zeros(n_cat, dtype=bool)
        self.isotonic_: list[tuple[np.ndarray, np.ndarray] | None] = [None] * n_cat

        Isotonic = tuple[np.ndarray, np.ndarray] | None

        def fit_one(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, Isotonic] | None:
            if y.sum() < self.min_positives or (1 - y).sum() < self.min_positives:
                return None
            if self.method == "platt":
                lr = LogisticRegression(C=1e4).fit(logit(s)[:, None], y)
                return np.array([lr.coef_[0, 0], lr.intercept_[0]]), None
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, y)
            return np.array([1.0, 0.0]), (iso.X_thresholds_, iso.y_thresholds_)

        known = np.isfinite(labels) & np.isfinite(scores)
        for j in range(n_cat):
            fit = fit_one(scores[known[:, j], j], labels[known[:, j], j])
            if fit is not None:
                self.platt_[j], self.isotonic_[j] = fit
                self.fitted_[j] = True
        if not self.fitted_.all():
            pooled = fit_one(scores[known], labels[known])
            if pooled is not None:
                for k in np.flatnonzero(~self.fitted_):
                    self.platt_[k], self.isotonic_[int(k)] = pooled
                    self.pooled_[k] = True
        return self

    def transform(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, float)
        out = scores.copy()
        for j in np.flatnonzero(self.fitted_ | self.pooled_):
            if self.method == "platt":
                a, b = self.platt_[j]
                out[:, j] = 1.0 / (1.0 + np.exp(-(a * logit(scores[:, j]) + b)))
            else:
                xs, ys = self.isotonic_[j]  # type: ignore[misc]
                out[:, j] = np.interp(scores[:, j], xs, ys)
        return np.where(np.isfinite(scores), out, np.nan)


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


def threshold_for_f1(y: np.ndarray, score: np.ndarray, _unused: float = 1.0) -> float | None:
    """The threshold with the best F1 on (y, score): the usual operating point when a flag
    costs a reviewer's look and a miss costs a harm, and neither is known to dominate.

    Ties are cut between distinct scores only; among equal F1 the lowest threshold (most
    recall) wins. None when there is no positive.
    """
    return threshold_for_fbeta(y, score, 1.0)


def threshold_for_fbeta(y: np.ndarray, score: np.ndarray, beta: float) -> float | None:
    """The threshold with the best F-beta on (y, score); beta > 1 weighs recall more (F2 counts a
    miss like four needless flags). Ties as in `threshold_for_f1`."""
    keep = np.isfinite(y) & np.isfinite(score)
    y, score = y[keep], score[keep]
    positives = y.sum()
    if positives == 0:
        return None
    order = np.argsort(-score, kind="stable")
    s, t = score[order], y[order]
    tp = np.cumsum(t)
    f = (1 + beta**2) * tp / (np.arange(1, len(t) + 1) + beta**2 * positives)
    last_of_tie = np.r_[s[1:] != s[:-1], True]
    candidates = np.flatnonzero(last_of_tie)
    best = candidates[f[candidates] >= f[candidates].max() - 1e-12][-1]
    return float(s[best])


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


def raise_for_flag_rate(
    scores: np.ndarray,
    thresholds: np.ndarray,
    safe_groups: list[np.ndarray],
    max_rate: float,
    adjustable: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Raise all (adjustable) thresholds together, in logit space, by the least amount that keeps
    every group of known-safe rows at or under `max_rate` flagged in any category.

    Why: per-category targets compound (13 categories at 2 % each flag far more than 2 % of safe
    text), and ordinary safe text is much easier than text that merely mentions a weapon or a
    drug. A team states the share of its hard safe text it can afford to flag; this finds the
    single shift that honours it for the hardest group, keeping the categories' relative order.
    Returns the new thresholds and the shift (0 when no change was needed).
    """
    th = np.asarray(thresholds, float)
    adjust = np.ones(len(th), bool) if adjustable is None else np.asarray(adjustable, bool)
    if not adjust.any():
        return th.copy(), 0.0
    best = _best_margin(scores, th, adjust)
    shift = 0.0
    for rows in safe_groups:
        if len(rows) == 0:
            continue
        allowed = int(np.floor(max_rate * len(rows)))
        ranked = np.sort(best[rows])[::-1]
        if allowed < len(ranked) and ranked[allowed] >= shift:
            # Just past that row's margin; the gap survives the round trip through sigmoid.
            shift = float(ranked[allowed]) + 1e-9
    return _shifted(th, adjust, shift), shift


def wholly_safe_groups(source: np.ndarray, binary: np.ndarray) -> list[np.ndarray]:
    """Row indices of each source whose rows are all safe (binary 0): the groups
    `raise_for_flag_rate` caps."""
    source = np.asarray(source)
    return [
        np.flatnonzero(source == s)
        for s in np.unique(source)
        if np.all(np.asarray(binary)[source == s] == 0)
    ]


def shift_for_binary_fbeta(
    scores: np.ndarray,
    thresholds: np.ndarray,
    y: np.ndarray,
    beta: float,
    adjustable: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Move all (adjustable) thresholds together, in logit space, to the shift with the best
    F-beta of "flagged in any category" against the binary labels `y` (NaN: unknown, left out).

    Why: per-category thresholds each find their own best F1, but a user sees one flag per item,
    and text in a style the model was not trained on scores lower than the calibration rows
    (leave-one-dataset-out: recall 0.4-0.5 at per-category best F1). Choosing the common shift
    for the any-category flag, with beta > 1, buys back that recall where the ranking allows.
    Returns the new thresholds and the shift (negative lowers them).
    """
    th = np.asarray(thresholds, float)
    adjust = np.ones(len(th), bool) if adjustable is None else np.asarray(adjustable, bool)
    if not adjust.any():
        return th.copy(), 0.0
    best = _best_margin(scores, th, adjust)
    # A row flagged by a fixed threshold stays flagged at any shift.
    fixed = np.asarray(scores, float)[:, ~adjust] >= th[~adjust][None, :]
    best = np.where(fixed.any(axis=1), np.inf, best)
    # Finite stand-ins, so rows that no shift changes still count (as flags or as misses).
    chosen = threshold_for_fbeta(np.asarray(y, float), np.clip(best, -1e9, 1e9), beta)
    if chosen is None:
        return th.copy(), 0.0
    shift = float(chosen) - 1e-9  # the row at the cut stays flagged after the round trip
    return _shifted(th, adjust, shift), shift


def _best_margin(scores: np.ndarray, th: np.ndarray, adjust: np.ndarray) -> np.ndarray:
    """Per row, its best margin in logit space over an adjustable threshold: the row is flagged
    while the thresholds' shift is at most this (-inf when no adjustable score is known)."""
    margin = logit(np.asarray(scores, float)[:, adjust]) - logit(th[adjust])[None, :]
    return np.asarray(np.max(np.where(np.isfinite(margin), margin, -np.inf), axis=1))


def _shifted(th: np.ndarray, adjust: np.ndarray, shift: float) -> np.ndarray:
    out = th.copy()
    out[adjust] = 1.0 / (1.0 + np.exp(-(logit(th[adjust]) + shift)))
    return out
