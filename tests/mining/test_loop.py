"""One mining step: the miner chooses from what is free, and rewards say what each pick was worth."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.errors import InputError
from bastion.mining.loop import (
    Miner,
    MiningSettings,
    auprc_rewards,
    blend_rewards,
    positive_rewards,
)
from bastion.mining.selection import Draw
from bastion.mining.strategies import PoolView


def _draws(*strategies: str) -> list[Draw]:
    return [Draw(i, s, 0.5, 10) for i, s in enumerate(strategies)]


def test_positive_rewards_weigh_violations_by_severity() -> None:
    draws = _draws("top_score", "top_score", "random")
    rewards = positive_rewards(draws, [1, 0, 1], [0.5, 1.0, 1.0])
    assert rewards == {"top_score": (0.5, 2), "random": (1.0, 1)}


def test_auprc_rewards_pay_the_strategy_whose_picks_improve_the_model() -> None:
    helpful = {0, 1}

    def fit_score(rows: np.ndarray) -> float:  # AUPRC rises 0.02 per helpful item
        return 0.5 + 0.02 * len(helpful & set(rows.tolist()))

    rewards = auprc_rewards(
        fit_score, np.array([5, 6]), _draws("top_score", "top_score", "novelty"), 0.05
    )
    assert rewards["top_score"] == (pytest.approx(0.9 * 2), 2)  # +0.04 -> 0.5 + 0.04 / 0.1
    assert rewards["novelty"] == (pytest.approx(0.5), 1)  # no change
    mixed = blend_rewards({"top_score": (2.0, 2), "novelty": (0.0, 1)}, rewards, 0.5)
    assert mixed["top_score"] == (pytest.approx(1.9), 2)
    assert mixed["novelty"] == (pytest.approx(0.25), 1)


def test_the_miner_chooses_only_free_items_and_refuses_an_empty_batch() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 8)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    label = np.full(40, np.nan)
    label[:5] = [1, 0, 0, 1, 0]
    score = rng.random(40)
    view = PoolView(X, score, score, label)
    miner = Miner(MiningSettings())
    draws, allocation, _ = miner.choose(view, 10, rng, exclude=np.arange(5, 15))
    picked = {d.index for d in draws}
    assert len(picked) == 10 and picked.isdisjoint(range(15))
    assert allocation["random"] >= 0.05 and abs(sum(allocation.values()) - 1) < 1e-9
    with pytest.raises(InputError, match="at least 1"):
        miner.choose(view, 0, rng)
    with pytest.raises(InputError, match="already out for labelling"):
        miner.choose(view, 5, rng, exclude=np.arange(5, 40))


def test_settings_are_checked() -> None:
    with pytest.raises(InputError, match="unknown reward"):
        MiningSettings(reward="clicks").check()
    with pytest.raises(InputError, match="unknown policy"):
        MiningSettings(policy="greedy").check()
    with pytest.raises(InputError, match="must include 'random'"):
        MiningSettings(strategies=("top_score",)).check()
    assert Miner(MiningSettings(policy="top_score+floor")).allocation(
        None,  # type: ignore[arg-type]
        np.random.default_rng(0),
    ) == {"top_score": 0.95, "random": 0.05}
