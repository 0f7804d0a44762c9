"""Scoring formulas of embedding banks, kept pure (arrays in, arrays out) and apart from storage.

Two questions, one function each. Per item: is it nearer to what the bank says violates than to
what it says does not (`contrastive_scores`)? Per source (an account, a channel, a device): do its
recent items, taken together, show a pattern that no single item shows (`source_aggregate`)?
The formulas follow Roblox Sentinel's (`score_formulae.py`), which was built for finding rare
harmful patterns in the chat lines of one user; each docstring says where they differ and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np

AggregateMethod = Literal["topk_mean", "skewness"]
AGGREGATE_METHODS: tuple[str, ...] = ("topk_mean", "skewness")


def contrastive_scores(
    pos_sims: np.ndarray, neg_sims: np.ndarray, k: int, baseline: float = 0.0
) -> np.ndarray:
    """Per item, how much nearer it is to the k nearest positives than to the k nearest negatives.

    `pos_sims` (n, p) and `neg_sims` (n, q) are cosine similarities of each item to its nearest
    positive and negative exemplars (any order; NaN or -inf marks a missing neighbour). The score
    is, as in Sentinel, the log-ratio of the mean exponentiated similarities:

        log(mean_k exp(pos)) - log(mean_k exp(neg))

    Why contrast at all: a bank of threats sits next to a bank of "I'll kill this level" gaming
    talk in encoder space; similarity to the threats alone would flag both. What counts is being
    nearer the positives *than* the look-alikes the bank says are fine. Why the top k and not
    the nearest one: one exemplar that happens to share a phrase should not decide alone, while
    k neighbours agreeing is evidence. Why log-mean-exp and not a plain mean: it is a soft
    maximum, so the nearest of the k weighs a little more than the farthest.

    Unlike Sentinel, the score is not clipped at 0: items nearer the negatives get a negative
    score, which keeps them ordered (a ranking can tell "barely on the wrong side" from "plainly
    benign"); `source_aggregate` clips where adding up evidence needs it. A row with no negative
    neighbours (a bank without negatives) is scored against `baseline`, the similarity of
    unrelated text (0: orthogonal), so the score is then how far above "unrelated" it sits. A
    row with no positive neighbour has no score: NaN.
    """
    pos = _as_2d(pos_sims, "pos_sims")
    neg = _as_2d(neg_sims, "neg_sims")
    if pos.shape[0] != neg.shape[0]:
        raise ValueError(
            f"pos_sims and neg_sims need one row per item: {pos.shape[0]} != {neg.shape[0]}"
        )
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    positive = _log_mean_exp_topk(pos, int(k))
    negative = _log_mean_exp_topk(neg, int(k))
    negative = np.where(np.isfinite(negative), negative, float(baseline))
    return np.asarray(positive - negative)


def suppressed(best_pos_sim: np.ndarray, best_neg_sim: np.ndarray) -> np.ndarray:
    """Per item, whether its nearest negative exemplar is at least as near as its nearest positive.

    A negative exemplar is an allow-list entry: known not to violate. An item that resembles one
    at least as closely as any positive is more likely the allowed thing than the banned one (the
    news photo, not the propaganda poster it quotes), so the bank reports no match for it. Ties
    go to the negative: a bank match can lead to removal, and an exemplar someone marked as fine
    is the more specific statement. NaN (no negatives) suppresses nothing.
    """
    pos = np.asarray(best_pos_sim, dtype=np.float64)
    neg = np.asarray(best_neg_sim, dtype=np.float64)
    return np.asarray(np.isfinite(neg) & ~(pos > neg))


class SourceScores(NamedTuple):
    """One row per source, in order of first appearance: the source, its aggregate score (NaN
    when none of its items had a score) and how many scored items it had."""

    sources: np.ndarray
    scores: np.ndarray
    counts: np.ndarray


def source_aggregate(
    scores: np.ndarray,
    sources: Sequence[object] | np.ndarray,
    method: AggregateMethod = "topk_mean",
    k: int = 5,
    *,
    floor: float | None = 0.0,
    min_items: int = 10,
) -> SourceScores:
    """Per source, one number from the contrastive scores of its recent items.

    Why per source: one account posting a run of borderline items ("just asking" about the same
    kind of target, each alone below any threshold) is a pattern no per-item score shows. Items
    whose score is NaN (no opinion) are left out. With `floor` (default 0) scores are first
    raised to at least `floor`: an item nearer the negatives is no evidence, and a hundred
    harmless posts must not cancel five borderline ones.

    `topk_mean` (default): the mean of the source's k highest scores, a source with fewer than k
    items counting the missing ones as `floor` (0 without a floor). It answers "does this source
    have k items that all lean the bad way?": five borderline items (0.1 each: 0.1) rank above one
    strong item among harmless ones (0.3, 0, 0, 0, 0: 0.06), and a single item is worth 1/k of
    its score, so one-off items are left to the per-item channel. Ties need no breaking: equal
    values give the same mean whichever is taken.

    `skewness`: Sentinel's aggregate, (mean - median) / std (Pearson's second coefficient without
    its factor 3, so within [-1, 1]). It answers a different question, "are there spikes above
    this source's usual level?", whatever its volume: a few strong items among much ordinary
    chat give a positive skew. It is blind to level: a source whose items are all equally bad
    has skew 0, which is why it is not the default here. Sources with fewer than `min_items`
    scored items, and sources whose scores are all equal (std 0, ties), get 0 (no evidence of
    spikes), as in Sentinel.
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"scores must be 1-D (one per item), got shape {values.shape}")
    names = np.asarray(sources)
    if names.ndim != 1 or len(names) != len(values):
        raise ValueError(f"sources must give one source per item ({len(values)} items)")
    if method not in AGGREGATE_METHODS:
        raise ValueError(f"method {method!r} is not one of {', '.join(AGGREGATE_METHODS)}")
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if len(values) == 0:
        return SourceScores(names[:0], np.zeros(0), np.zeros(0, dtype=np.int64))

    unique, first, inverse = np.unique(names, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # sources in order of first appearance
    rank_of = np.empty_like(order)
    rank_of[order] = np.arange(len(order))
    group = rank_of[inverse.reshape(-1)]
    n_groups = len(unique)

    scored = np.isfinite(values)
    group, values = group[scored], values[scored]
    if floor is not None:
        values = np.maximum(values, floor)
    counts = np.bincount(group, minlength=n_groups)
    if method == "topk_mean":
        out = _group_topk_mean(values, group, n_groups, int(k), 0.0 if floor is None else floor)
    else:
        out = _group_skewness(values, group, counts, min_items)
    out = np.where(counts > 0, out, np.nan)
    return SourceScores(unique[order], out, counts.astype(np.int64))


def _group_topk_mean(
    values: np.ndarray, group: np.ndarray, n_groups: int, k: int, pad: float
) -> np.ndarray:
    order = np.lexsort((-values, group))  # by group, highest first within a group
    g = group[order]
    starts = np.searchsorted(g, np.arange(n_groups))
    rank = np.arange(len(g)) - starts[g]
    top = rank < k
    total = np.bincount(g[top], weights=values[order][top], minlength=n_groups)
    taken = np.bincount(g[top], minlength=n_groups)
    return np.asarray((total + pad * (k - taken)) / k)


def _group_skewness(
    values: np.ndarray, group: np.ndarray, counts: np.ndarray, min_items: int
) -> np.ndarray:
    n_groups = len(counts)
    safe = np.maximum(counts, 1)
    mean = np.bincount(group, weights=values, minlength=n_groups) / safe
    centred = values - mean[group]
    std = np.sqrt(np.bincount(group, weights=centred**2, minlength=n_groups) / safe)
    order = np.lexsort((values, group))
    sorted_values = values[order]
    starts = np.searchsorted(group[order], np.arange(n_groups))
    lo = starts + (safe - 1) // 2
    hi = starts + safe // 2
    last = max(len(sorted_values) - 1, 0)
    median = (
        (sorted_values[np.minimum(lo, last)] + sorted_values[np.minimum(hi, last)]) / 2
        if len(sorted_values)
        else np.zeros(n_groups)
    )
    # A spread below float noise is a tie (all scores equal): no skew, not 0/0.
    scale = np.maximum(np.abs(mean), 1.0) * 1e-9
    usable = (counts >= max(min_items, 1)) & (std > scale)
    skew = np.divide(mean - median, std, out=np.zeros(n_groups), where=usable)
    return np.asarray(skew)


def _log_mean_exp_topk(sims: np.ndarray, k: int) -> np.ndarray:
    """log(mean(exp(top k finite values))) per row; NaN for a row with none (or no columns)."""
    n, width = sims.shape
    if width == 0:
        return np.full(n, np.nan)
    clean = np.where(np.isfinite(sims), sims, -np.inf)
    k = min(k, width)
    top = -np.partition(-clean, k - 1, axis=1)[:, :k]
    finite = np.isfinite(top)
    count = finite.sum(axis=1)
    peak = np.where(count > 0, np.max(np.where(finite, top, -np.inf), axis=1), 0.0)
    with np.errstate(invalid="ignore"):
        total = np.where(finite, np.exp(top - peak[:, None]), 0.0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = peak + np.log(total / np.maximum(count, 1))
    return np.asarray(np.where(count > 0, out, np.nan))


def _as_2d(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (items, neighbours), got shape {arr.shape}")
    return arr
