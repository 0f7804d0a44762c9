"""Prevalence from the random slots is unbiased with an honest interval; off-policy values reweight."""

from __future__ import annotations

import numpy as np

from bastion.mining.estimate import policy_value, prevalence


def _mine(rng: np.random.Generator, n: int, positives: int, slots: int, floor: float, hit: float):  # type: ignore[no-untyped-def]
    """A caricature of mining: a targeted strategy that finds a remaining violation with
    probability `hit`, and a `floor` of uniform random slots, logged as the project logs them."""
    y = np.zeros(n, dtype=int)
    y[:positives] = 1
    free = np.ones(n, dtype=bool)
    known = 0
    kb, av, hits = [], [], []
    for _ in range(slots):
        if rng.random() < floor:
            i = rng.choice(np.flatnonzero(free))
            kb.append(known)
            av.append(int(free.sum()))
            hits.append(int(y[i]))
        else:
            left = np.flatnonzero(free & (y == 1))
            pick_positive = len(left) and rng.random() < hit
            i = rng.choice(left) if pick_positive else rng.choice(np.flatnonzero(free & (y == 0)))
        known += int(y[i])
        free[i] = False
    return prevalence(kb, av, hits, known, int(free.sum()), n)


def test_the_estimate_is_unbiased_and_the_interval_covers_the_truth() -> None:
    rng = np.random.default_rng(0)
    n, positives = 2000, 40
    runs = [_mine(rng, n, positives, slots=400, floor=0.1, hit=0.05) for _ in range(200)]
    estimates = np.array([r.estimate for r in runs])
    truth = positives / n
    assert abs(estimates.mean() - truth) < 0.15 * truth
    covered = np.mean([r.low <= truth <= r.high for r in runs])
    assert covered >= 0.9
    assert all(r.low >= r.known / n for r in runs)


def test_without_random_slots_only_the_known_violations_are_certain() -> None:
    est = prevalence([], [], [], known_now=7, remaining_now=93, pool=100)
    assert (est.estimate, est.low, est.high) == (0.07, 0.07, 1.0)


def test_a_miss_on_every_random_slot_still_leaves_room_for_violations_unseen() -> None:
    # 50 random slots over a pool of 10,000 with none violating: a rate up to about 7 % of the
    # remainder cannot be ruled out (Clopper-Pearson 3.7/50 at 95 %), so the interval stays wide.
    est = prevalence([5] * 50, [9000] * 50, [0] * 50, known_now=5, remaining_now=9000, pool=10_000)
    assert est.low == 5 / 10_000
    assert 0.05 < est.high < 0.08


def test_policy_value_is_the_logged_mean_under_the_logging_policy_and_reweights_otherwise() -> None:
    rewards = [1.0, 0.0, 1.0, 0.0]
    logged = [0.5, 0.5, 0.5, 0.5]
    assert policy_value(rewards, logged, logged).value == 0.5
    # A policy that would only ever have picked the first and third items: all violations.
    assert policy_value(rewards, logged, [0.9, 0.0, 0.9, 0.0]).value == 1.0
    assert np.isnan(policy_value([], [], []).value)
