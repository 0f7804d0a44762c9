"""A batch's propensities are the true chances of selection; ranked picks skip near-duplicates."""

from __future__ import annotations

from collections import Counter

import numpy as np

from bastion.mining.estimate import propensity_under
from bastion.mining.selection import select_batch


def _pool(n: int = 6) -> np.ndarray:
    return np.eye(n, dtype=np.float32)


def test_propensities_match_how_often_each_item_is_chosen() -> None:
    X = _pool(6)
    orders = {"top_score": np.array([3, 1, 0, 2, 4, 5]), "novelty": np.array([3, 5, 4, 0, 1, 2])}
    allocation = {"top_score": 0.5, "novelty": 0.3, "random": 0.2}
    available = np.arange(6)
    rng = np.random.default_rng(0)
    seen: Counter[int] = Counter()
    stated: dict[int, float] = {}
    n = 20_000
    for _ in range(n):
        (draw,) = select_batch(X, available, np.array([], int), orders, allocation, 1, rng)
        seen[draw.index] += 1
        stated[draw.index] = draw.propensity
    # Item 3 is both ranked strategies' first choice: 0.8 + 0.2 / 6.
    assert abs(stated[3] - (0.8 + 0.2 / 6)) < 1e-12
    for index, p in stated.items():
        assert abs(seen[index] / n - p) < 0.01, (index, seen[index] / n, p)
    assert set(stated) == set(range(6))  # random keeps every item reachable


def test_the_logged_proposals_give_the_same_propensity_offline() -> None:
    X = _pool(8)
    orders = {"top_score": np.array([1, 2, 3]), "uncertainty": np.array([2, 1, 0])}
    allocation = {"top_score": 0.6, "uncertainty": 0.35, "random": 0.05}
    draws = select_batch(
        X, np.arange(8), np.array([], int), orders, allocation, 4, np.random.default_rng(3)
    )
    for d in draws:
        proposals = {arm: str(i) for arm, i in d.proposals.items()}
        assert (
            abs(propensity_under(allocation, proposals, d.available, str(d.index)) - d.propensity)
            < 1e-12
        )


def test_ranked_picks_skip_near_duplicates_of_the_batch_and_of_labelled_items() -> None:
    X = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0.01], [0, 0, 1]], dtype=np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    orders = {"top_score": np.array([0, 1, 2, 3])}
    draws = select_batch(
        X, np.arange(4), np.array([4]), orders, {"top_score": 1.0}, 3, np.random.default_rng(0)
    )
    # 1 repeats 0 and 3 nearly repeats 2: the strategy runs out after two distinct items.
    assert [d.index for d in draws] == [0, 2]


def test_a_batch_never_repeats_an_item_or_takes_one_not_available() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 8)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    available = np.arange(10, 50)
    orders = {"top_score": np.arange(50)[::-1].copy()}
    draws = select_batch(
        X, available, np.arange(10), orders, {"top_score": 0.5, "random": 0.5}, 30, rng
    )
    picked = [d.index for d in draws]
    assert len(picked) == 30 == len(set(picked))
    assert all(10 <= i < 50 for i in picked)
    assert [d.available for d in draws] == list(range(40, 10, -1))


def test_a_strategy_without_weight_still_proposes_for_the_log() -> None:
    X = _pool(8)
    orders = {"top_score": np.array([1, 2, 3]), "novelty": np.array([7, 6, 5])}
    allocation = {"top_score": 0.9, "novelty": 0.0, "random": 0.1}
    draws = select_batch(
        X, np.arange(8), np.array([], int), orders, allocation, 3, np.random.default_rng(0)
    )
    assert all("novelty" in d.proposals for d in draws)
    assert all(d.strategy != "novelty" for d in draws)
    for d in draws:  # its proposal adds nothing to the propensity
        expected = 0.1 / d.available + (0.9 if d.proposals["top_score"] == d.index else 0.0)
        assert abs(d.propensity - expected) < 1e-12
