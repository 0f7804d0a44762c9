"""Nudity detector: NudeNet's exposed-body-part regions, scored against the policy's sexual categories.

Which categories NudeNet speaks to is the policy's call (`media.nudity` on a category lists the
region labels that count), so a team can count exposed buttocks as sexual content or not, and
"sexual/minors" is never inferred from a body part (NudeNet does not estimate age). A category
with labels gets the highest confidence among its labels' regions (0 when none is found: a
considered "no"); every other category gets NaN (no opinion). The regions are the evidence.

NudeNet's confidence is not on the same scale as a category's calibrated probability, and no
licensed nudity data exists here to calibrate it. So its own decision point (`flag_at`, 0.5)
is put on the category's flag threshold (`align_threshold`): a region at 0.5 or more flags,
one below does not, whatever threshold calibration gave the text model.

NudeNet is an optional extra (`bastion[nudity]`: its wheel's licence files are AGPL-3.0). Without
it the detector scores nothing (NaN) and `uncovered` names the categories it should have scored,
so the verdict says that no detector looked at those images for them, rather than scoring 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from bastion.detectors.base import BaseDetector, DetectorOutput, Evidence, score_item_images
from bastion.items import Item
from bastion.media.nudenet import NudeNet, missing_reason
from bastion.policy import LoadedPolicy

if TYPE_CHECKING:
    from bastion.detectors.registry import DetectorSetup


@lru_cache(maxsize=1)
def load_nudenet() -> NudeNet:
    """One ONNX session per process (12 MB model, loaded in a fraction of a second)."""
    return NudeNet()


class NudityDetector(BaseDetector):
    name = "nudity"
    input_type = "image"

    def __init__(
        self,
        policy: LoadedPolicy,
        model: NudeNet | None = None,
        *,
        thresholds: np.ndarray | None = None,
        flag_at: float = 0.5,
    ) -> None:
        self.category_ids = list(policy.category_ids)
        self.labels = [set(c.media.nudity) for c in policy.policy.categories]
        self.model = model
        self.thresholds = (
            np.full(len(self.category_ids), flag_at) if thresholds is None else thresholds
        )
        self.flag_at = flag_at
        # Whether NudeNet is installed is fixed for the process: asked once, here.
        self.missing = missing_reason() if model is None and self.applies else None

    @classmethod
    def from_setup(cls, setup: DetectorSetup) -> NudityDetector:
        return cls(setup.policy, thresholds=setup.thresholds)

    @property
    def applies(self) -> bool:
        """False when the policy maps no category to nudity labels (then nothing is run)."""
        return any(self.labels)

    @property
    def uncovered(self) -> dict[str, str]:
        """The categories this detector should score on images but cannot, each with why.

        Empty unless NudeNet is not installed; then every category that lists nudity labels,
        so that the Moderator can send such media to a person instead of reading NaN as 0.
        """
        if self.missing is None:
            return {}
        why = f"no detector covers this category on images: {self.missing}"
        return {
            cid: why for cid, labels in zip(self.category_ids, self.labels, strict=True) if labels
        }

    def score(self, items: Sequence[Item]) -> DetectorOutput:
        return score_item_images(self, items)

    def score_images(self, images: Sequence[np.ndarray], sources: Sequence[str]) -> DetectorOutput:
        n_cat = len(self.category_ids)
        scores = np.full((len(images), n_cat), np.nan)
        evidence: list[list[Evidence]] = [[] for _ in images]
        if not self.applies or not images or self.missing is not None:
            return DetectorOutput(scores, evidence)
        model = self.model or load_nudenet()
        for r, regions in enumerate(model.detect(images)):
            for c, labels in enumerate(self.labels):
                if not labels:
                    continue
                hits = [g for g in regions if g.label in labels]
                raw = max((g.score for g in hits), default=0.0)
                scores[r, c] = align_threshold(raw, self.flag_at, float(self.thresholds[c]))
                if hits:
                    found = ", ".join(f"{g.label} {g.score:.2f}" for g in hits[:5])
                    evidence[r].append(
                        Evidence(
                            self.name,
                            self.category_ids[c],
                            round(float(scores[r, c]), 4),
                            f"NudeNet found {found} in {sources[r]}",
                            input_type=self.input_type,
                            source=sources[r],
                            boxes=tuple(g.box for g in hits),
                        )
                    )
        return DetectorOutput(scores, evidence)


def align_threshold(score: float, source: float, target: float) -> float:
    """Put a detector's decision point `source` on the policy's threshold `target`.

    Above `source`, [source, 1] maps linearly onto [target, 1], so `score >= source` is the
    same decision as `mapped >= target`. Below it the score is kept as it is (scaled down
    only if `target` is lower than `source`): a weak region on a coffee cup stays a weak 0.3
    rather than being stretched up towards the review band.
    """
    if score < source:
        return score * min(1.0, target / source)
    return target + (score - source) * (1.0 - target) / (1.0 - source)
