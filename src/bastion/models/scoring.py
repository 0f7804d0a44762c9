"""Scoring formulas, kept pure (arrays in, arrays out) and apart from models, storage and I/O.

Each function's docstring gives the intuition, so a policy person can follow how a number came to be.
"""

from __future__ import annotations

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function, numerically safe for large |z|."""
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64))))


def logit(p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Log-odds, the inverse of `sigmoid`. Probabilities are clipped to [eps, 1 - eps] first, so
    a score of exactly 0 or 1 maps to a large finite number that arithmetic can still use."""
    q = np.clip(p, eps, 1 - eps)
    return np.asarray(np.log(q / (1 - q)))


def topk_mean(sims: np.ndarray, k: int) -> np.ndarray:
    """Mean of the k largest values per row, ignoring -inf (masked) entries.

    Why top-k and not max: one example that happens to share a word with the text should not
    decide alone; k close examples agreeing is stronger evidence. Why not the mean of all: a
    category's examples cover many sub-patterns, and a text need only match one of them.
    """
    if sims.shape[1] == 0:
        return np.full(sims.shape[0], np.nan)
    return _max_and_topk_mean(sims, k)[1]


def _max_and_topk_mean(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The max and the mean of the k largest values along the last axis, -inf entries left
    out of both (NaN where every entry is -inf)."""
    k = max(1, min(k, values.shape[-1]))
    part = -np.partition(-values, k - 1, axis=-1)[..., :k]
    finite = np.isfinite(part)
    count = finite.sum(axis=-1)
    mean = np.where(finite, part, 0.0).sum(axis=-1) / np.maximum(count, 1)
    return (
        np.where(count > 0, part.max(axis=-1), np.nan),
        np.where(count > 0, mean, np.nan),
    )


FEATURES = ("pos_max", "pos_topk", "hard_neg_topk", "background_topk", "rule_max")
FEATURE_SIGNS = np.array([1.0, 1.0, -1.0, -1.0, 1.0])
"""Direction each feature may push a score: nearer to what violates never lowers it."""


def contrastive_features(
    pos_sims: np.ndarray,
    hard_neg_sims: np.ndarray,
    background_sims: np.ndarray,
    rule_sims: np.ndarray,
    k: int,
) -> np.ndarray:
    """Features of texts against one category: how close to what violates vs. what does not.

    Columns follow `FEATURES`: the max and top-k mean similarity to the category's violating
    examples, the top-k mean similarity to its hard negatives (look-alikes that do not violate),
    the top-k mean similarity to everyday background content, and the max similarity to the
    definition and rules. Near the positives *and* far from the hard negatives is the signal;
    near the positives alone is not, because "how do I kill a Python process" sits right next to
    "I will kill you". A category without hard negatives uses the background for both.
    """
    n = pos_sims.shape[0]

    def rowmax(s: np.ndarray) -> np.ndarray:
        return np.max(s, axis=1) if s.shape[1] else np.full(n, np.nan)

    background = topk_mean(background_sims, k)
    hard = topk_mean(hard_neg_sims, k) if hard_neg_sims.shape[1] else background
    hard = np.where(np.isfinite(hard), hard, background)
    return np.column_stack(
        [rowmax(pos_sims), topk_mean(pos_sims, k), hard, background, rowmax(rule_sims)]
    )


def padded_columns(groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Index groups of different sizes as one (groups, longest) matrix and its mask of real
    entries, so that one gather reads every group's columns at once (padding points at
    column 0 and is masked out)."""
    width = max([len(g) for g in groups] + [1])
    index = np.zeros((len(groups), width), dtype=np.int64)
    real = np.zeros((len(groups), width), dtype=bool)
    for row, g in enumerate(groups):
        index[row, : len(g)] = g
        real[row, : len(g)] = True
    return index, real


def grouped_max_and_topk(
    sims: np.ndarray, index: np.ndarray, real: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """`rowmax` and `topk_mean` of `sims` over many column groups at once (from
    `padded_columns`): two (rows, groups) arrays, NaN for an empty group. The same numbers as
    one `topk_mean` call per group, without a Python loop over the groups."""
    gathered = np.where(real[None, :, :], sims[:, index], -np.inf)  # (rows, groups, longest)
    return _max_and_topk_mean(gathered, k)


def fit_monotone_logistic(
    X: np.ndarray,
    y: np.ndarray,
    sample_weight: np.ndarray,
    signs: np.ndarray,
    l2: float = 1e-2,
) -> tuple[np.ndarray, float]:
    """Weighted logistic regression whose coefficients must have the given signs (0: either).

    Why constrained: the examples a policy carries are few, and an unconstrained fit happily
    learns that resembling a hard negative *raises* a score when hard negatives happen to be
    closer to positives than to background. The constraint rules out that nonsense.
    """
    from scipy.optimize import minimize

    free = signs == 0
    Xs = X * np.where(free, 1.0, signs)  # constrained coefficients become >= 0 in this space
    w = sample_weight / sample_weight.sum()

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        coef, b = theta[:-1], theta[-1]
        z = Xs @ coef + b
        p = sigmoid(z)
        eps = 1e-12
        nll = -np.sum(w * (y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
        g = w * (p - y)
        grad = np.r_[Xs.T @ g + l2 * coef, g.sum()]
        return float(nll + 0.5 * l2 * coef @ coef), grad

    theta0 = np.r_[np.where(free, 0.0, 1.0), 0.0]
    bounds = [(None, None) if f else (0.0, None) for f in free] + [(None, None)]
    res = minimize(loss, theta0, jac=True, method="L-BFGS-B", bounds=bounds)
    return res.x[:-1] * np.where(free, 1.0, signs), float(res.x[-1])


def fuse(scores: list[np.ndarray], weights: list[float] | None = None) -> np.ndarray:
    """NaN-aware weighted mean of detectors' calibrated probabilities, per (item, category).

    A detector that returns NaN has no opinion and drops out of that cell's mean rather than
    pulling it towards zero; a cell where no detector applies stays NaN.
    """
    if not scores:
        raise ValueError("fuse needs at least one score array")
    stack = np.stack(scores).astype(np.float64)
    w = np.ones(len(scores)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w[:, None, None] * np.isfinite(stack)
    total = np.nansum(stack * w, axis=0)
    weight = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, total / np.where(weight > 0, weight, 1.0), np.nan)


def fuse_max(scores: list[np.ndarray]) -> np.ndarray:
    """NaN-aware max across modalities (or media detectors), per (item, category).

    Unlike `fuse`, which averages detectors that look at the same text, modalities are
    different evidence: a threat spoken in a video is not made safer by a harmless picture,
    so an item is as violating as its worst part. Cells where nothing applies stay NaN.
    """
    if not scores:
        raise ValueError("fuse_max needs at least one score array")
    stack = np.stack(scores).astype(np.float64)
    finite = np.isfinite(stack)
    best = np.where(finite, stack, -np.inf).max(axis=0)
    return np.where(finite.any(axis=0), best, np.nan)


def group_max(
    values: np.ndarray, owner: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per group (item) and column, the max over its rows (windows), and which row gave it.

    An item is as violating as its most violating passage. Groups without rows stay NaN (-1).
    """
    n_col = values.shape[1]
    out = np.full((n_groups, n_col), np.nan)
    arg = np.full((n_groups, n_col), -1, dtype=np.int64)
    for c in range(n_col):
        order = np.lexsort((values[:, c], owner))
        last = np.r_[owner[order][1:] != owner[order][:-1], True]
        rows = order[last]
        out[owner[rows], c] = values[rows, c]
        arg[owner[rows], c] = rows
    return out, arg


def any_category(scores: np.ndarray) -> np.ndarray:
    """Probability that an item violates *some* category: the largest category probability.

    The max, not a noisy-OR: categories overlap (a threat is also harassment), so treating them as
    independent would inflate the score of every item that matches a family of categories.
    """
    filled = np.where(np.isfinite(scores), scores, 0.0)
    return np.asarray(filled.max(axis=1)) if filled.shape[1] else np.zeros(filled.shape[0])


def blend_with_zero_shot(head: np.ndarray, zero_shot: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per category, a weighted mean in logit space of a trained head's and the zero-shot
    detector's probabilities (weight = the zero-shot share; 1 = zero-shot only).

    Why blend: the head knows what its training sets looked like, the zero-shot detector knows
    what the policy says. A head trained on a few public sets fires on their topics and misses
    what they lack (first-person threats, say), while zero-shot over-reads anything topical; text
    unlike any training set is better judged by both. Logit space keeps a confident "no" from one
    side from being averaged away into a "maybe". Calibration comes after, on held-out data.
    """
    h = logit(np.asarray(head, np.float64))
    z = logit(np.asarray(zero_shot, np.float64))
    w = np.asarray(weight, np.float64)
    return sigmoid((1 - w) * h + w * z)
