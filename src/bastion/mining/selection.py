"""Compose one batch from the strategies' orders, recording each pick's exact propensity.

Slot by slot, a strategy is drawn from the allocation; a ranked strategy gives its best item not
yet taken and not a near-duplicate (cosine ≥ `duplicate_similarity`) of an item already in the
batch or already labelled, which keeps the batch diverse and no label is spent twice on one
text; random draws uniformly from every item not yet taken. So the probability that item i fills
slot t is exactly

    p_t(i) = a_random / |R_t| + sum over ranked strategies s of a_s * [s proposes i at t],

with R_t the items still available. Each `Draw` keeps p_t, |R_t| and every strategy's proposal,
which is all that unbiased prevalence estimation and off-policy evaluation of another allocation
need (`bastion.mining.estimate`). Random keeps every available item's p_t above zero, near-
duplicates included.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bastion.mining.strategies import RANDOM


@dataclass(frozen=True)
class Draw:
    """One pick: pool index, the strategy that made it, and the record of how likely it was."""

    index: int
    strategy: str
    propensity: float
    available: int
    proposals: dict[str, int] = field(default_factory=dict)


def select_batch(
    X: np.ndarray,
    available: np.ndarray,
    labelled: np.ndarray,
    orders: dict[str, np.ndarray],
    allocation: dict[str, float],
    size: int,
    rng: np.random.Generator,
    *,
    duplicate_similarity: float = 0.95,
) -> list[Draw]:
    """Up to `size` draws from the pool indices in `available` (see the module docstring).

    `orders` gives each ranked strategy's pool indices, best first (a strategy may have an order
    and no weight: it then only proposes, for the log); `allocation` the probability of each
    strategy per slot (random included where it has weight); `labelled` the pool indices
    that already carry a label (near-duplicates of them are skipped by ranked strategies).
    """
    free = np.zeros(len(X), dtype=bool)
    free[available] = True
    n_free = int(free.sum())
    arms = [a for a, p in allocation.items() if p > 0]
    # Every strategy with an order proposes at every slot, weighted or not, so the log can
    # evaluate allocations that would have weighted it (`bastion.mining.estimate`).
    ranked = [a for a in orders if a != RANDOM]
    cursor = dict.fromkeys(ranked, 0)
    # What a ranked pick must not nearly repeat: the labelled items, then the batch so far.
    reference = np.empty((len(labelled) + size, X.shape[1]), dtype=X.dtype)
    reference[: len(labelled)] = X[labelled]
    n_reference = len(labelled)
    draws: list[Draw] = []
    while len(draws) < size and n_free > 0:
        proposals: dict[str, int] = {}
        for arm in ranked:
            found = _next_proposal(
                X, free, orders[arm], cursor[arm], reference[:n_reference], duplicate_similarity
            )
            cursor[arm] = found
            if found < len(orders[arm]):
                proposals[arm] = int(orders[arm][found])
        # Strategies with nothing left to propose give their slot weight to the rest.
        live = [a for a in arms if a == RANDOM or a in proposals]
        if not live:  # only ranked strategies, and every one has run out
            break
        w = np.array([allocation[a] for a in live], dtype=float)
        w /= w.sum()
        arm = live[int(rng.choice(len(live), p=w))]
        index = int(rng.choice(np.flatnonzero(free))) if arm == RANDOM else proposals[arm]
        share = dict(zip(live, w.tolist(), strict=True))
        propensity = share.get(RANDOM, 0.0) / n_free + sum(
            share.get(a, 0.0) for a, i in proposals.items() if i == index
        )
        draws.append(Draw(index, arm, propensity, n_free, proposals))
        free[index] = False
        n_free -= 1
        reference[n_reference] = X[index]
        n_reference += 1
    return draws


def _next_proposal(
    X: np.ndarray,
    free: np.ndarray,
    order: np.ndarray,
    start: int,
    reference: np.ndarray,
    duplicate_similarity: float,
) -> int:
    """Position in `order` of the first item at or after `start` that is free and no near-
    duplicate of any row of `reference`; len(order) if none is."""
    position = start
    while position < len(order):
        index = order[position]
        if free[index] and (
            not len(reference) or float((reference @ X[index]).max()) < duplicate_similarity
        ):
            return position
        position += 1
    return position
