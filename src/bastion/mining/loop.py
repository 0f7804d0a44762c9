"""One step of mining, shared by the live project and the simulation: choose a batch, learn from it.

`Miner` holds the selection policy (a bandit over strategies with its exploration floor, or one
fixed strategy for comparison) and turns a `PoolView` into draws; `rewards` turns the labels that
came back into what the bandit learns from. Storage, files and the oracle live elsewhere
(`bastion.mining.project`, `bastion.mining.simulate`), so both run exactly this code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bastion.errors import InputError
from bastion.mining.bandit import (
    Context,
    DiscountedThompson,
    LinUCB,
    bandit_from_state,
    context_of,
    make_bandit,
    with_floor,
)
from bastion.mining.selection import Draw, select_batch
from bastion.mining.strategies import (
    RANDOM,
    STRATEGIES,
    PoolView,
    check_strategies,
    diversity,
)

#: A fixed strategy with this suffix keeps the random floor too ("top_score+floor").
FLOOR_SUFFIX = "+floor"

#: What a label is worth to the bandit.
REWARDS = ("positives", "auprc", "blend")


@dataclass(frozen=True)
class MiningSettings:
    """How batches are chosen and rewarded.

    `policy` is "thompson" (discounted Thompson sampling, the default), "linucb", or the name
    of one strategy to use alone (for comparison; no bandit, no floor; with "+floor" appended,
    the strategy with the random floor, as the bandit has it). `reward`: "positives"
    (severity-weighted violations found), "auprc" (validation AUPRC gained by retraining with
    each strategy's picks, needs a validation set) or "blend" (`blend` × positives +
    (1 − `blend`) × AUPRC). `auprc_scale`: the gain that counts as a full reward.
    """

    policy: str = "thompson"
    strategies: tuple[str, ...] = tuple(STRATEGIES)
    floor: float = 0.05
    reward: str = "positives"
    blend: float = 0.5
    auprc_scale: float = 0.05
    duplicate_similarity: float = 0.95
    clusters: int = 100
    warm_start: float = 20.0

    def check(self) -> MiningSettings:
        if self.reward not in REWARDS:
            raise InputError(f"unknown reward {self.reward!r}; known: {', '.join(REWARDS)}")
        if not 0 <= self.floor < 1:
            raise InputError(f"the random floor must be in [0, 1), got {self.floor}")
        fixed = self.policy.removesuffix(FLOOR_SUFFIX)
        if self.policy not in ("thompson", "linucb") and fixed not in STRATEGIES:
            raise InputError(
                f"unknown policy {self.policy!r}: 'thompson', 'linucb', one strategy of "
                f"{', '.join(STRATEGIES)}, or a strategy with '{FLOOR_SUFFIX}' (the random floor)"
            )
        if self.adaptive:
            check_strategies(list(self.strategies))
        return self

    @property
    def adaptive(self) -> bool:
        return self.policy in ("thompson", "linucb")


class Miner:
    """The selection policy: `choose` a batch from a view, `learn` from its labels."""

    def __init__(
        self, settings: MiningSettings, bandit: DiscountedThompson | LinUCB | None = None
    ) -> None:
        self.settings = settings.check()
        if bandit is None and settings.adaptive:
            bandit = make_bandit(settings.policy, list(settings.strategies))
        self.bandit = bandit

    def allocation(self, context: Context, rng: np.random.Generator) -> dict[str, float]:
        if self.bandit is None:
            fixed = self.settings.policy
            if fixed.endswith(FLOOR_SUFFIX):
                return with_floor(
                    {fixed.removesuffix(FLOOR_SUFFIX): 1.0, RANDOM: 0.0}, self.settings.floor
                )
            return {fixed: 1.0}
        return with_floor(self.bandit.allocation(context, rng), self.settings.floor)

    def choose(
        self,
        view: PoolView,
        size: int,
        rng: np.random.Generator,
        *,
        exclude: np.ndarray | None = None,
    ) -> tuple[list[Draw], dict[str, float], Context]:
        """Up to `size` draws from the unlabelled items (minus `exclude`, pool indices already
        sent out and not yet labelled), with the allocation and context they were drawn under."""
        if size <= 0:
            raise InputError(f"the batch size must be at least 1, got {size}")
        context = context_of(view.score, view.label)
        available = view.unlabelled
        if exclude is not None and len(exclude):
            available = np.setdiff1d(available, exclude, assume_unique=False)
        if not len(available):
            raise InputError("every item in the pool is labelled or already out for labelling")
        orders: dict[str, np.ndarray] = {}
        bandit = self.bandit
        if isinstance(bandit, DiscountedThompson) and bandit.cold and self.settings.warm_start > 0:
            predicted = {RANDOM: float(view.score[available].mean())}
            for arm in bandit.arms:
                if arm != RANDOM:
                    orders[arm] = _order(arm, view, rng, self.settings.clusters)
                    top = orders[arm][np.isin(orders[arm], available)][:size]
                    predicted[arm] = float(view.score[top].mean()) if len(top) else 0.0
            bandit.warm(predicted, self.settings.warm_start)
        allocation = self.allocation(context, rng)
        # A bandit's every strategy proposes at every slot, even one given no weight this batch,
        # so that the log can price any other allocation; a fixed strategy needs only its own.
        wanted = self.settings.strategies if self.bandit is not None else tuple(allocation)
        for arm in wanted:
            if arm != RANDOM and arm not in orders:
                orders[arm] = _order(arm, view, rng, self.settings.clusters)
        labelled = np.flatnonzero(view.labelled)
        draws = select_batch(
            view.X, available, labelled, orders, allocation, size, rng,
            duplicate_similarity=self.settings.duplicate_similarity,
        )  # fmt: skip
        return draws, allocation, context

    def learn(self, rewards: dict[str, tuple[float, int]], context: Context) -> None:
        if self.bandit is not None:
            self.bandit.update(rewards, context)

    def state(self) -> dict[str, Any] | None:
        return None if self.bandit is None else self.bandit.state()

    @classmethod
    def resume(cls, settings: MiningSettings, state: dict[str, Any] | None) -> Miner:
        return cls(settings, None if state is None else bandit_from_state(state))


def _order(arm: str, view: PoolView, rng: np.random.Generator, clusters: int) -> np.ndarray:
    if arm == "diversity":
        return diversity(view, rng, clusters)
    strategy = STRATEGIES[arm]
    assert strategy is not None
    return strategy(view, rng)


def positive_rewards(
    draws: Sequence[Draw], labels: Sequence[float], weights: Sequence[float]
) -> dict[str, tuple[float, int]]:
    """Per strategy: (sum of severity weights of the violations it found, items it picked)."""
    out: dict[str, list[float]] = {}
    for draw, label, weight in zip(draws, labels, weights, strict=True):
        total = out.setdefault(draw.strategy, [0.0, 0])
        total[0] += float(weight) if label == 1 else 0.0
        total[1] += 1
    return {arm: (t[0], int(t[1])) for arm, t in out.items()}


def auprc_rewards(
    fit_score: Callable[[np.ndarray], float],
    before: np.ndarray,
    draws: Sequence[Draw],
    scale: float,
) -> dict[str, tuple[float, int]]:
    """Per strategy: the validation AUPRC gained by retraining on the labelled items `before`
    plus only that strategy's picks, mapped to [0, 1] (0.5 = no change, ±`scale` = 0 or 1)."""
    baseline = fit_score(before)
    out: dict[str, tuple[float, int]] = {}
    for arm in dict.fromkeys(d.strategy for d in draws):
        picked = np.array([d.index for d in draws if d.strategy == arm])
        gain = fit_score(np.concatenate([before, picked])) - baseline
        reward = float(np.clip(0.5 + gain / (2 * scale), 0.0, 1.0))
        out[arm] = (reward * len(picked), len(picked))
    return out


def blend_rewards(
    a: dict[str, tuple[float, int]], b: dict[str, tuple[float, int]], weight: float
) -> dict[str, tuple[float, int]]:
    """`weight` × a + (1 − `weight`) × b, per strategy (both count the same picks)."""
    return {
        arm: (weight * a[arm][0] + (1 - weight) * b.get(arm, (0.5 * n, n))[0], n)
        for arm, (_, n) in a.items()
    }
