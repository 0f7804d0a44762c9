"""Estimates from the propensity log: the pool's prevalence, and what another allocation would earn.

**Prevalence.** Mining chooses items that look bad, so the share of violations among labelled
items says little about the pool. But a random slot (the exploration floor) draws uniformly from
the items still unlabelled, R_t: if the pool holds Y violations and K_t of them were known when
slot t was filled (labelled, or drawn before it), that slot hits one with probability

    q_t(Y) = (Y - K_t) / |R_t|,

and the hits of all random slots are independent given the history, so their count is
Poisson-binomial in Y. The estimate is the Y that makes the observed hits most likely; each
violation the targeted strategies find moves from the uncertain remainder into the known count,
which is how the estimate tightens as mining succeeds. (The plain average of K_t + |R_t| y_t over
the random slots is unbiased, but mostly sits below the violations already known, which are
certain, and clipping it there biases it; the likelihood uses the same slots without that.)

The interval inverts an exact test, as Clopper-Pearson does for a fixed rate, but with the
depletion accounted for: if the pool held Y violations, the random slot t hit one with probability
q_t(Y) = (Y - K_t) / |R_t|, so the number of hits is Poisson-binomial and its tails are exact; the
interval is every Y under which the observed hits are not in either 2.5 % tail. (A normal interval
on the draws' spread would claim certainty whenever no random slot has yet hit a violation, which
on a rare class is most of the time; Clopper-Pearson on the hit rate would ignore that mining
empties the remainder of violations and miss high.) Using every slot with its propensity
(Horvitz-Thompson, y_t / p_t) is also unbiased, but its spread understates its error for the same
reason as the normal interval, so it is not what the report shows.

**Off-policy value.** Each draw records every strategy's proposal and the number of available
items, so the probability that another allocation a' would have picked the logged item is known
exactly, and with weights w_t = p'_t / p_t the self-normalised estimate sum(w r) / sum(w)
gives the reward per label that a' would have earned, without running it. (Plain inverse
propensity scoring, mean(w r), is unbiased too but unbounded: with few logged picks it can put a
strategy above one violation per label.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bastion.mining.strategies import RANDOM


@dataclass(frozen=True)
class Prevalence:
    """Share of violations in the pool with a 95 % (by default) interval; `known` were seen."""

    estimate: float
    low: float
    high: float
    known: int
    random_draws: int
    random_hits: int
    pool: int


def prevalence(
    known_before: Sequence[int],
    available: Sequence[int],
    hits: Sequence[int],
    known_now: int,
    remaining_now: int,
    pool: int,
    confidence: float = 0.95,
) -> Prevalence:
    """The maximum-likelihood estimate and exact interval from the random slots: for each, the
    violations known before it, the items available to it and whether it drew a violation; `known_now` and `remaining_now` are the
    known violations and unlabelled items after the last label came back."""
    k = np.asarray(known_before, dtype=float)
    r = np.asarray(available, dtype=float)
    y = np.asarray(hits, dtype=float)
    if pool <= 0:
        raise ValueError("the pool is empty")
    most = known_now + remaining_now
    if not len(y):
        return Prevalence(known_now / pool, known_now / pool, most / pool, known_now, 0, 0, pool)
    h = int(y.sum())
    tail = (1 - confidence) / 2

    def at_least(total: int) -> float:  # P(hits >= h | Y = total)
        return 1.0 - _poisson_binomial_cdf(np.clip((total - k) / r, 0, 1), h - 1)

    def at_most(total: int) -> float:  # P(hits <= h | Y = total)
        return _poisson_binomial_cdf(np.clip((total - k) / r, 0, 1), h)

    # Both tails move monotonically with Y, so each bound is a binary search over integers.
    low = known_now if h == 0 else _first(known_now, most, lambda t: at_least(t) > tail)
    high = most if h == len(y) else _first(known_now, most, lambda t: at_most(t) <= tail) - 1
    high = max(high, low)
    point = _most_likely(k, r, y, low, high)
    return Prevalence(
        estimate=point / pool,
        low=low / pool,
        high=high / pool,
        known=known_now,
        random_draws=len(y),
        random_hits=h,
        pool=pool,
    )


def _most_likely(k: np.ndarray, r: np.ndarray, y: np.ndarray, low: int, high: int) -> int:
    """The Y in [low, high] under which the random slots' hits are most likely."""
    best, best_ll = low, -np.inf
    for start in range(low, high + 1, 1024):
        totals = np.arange(start, min(start + 1024, high + 1))[:, None]
        q = np.clip((totals - k) / r, 1e-12, 1 - 1e-12)
        ll = (y * np.log(q) + (1 - y) * np.log1p(-q)).sum(axis=1)
        j = int(ll.argmax())
        if ll[j] > best_ll:
            best, best_ll = int(totals[j, 0]), float(ll[j])
    return best


def _poisson_binomial_cdf(q: np.ndarray, h: int) -> float:
    """P(sum of independent Bernoulli(q_i) <= h), by dynamic programming over the counts."""
    if h < 0:
        return 0.0
    dist = np.zeros(h + 2)
    dist[0] = 1.0
    for p in q:
        # Counts above h are lumped into the last cell; only <= h is asked for.
        moved = dist * p
        dist = dist * (1 - p)
        dist[1:] += moved[:-1]
        dist[-1] += moved[-1]
    return float(dist[: h + 1].sum())


def _first(lo: int, hi: int, holds: Callable[[int], bool]) -> int:
    """The smallest integer in [lo, hi + 1] for which `holds` (monotone: false then true) is true."""
    hi += 1
    while lo < hi:
        mid = (lo + hi) // 2
        if holds(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def propensity_under(
    allocation: dict[str, float], proposals: dict[str, str], available: int, item: str
) -> float:
    """Probability that `allocation` picks `item` at a slot where the ranked strategies
    proposed `proposals` and `available` items were free (strategies without a proposal then,
    or absent from the allocation, pass their weight on, as the selector does)."""
    live = {a: p for a, p in allocation.items() if p > 0 and (a == RANDOM or a in proposals)}
    total = sum(live.values())
    if total <= 0:
        return 0.0
    chance = live.get(RANDOM, 0.0) / total / max(available, 1)
    return chance + sum(p / total for a, p in live.items() if a != RANDOM and proposals[a] == item)


@dataclass(frozen=True)
class PolicyValue:
    """Estimated reward per label under another allocation, with its standard error."""

    value: float
    stderr: float
    draws: int


def policy_value(
    rewards: Sequence[float], logged: Sequence[float], target: Sequence[float]
) -> PolicyValue:
    """Self-normalised inverse propensity scoring, with a delta-method standard error."""
    r = np.asarray(rewards, dtype=float)
    w = np.asarray(target, dtype=float) / np.asarray(logged, dtype=float)
    if not len(r) or w.sum() <= 0:
        return PolicyValue(float("nan"), float("nan"), len(r))
    value = float((w * r).sum() / w.sum())
    n = len(r)
    stderr = float(np.sqrt(np.sum((w * (r - value)) ** 2)) / w.sum()) if n > 1 else float("nan")
    return PolicyValue(value, stderr, n)
