"""The bandits learn which strategy pays, follow a change, keep the floor and survive a restart."""

from __future__ import annotations

import json

import numpy as np

from bastion.mining.bandit import (
    Context,
    DiscountedThompson,
    LinUCB,
    bandit_from_state,
    with_floor,
)

ARMS = ["top_score", "uncertainty", "random"]
CTX = Context(labelled=100, positive_rate=0.1, score_entropy=0.5)


def _pay(bandit: DiscountedThompson, best: str, rounds: int) -> None:
    for _ in range(rounds):
        bandit.update({arm: ((8.0 if arm == best else 1.0), 10) for arm in ARMS}, CTX)


def test_thompson_moves_the_batch_to_the_strategy_that_pays() -> None:
    bandit = DiscountedThompson(ARMS)
    _pay(bandit, "top_score", 5)
    share = bandit.allocation(CTX, np.random.default_rng(0))
    assert share["top_score"] > 0.95
    assert abs(sum(share.values()) - 1) < 1e-9


def test_discounting_follows_a_change_that_plain_thompson_is_slow_to_see() -> None:
    fast, slow = DiscountedThompson(ARMS, discount=0.7), DiscountedThompson(ARMS, discount=1.0)
    for bandit in (fast, slow):
        _pay(bandit, "top_score", 30)
        _pay(bandit, "uncertainty", 4)
    rng = np.random.default_rng(0)
    assert fast.allocation(CTX, rng)["uncertainty"] > 0.9
    assert slow.allocation(CTX, rng)["uncertainty"] < 0.1


def test_the_floor_keeps_random_and_the_split_sums_to_one() -> None:
    split = with_floor({"top_score": 1.0, "uncertainty": 0.0, "random": 0.0}, 0.05)
    assert split["random"] == 0.05 and abs(split["top_score"] - 0.95) < 1e-12
    assert abs(sum(split.values()) - 1) < 1e-12


def test_thompson_state_round_trips_through_json() -> None:
    bandit = DiscountedThompson(ARMS, discount=0.8)
    _pay(bandit, "uncertainty", 3)
    again = bandit_from_state(json.loads(json.dumps(bandit.state())))
    assert isinstance(again, DiscountedThompson) and again.discount == 0.8
    a = bandit.allocation(CTX, np.random.default_rng(5))
    b = again.allocation(CTX, np.random.default_rng(5))
    assert a == b


def test_linucb_learns_that_the_best_strategy_depends_on_the_context() -> None:
    early = Context(labelled=50, positive_rate=0.02, score_entropy=0.9)
    late = Context(labelled=5000, positive_rate=0.4, score_entropy=0.2)
    bandit = LinUCB(ARMS, alpha=0.1)
    for _ in range(30):
        bandit.update(
            {"top_score": (9.0, 10), "uncertainty": (1.0, 10), "random": (1.0, 10)}, early
        )
        bandit.update({"top_score": (1.0, 10), "uncertainty": (9.0, 10), "random": (1.0, 10)}, late)
    rng = np.random.default_rng(0)
    assert bandit.allocation(early, rng)["top_score"] == 1.0
    assert bandit.allocation(late, rng)["uncertainty"] == 1.0
    again = bandit_from_state(json.loads(json.dumps(bandit.state())))
    assert again.allocation(late, rng) == bandit.allocation(late, rng)


def test_a_cold_bandit_is_warm_started_from_predicted_rates_once() -> None:
    bandit = DiscountedThompson(ARMS)
    assert bandit.cold
    bandit.warm({"top_score": 0.6, "uncertainty": 0.1, "random": 0.05}, strength=20)
    assert not bandit.cold
    assert bandit.allocation(CTX, np.random.default_rng(0))["top_score"] > 0.9
    # The warm start is evidence like any other: real rewards overturn it.
    for _ in range(6):
        bandit.update({"top_score": (0.0, 30), "uncertainty": (20.0, 30), "random": (1.0, 5)}, CTX)
    assert bandit.allocation(CTX, np.random.default_rng(0))["uncertainty"] > 0.9
