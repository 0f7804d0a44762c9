"""Evaluation metrics: pure functions from labels and scores to numbers, NaN-aware.

Rows whose label is NaN (the data does not say) are dropped per metric, never counted as negative.
A metric that is undefined for the data (AUPRC with no negatives, say) is NaN with a reason, not 0.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)


class BinaryMetrics(BaseModel):
    """Metrics of one score column against one label column."""

    n: int
    positives: int
    prevalence: float
    auprc: float | None
    roc_auc: float | None
    threshold: float
    precision: float | None
    recall: float | None
    f1: float | None
    recall_at_5pct_fpr: float | None
    ece: float | None
    note: str | None = None


def format_metric(x: float | None) -> str:
    """A metric for tables: three decimals, or a dash where it is undefined."""
    return "–" if x is None else f"{x:.3f}"


def _nan_to_none(x: float) -> float | None:
    return None if x is None or math.isnan(x) else round(float(x), 4)


def binary_metrics(
    y: np.ndarray,
    score: np.ndarray,
    threshold: float,
    bins: int = 10,
    flagged: np.ndarray | None = None,
) -> BinaryMetrics:
    """AUPRC, ROC-AUC, precision/recall/F1 at the decision, recall at 5% FPR and calibration error.

    The decision is `score >= threshold`, or `flagged` when given (the binary "any category"
    decision uses each category's own threshold, which no single cut on the max score reproduces).
    """
    y = np.asarray(y, dtype=np.float64)
    score = np.asarray(score, dtype=np.float64)
    keep = np.isfinite(y) & np.isfinite(score)
    decided = (score >= threshold) if flagged is None else np.asarray(flagged, dtype=bool)
    y, score, decided = y[keep], score[keep], decided[keep]
    n, pos = len(y), int(y.sum())
    note = None
    if n == 0:
        return BinaryMetrics(
            n=0, positives=0, prevalence=0.0, auprc=None, roc_auc=None, threshold=threshold,
            precision=None, recall=None, f1=None, recall_at_5pct_fpr=None, ece=None,
            note="no labelled rows",
        )  # fmt: skip
    pred = decided
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / pos if pos else float("nan")
    f1 = (
        2 * precision * recall / (precision + recall)
        if pos and tp + fp and precision + recall > 0
        else (0.0 if pos and tp == 0 else float("nan"))
    )
    if 0 < pos < n:
        auprc = float(average_precision_score(y, score))
        auc = float(roc_auc_score(y, score))
        r5 = recall_at_fpr(y, score, 0.05)
    else:
        auprc = auc = r5 = float("nan")
        note = "only positives: ranking metrics need negatives" if pos else "no positives"
    return BinaryMetrics(
        n=n,
        positives=pos,
        prevalence=round(pos / n, 4),
        auprc=_nan_to_none(auprc),
        roc_auc=_nan_to_none(auc),
        threshold=threshold,
        precision=_nan_to_none(precision),
        recall=_nan_to_none(recall),
        f1=_nan_to_none(f1),
        recall_at_5pct_fpr=_nan_to_none(r5),
        ece=_nan_to_none(expected_calibration_error(y, score, bins)),
        note=note,
    )


def recall_at_fpr(y: np.ndarray, score: np.ndarray, max_fpr: float) -> float:
    """Highest recall reachable while the false-positive rate stays at or below `max_fpr`.

    The number a safety team asks first: "if we may wrongly hit 5% of good content, how much of
    the bad do we catch?"
    """
    fpr, tpr, _ = roc_curve(y, score)
    ok = fpr <= max_fpr
    return float(tpr[ok].max()) if ok.any() else 0.0


def expected_calibration_error(y: np.ndarray, score: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate - predicted probability| over equal-width score bins, weighted by count."""
    if len(y) == 0:
        return float("nan")
    which = _bin_of(score, bins)
    total = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            total += m.sum() * abs(y[m].mean() - score[m].mean())
    return total / len(y)


def _bin_of(score: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bin index; a score on an edge (0.3) goes to the bin it starts."""
    return np.asarray(np.clip(np.floor(np.round(score * bins, 9)).astype(int), 0, bins - 1))


def reliability(
    y: np.ndarray, score: np.ndarray, bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin (mean predicted, observed rate, count) for a reliability diagram."""
    keep = np.isfinite(y) & np.isfinite(score)
    y, score = y[keep], score[keep]
    which = _bin_of(score, bins)
    pred, obs, cnt = np.full(bins, np.nan), np.full(bins, np.nan), np.zeros(bins, dtype=int)
    for b in range(bins):
        m = which == b
        cnt[b] = int(m.sum())
        if cnt[b]:
            pred[b], obs[b] = score[m].mean(), y[m].mean()
    return pred, obs, cnt


def pr_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(recall, precision) points, or None when the curve is undefined."""
    keep = np.isfinite(y) & np.isfinite(score)
    y, score = y[keep], score[keep]
    if not (0 < y.sum() < len(y)):
        return None
    precision, recall, _ = precision_recall_curve(y, score)
    return recall, precision
