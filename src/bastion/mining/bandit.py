"""Bandits over acquisition strategies: how much of the next batch each strategy gets.

The arms are strategies, a pull is one labelled item, and the reward is what that label was
worth (`bastion.mining.rewards`). Two learners, sklearn-style (hyper-parameters in `__init__`,
learned state ending in `_`), both with a JSON state so a mining project resumes after a restart:

- `DiscountedThompson` (the default): a Beta posterior per strategy whose counts are multiplied
  by `discount` before each update (Raj and Kalyani, 2017), so old evidence fades and the split
  follows a pool whose best strategy changes as the model improves (top score pays early on a
  rare class, uncertainty later). The allocation is each strategy's probability of having the
  highest sampled rate, estimated from 4,000 joint draws: an explicit probability, which the
  propensity log needs, rather than one sampled winner. A flat prior would split the first batch
  evenly over all seven strategies, and half of it would go to strategies that rarely find a
  violation, so the first batch is warm-started instead: each arm's prior is centred on the
  share of violations the current model predicts among the items that strategy would pick, worth
  `warm_start` labels (20 by default), and fades with the discount like any other evidence.
- `LinUCB`: a ridge regression per strategy from a context (labelled-set size, positive rate,
  entropy of the pool's scores) to the reward, with an upper confidence bonus (Li et al., 2010);
  the allocation goes to the best upper bound (ties shared).

Either way `with_floor` keeps at least `floor` (5 % by default) of every batch on uniform random
picks, so every item keeps a chance of selection, and prevalence can be estimated without bias.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from bastion.mining.strategies import RANDOM


@dataclass(frozen=True)
class Context:
    """What LinUCB conditions on: the state of the labelling effort when a batch is chosen."""

    labelled: int
    positive_rate: float
    score_entropy: float

    def vector(self) -> np.ndarray:
        return np.array(
            [1.0, np.log1p(self.labelled) / np.log(1e4), self.positive_rate, self.score_entropy]
        )


class Bandit(Protocol):
    arms: list[str]

    def allocation(self, context: Context, rng: np.random.Generator) -> dict[str, float]: ...

    def update(self, rewards: dict[str, tuple[float, int]], context: Context) -> Bandit: ...

    def state(self) -> dict[str, Any]: ...


class DiscountedThompson:
    """Thompson sampling over Beta(alpha, beta) per arm with discounted counts.

    `update` takes, per arm, (sum of rewards in [0, 1], number of pulls) for one batch.
    """

    kind = "thompson"

    def __init__(
        self, arms: list[str], discount: float = 0.9, prior: tuple[float, float] = (1.0, 1.0)
    ) -> None:
        if not 0 < discount <= 1:
            raise ValueError(f"discount must be in (0, 1], got {discount}")
        self.arms = list(arms)
        self.discount = discount
        self.prior = prior
        self.alpha_ = np.full(len(arms), prior[0])
        self.beta_ = np.full(len(arms), prior[1])
        self.pulls_ = np.zeros(len(arms))

    @property
    def cold(self) -> bool:
        """Nothing learned and no warm start yet: every arm still at the prior."""
        return bool(
            self.pulls_.sum() == 0
            and np.all(self.alpha_ == self.prior[0])
            and np.all(self.beta_ == self.prior[1])
        )

    def warm(self, predicted: dict[str, float], strength: float) -> DiscountedThompson:
        """Start each arm's posterior from a predicted reward rate worth `strength` pulls."""
        for arm, rate in predicted.items():
            j = self.arms.index(arm)
            rate = float(np.clip(rate, 0.0, 1.0))
            self.alpha_[j] = self.prior[0] + strength * rate
            self.beta_[j] = self.prior[1] + strength * (1 - rate)
        return self

    def allocation(self, context: Context, rng: np.random.Generator) -> dict[str, float]:
        draws = rng.beta(self.alpha_, self.beta_, size=(4000, len(self.arms)))
        wins = np.bincount(draws.argmax(axis=1), minlength=len(self.arms)) / len(draws)
        return dict(zip(self.arms, wins.tolist(), strict=True))

    def update(self, rewards: dict[str, tuple[float, int]], context: Context) -> DiscountedThompson:
        # Discount toward the prior, not toward zero, so an arm unplayed for long returns to
        # "unknown" instead of a vanishing (and so overconfident-looking) posterior.
        a0, b0 = self.prior
        self.alpha_ = a0 + self.discount * (self.alpha_ - a0)
        self.beta_ = b0 + self.discount * (self.beta_ - b0)
        self.pulls_ *= self.discount
        for arm, (total, n) in rewards.items():
            j = self.arms.index(arm)
            self.alpha_[j] += total
            self.beta_[j] += n - total
            self.pulls_[j] += n
        return self

    def state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "arms": self.arms,
            "discount": self.discount,
            "prior": list(self.prior),
            "alpha": self.alpha_.tolist(),
            "beta": self.beta_.tolist(),
            "pulls": self.pulls_.tolist(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DiscountedThompson:
        bandit = cls(state["arms"], state["discount"], tuple(state["prior"]))
        bandit.alpha_ = np.asarray(state["alpha"], dtype=float)
        bandit.beta_ = np.asarray(state["beta"], dtype=float)
        bandit.pulls_ = np.asarray(state["pulls"], dtype=float)
        return bandit


class LinUCB:
    """Disjoint LinUCB: per arm, A = I + sum x x^T and b = sum r x over its pulls."""

    kind = "linucb"

    def __init__(self, arms: list[str], alpha: float = 1.0, dim: int = 4) -> None:
        self.arms = list(arms)
        self.alpha = alpha
        self.A_ = np.stack([np.eye(dim) for _ in arms])
        self.b_ = np.zeros((len(arms), dim))

    def allocation(self, context: Context, rng: np.random.Generator) -> dict[str, float]:
        x = context.vector()
        ucb = np.empty(len(self.arms))
        for j in range(len(self.arms)):
            inv = np.linalg.inv(self.A_[j])
            ucb[j] = inv @ self.b_[j] @ x + self.alpha * np.sqrt(x @ inv @ x)
        best = np.isclose(ucb, ucb.max())
        return dict(zip(self.arms, (best / best.sum()).tolist(), strict=True))

    def update(self, rewards: dict[str, tuple[float, int]], context: Context) -> LinUCB:
        x = context.vector()
        for arm, (total, n) in rewards.items():
            if n == 0:
                continue
            j = self.arms.index(arm)
            # n pulls at the same context with mean reward total / n.
            self.A_[j] += n * np.outer(x, x)
            self.b_[j] += total * x
        return self

    def state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "arms": self.arms,
            "alpha": self.alpha,
            "A": self.A_.tolist(),
            "b": self.b_.tolist(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LinUCB:
        bandit = cls(state["arms"], state["alpha"], len(state["b"][0]))
        bandit.A_ = np.asarray(state["A"], dtype=float)
        bandit.b_ = np.asarray(state["b"], dtype=float)
        return bandit


BANDITS = {"thompson": DiscountedThompson, "linucb": LinUCB}


def make_bandit(kind: str, arms: list[str]) -> DiscountedThompson | LinUCB:
    from bastion.errors import InputError

    if kind not in BANDITS:
        raise InputError(f"unknown bandit {kind!r}; known: {', '.join(BANDITS)}")
    return DiscountedThompson(arms) if kind == "thompson" else LinUCB(arms)


def bandit_from_state(state: dict[str, Any]) -> DiscountedThompson | LinUCB:
    if state.get("kind") == "linucb":
        return LinUCB.from_state(state)
    return DiscountedThompson.from_state(state)


def with_floor(allocation: dict[str, float], floor: float) -> dict[str, float]:
    """`allocation` scaled to 1 - floor, with `floor` added to random (which must be an arm)."""
    if RANDOM not in allocation:
        raise ValueError("the allocation has no random arm to put the exploration floor on")
    total = sum(allocation.values())
    scaled = {arm: (1 - floor) * p / total for arm, p in allocation.items()}
    scaled[RANDOM] += floor
    return scaled


def context_of(score: np.ndarray, label: np.ndarray) -> Context:
    """The context now: how many labels, what share positive, how unsure the model is overall."""
    known = label[np.isfinite(label)]
    p = np.clip(score, 1e-6, 1 - 1e-6)
    entropy = float(np.mean(-(p * np.log2(p) + (1 - p) * np.log2(1 - p))))
    return Context(
        labelled=len(known),
        positive_rate=float(known.mean()) if len(known) else 0.0,
        score_entropy=entropy,
    )
