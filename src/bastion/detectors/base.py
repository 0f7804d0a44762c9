"""The Detector protocol: a batch of items in, a score per (item, category) out, NaN where it does not apply."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from bastion.items import Item


@dataclass(frozen=True)
class Evidence:
    """Why a detector scored a category as it did, in a form a reviewer can check."""

    detector: str
    category: str
    score: float
    detail: str
    ref: str | None = None


@dataclass
class DetectorOutput:
    """Scores `(n_items, n_categories)` in the policy's category order, plus evidence per item.

    `truncated[i]` is True when the detector could not look at all of item i (too long).
    """

    scores: np.ndarray
    evidence: list[list[Evidence]] = field(default_factory=list)
    truncated: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def __post_init__(self) -> None:
        if self.scores.ndim != 2:
            raise ValueError(f"detector scores must be 2-D, got shape {self.scores.shape}")
        if not self.evidence:
            self.evidence = [[] for _ in range(self.scores.shape[0])]
        if len(self.truncated) == 0:
            self.truncated = np.zeros(self.scores.shape[0], dtype=bool)
        elif len(self.truncated) != self.scores.shape[0]:
            raise ValueError("detector 'truncated' must have one entry per item")


@runtime_checkable
class Detector(Protocol):
    """Anything with a name and a batch `score` method is a detector.

    Kept this small on purpose (like a threatexchange signal type): a new detector plugs into the
    Moderator without touching the others. A detector that does not apply to an item or category
    returns NaN there, so fusion can tell "no opinion" from "safe".
    """

    name: str
    category_ids: list[str]

    def score(self, items: Sequence[Item]) -> DetectorOutput: ...
