"""The LLM stage of the Moderator's cascade: which cells go to the judge, and how its answer counts.

Cheap detectors settle most items: a score far below or far above the threshold will not be
changed by an LLM's opinion often enough to pay for it. The judge is asked only where the cheap
stage is unsure (its fused score inside the category's uncertain band) and, optionally, for
categories that have no trained model (a new policy, before data exists), where the cheap stage
is the zero-shot prior.

Its probability is fused with the cheap score in logit space, weighted: `weight` 1 trusts both
alike, 0 ignores the judge, large values let it decide. `fit_weight` picks the weight that best
predicts held-out labels, so the judge counts as much as it has earned on the safety team's own
data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from bastion.judge.judge import LLMJudge
from bastion.judge.settings import DEFAULT_BAND as DEFAULT_BAND
from bastion.judge.settings import JudgeSettings as JudgeSettings
from bastion.models.scoring import logit

WEIGHT_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
EPS = 1e-4


def fuse_judge(cheap: np.ndarray, judge: np.ndarray, weight: float) -> np.ndarray:
    """sigmoid((logit(cheap) + weight * logit(judge)) / (1 + weight)); NaN judge keeps cheap.

    A weighted mean of log-odds: the judge moves the score by as much as it is trusted, never
    past its own opinion, and a failed judgement (NaN) leaves the cheap score as it was.
    """
    cheap = np.asarray(cheap, dtype=float)
    judge = np.asarray(judge, dtype=float)
    known = np.where(np.isfinite(judge), judge, 0.5)
    z = (logit(cheap, EPS) + weight * logit(known, EPS)) / (1 + weight)
    fused: np.ndarray = np.where(np.isfinite(judge), 1 / (1 + np.exp(-z)), cheap)
    return fused


@dataclass
class LLMCascade:
    """Settings of the LLM stage; `Moderator(..., cascade=LLMCascade(judge))` turns it on.

    `band` is the uncertain band (low, high) of the cheap fused score, with per-category
    overrides in `bands`; `untrained` also sends every cell of a category without a trained
    model; `categories` limits the stage to some categories (default all).
    """

    judge: LLMJudge
    band: tuple[float, float] = DEFAULT_BAND
    bands: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    weight: float = 1.0
    untrained: bool = False
    categories: Sequence[str] | None = None

    def __post_init__(self) -> None:
        ids = self.judge.policy.category_ids
        for name, (low, high) in {"default": self.band, **self.bands}.items():
            if not 0.0 <= low <= high <= 1.0:
                raise ValueError(f"LLM band for {name} must satisfy 0 <= low <= high <= 1")
        unknown = [c for c in [*self.bands, *(self.categories or [])] if c not in ids]
        if unknown:
            raise ValueError(f"LLM cascade names unknown categories: {', '.join(unknown)}")
        if self.weight < 0:
            raise ValueError("the LLM weight must be >= 0")

    def route(self, scores: np.ndarray, untrained: np.ndarray | None = None) -> np.ndarray:
        """Which (item, category) cells to judge: a boolean array shaped like `scores`."""
        ids = self.judge.policy.category_ids
        low = np.array([self.bands.get(c, self.band)[0] for c in ids])
        high = np.array([self.bands.get(c, self.band)[1] for c in ids])
        finite = np.isfinite(scores)
        cells: np.ndarray = finite & (scores >= low) & (scores <= high)
        if self.untrained and untrained is not None:
            cells |= finite & np.asarray(untrained, dtype=bool)[None, :]
        if self.categories is not None:
            cells &= np.isin(np.array(ids), list(self.categories))[None, :]
        return cells

    def fuse(self, cheap: np.ndarray, judge: np.ndarray) -> np.ndarray:
        return fuse_judge(cheap, judge, self.weight)

    def fit_weight(self, cheap: np.ndarray, judge: np.ndarray, labels: np.ndarray) -> LLMCascade:
        """The weight from WEIGHT_GRID with the lowest log-loss on labelled, judged cells."""
        cheap, judge, labels = (np.asarray(a, dtype=float).ravel() for a in (cheap, judge, labels))
        keep = np.isfinite(cheap) & np.isfinite(judge) & np.isfinite(labels)
        if keep.sum() == 0:
            raise ValueError("no labelled cell has both a cheap and a judge score")
        losses = [
            _log_loss(fuse_judge(cheap[keep], judge[keep], w), labels[keep]) for w in WEIGHT_GRID
        ]
        self.weight = float(WEIGHT_GRID[int(np.argmin(losses))])
        return self


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    q = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))
