"""Acquisition strategies: each one orders the unlabelled pool by how much it wants an item labelled.

A strategy is a different bet on what a label is worth. *Top score* bets that likely violations
are worth most (they are the positives a rare-class model starves for); *uncertainty* that items
the model cannot call teach it most; *diversity* and *novelty* that the model is wrong where it
has seen nothing; *neighbours* of confirmed positives that violations come in clusters (SEALS,
Coleman et al. 2022, searches only there, which also keeps selection cheap on a large pool);
*disagreement* that where two detectors part, one of them is wrong; *random* bets on nothing and
is what keeps the estimates honest. Which bet pays depends on the pool and changes as labels come
in, so the bandit (`bastion.mining.bandit`) learns the split.

Every strategy is a pure function of a `PoolView` (embeddings, current scores, what is labelled)
that returns pool indices, best first, of unlabelled items only. Random is special: it returns
nothing and the selector draws uniformly, so that its propensity is exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: The strategy whose picks are uniform over the unlabelled pool (the exploration floor).
RANDOM = "random"


@dataclass(frozen=True)
class PoolView:
    """What the strategies see of the pool at one moment.

    `X` holds L2-normalised embeddings (n, d); `score` the current model's P(violation) per item;
    `zero_shot` the policy's zero-shot P(violation) per item (the second detector); `labelled`
    marks items with a label and `label` holds it (1 violating, 0 not, NaN unlabelled);
    `threshold` is the score at which the model calls an item violating.
    """

    X: np.ndarray
    score: np.ndarray
    zero_shot: np.ndarray
    label: np.ndarray
    threshold: float = 0.5

    @property
    def labelled(self) -> np.ndarray:
        mask: np.ndarray = np.isfinite(self.label)
        return mask

    @property
    def unlabelled(self) -> np.ndarray:
        return np.flatnonzero(~self.labelled)

    @property
    def positives(self) -> np.ndarray:
        return np.flatnonzero(self.label == 1)


Strategy = Callable[[PoolView, np.random.Generator], np.ndarray]


def _by(values: np.ndarray, candidates: np.ndarray, *, descending: bool) -> np.ndarray:
    """`candidates` ordered by `values[candidates]`; ties keep pool order (stable sort)."""
    key = -values[candidates] if descending else values[candidates]
    ordered: np.ndarray = candidates[np.argsort(key, kind="stable")]
    return ordered


def top_score(view: PoolView, rng: np.random.Generator) -> np.ndarray:
    """The most likely violations first."""
    return _by(view.score, view.unlabelled, descending=True)


def uncertainty(view: PoolView, rng: np.random.Generator) -> np.ndarray:
    """The items nearest the decision threshold first (the margin; for one binary score it
    orders items as entropy does, but around the model's own threshold, not 0.5)."""
    return _by(np.abs(view.score - view.threshold), view.unlabelled, descending=False)


def disagreement(view: PoolView, rng: np.random.Generator) -> np.ndarray:
    """Where the trained model and the zero-shot detector differ most first.

    Before the model has learned anything its score is the zero-shot score and they agree
    everywhere; the order then falls back to the zero-shot detector's own uncertainty.
    """
    gap = np.abs(view.score - view.zero_shot) - 1e-3 * np.abs(view.zero_shot - 0.5)
    return _by(gap, view.unlabelled, descending=True)


def neighbours(view: PoolView, rng: np.random.Generator) -> np.ndarray:
    """Unlabelled items closest to any confirmed positive first (cosine similarity).

    With no positive yet there is nothing to search around, and the order is top score's.
    """
    positives = view.positives
    candidates = view.unlabelled
    if not len(positives):
        return top_score(view, rng)
    similarity = _max_similarity(view.X[candidates], view.X[positives])
    return candidates[np.argsort(-similarity, kind="stable")]


def novelty(view: PoolView, rng: np.random.Generator) -> np.ndarray:
    """The items farthest from everything labelled first (lowest similarity to the nearest
    labelled item); before any label, the farthest from the pool's centre."""
    candidates = view.unlabelled
    labelled = np.flatnonzero(view.labelled)
    if len(labelled):
        similarity = _max_similarity(view.X[candidates], view.X[labelled])
    else:
        centre = view.X.mean(axis=0)
        similarity = view.X[candidates] @ centre
    return candidates[np.argsort(similarity, kind="stable")]


def diversity(view: PoolView, rng: np.random.Generator, clusters: int = 100) -> np.ndarray:
    """One representative per region of the pool: k-means over the unlabelled items, then the
    item nearest each centre, largest cluster first; the rest follow in order of distance to
    their centre (so a batch larger than `clusters` still spreads out).

    Spherical k-means (cosine, as the embeddings are compared everywhere else) runs on at most
    5,000 sampled items for a few iterations, then every candidate is assigned to its nearest
    centre: a diversity heuristic needs regions, not converged centroids, and this keeps a step
    on a pool of millions to a fraction of a second (sklearn's k-means++ took 12 s on 20,000).
    """
    candidates = view.unlabelled
    k = min(clusters, len(candidates))
    if k <= 1:
        return candidates
    sample = candidates
    if len(sample) > 5_000:
        sample = rng.choice(candidates, 5_000, replace=False)
    centres = spherical_kmeans(view.X[sample], k, rng)
    similarity = view.X[candidates] @ centres.T
    cluster = similarity.argmax(axis=1)
    closeness = similarity[np.arange(len(candidates)), cluster]
    sizes = np.bincount(cluster, minlength=k)
    # Within a cluster, nearest the centre first; across clusters, the round (first, second, ...
    # item of each cluster), then bigger clusters first.
    order = np.lexsort((-closeness, cluster))
    rank_in_cluster = np.empty(len(candidates), dtype=int)
    starts = np.concatenate([[0], np.cumsum(np.bincount(cluster[order], minlength=k))[:-1]])
    rank_in_cluster[order] = np.arange(len(candidates)) - starts[cluster[order]]
    final = np.lexsort((-sizes[cluster], rank_in_cluster))
    ordered: np.ndarray = candidates[final]
    return ordered


def spherical_kmeans(
    X: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 10
) -> np.ndarray:
    """k unit-length centres for unit-length rows X: Lloyd's iterations on cosine similarity,
    seeded as k-means++ does (each next seed drawn with probability growing with its squared
    distance to the seeds so far); an emptied cluster restarts at the row its centre fits worst."""
    chosen = [int(rng.integers(len(X)))]
    nearest = X @ X[chosen[0]]
    for _ in range(1, k):
        weight = np.maximum(1.0 - nearest, 0.0) ** 2
        total = float(weight.sum())
        pick = int(rng.choice(len(X), p=weight / total)) if total > 0 else int(rng.integers(len(X)))
        chosen.append(pick)
        nearest = np.maximum(nearest, X @ X[pick])
    centres = X[chosen].astype(np.float32)
    for _ in range(iterations):
        similarity = X @ centres.T
        assign = similarity.argmax(axis=1)
        sums = np.zeros_like(centres)
        np.add.at(sums, assign, X)
        empty = np.flatnonzero(np.bincount(assign, minlength=k) == 0)
        worst = np.argsort(similarity.max(axis=1))[: len(empty)]
        sums[empty] = X[worst]
        centres = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return centres


def _max_similarity(A: np.ndarray, B: np.ndarray, block: int = 8192) -> np.ndarray:
    """max_j A_i · B_j for each row of A, in blocks so memory stays bounded."""
    out = np.empty(len(A), dtype=np.float32)
    for start in range(0, len(A), block):
        out[start : start + block] = (A[start : start + block] @ B.T).max(axis=1)
    return out


#: Every strategy by name, in the order tables list them.
STRATEGIES: dict[str, Strategy | None] = {
    "top_score": top_score,
    "uncertainty": uncertainty,
    "diversity": diversity,
    "neighbours": neighbours,
    "disagreement": disagreement,
    "novelty": novelty,
    RANDOM: None,
}


def check_strategies(names: list[str]) -> list[str]:
    """`names` if each is a known strategy and random is among them; else a clear error."""
    from bastion.errors import InputError

    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise InputError(
            f"unknown strategy {', '.join(map(repr, unknown))}; known: {', '.join(STRATEGIES)}"
        )
    if RANDOM not in names:
        raise InputError(
            "the strategies must include 'random': it is the exploration floor that keeps "
            "every item's chance of selection above zero and the prevalence estimate unbiased"
        )
    if len(set(names)) != len(names):
        raise InputError(f"a strategy is named twice in {names}")
    return names
