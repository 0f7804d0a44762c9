"""Trained detector: a calibrated multi-label head over the encoder, zero-shot where it has no data.

It embeds each item's windows once and shares them with the zero-shot detector, whose score is
used (already calibrated on the policy's own examples) for every category the model had too few
training positives for; the manifest lists those categories.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bastion.detectors.base import DetectorOutput, Evidence
from bastion.detectors.zero_shot import ZeroShotDetector
from bastion.items import Item
from bastion.models.artifact import ModelArtifact
from bastion.models.scoring import group_max
from bastion.policy import LoadedPolicy


class TrainedDetector:
    name = "trained"

    def __init__(
        self, artifact: ModelArtifact, zero_shot: ZeroShotDetector, policy: LoadedPolicy
    ) -> None:
        manifest = artifact.manifest
        if manifest.categories != policy.category_ids:
            raise ValueError("model categories differ from the policy's")  # version check precedes
        if (
            manifest.encoder != zero_shot.encoder.name
            or manifest.encoder_dim != zero_shot.encoder.dim
        ):
            from bastion.errors import ModelError

            raise ModelError(
                f"model '{manifest.name}' was trained on encoder {manifest.encoder} "
                f"({manifest.encoder_dim} dims), but {zero_shot.encoder.name} is loaded"
            )
        self.artifact = artifact
        self.zero_shot = zero_shot
        self.encoder = zero_shot.encoder
        self.category_ids = list(policy.category_ids)
        self.fallback = np.array([c in manifest.zero_shot_fallback for c in self.category_ids])
        self.thresholds = np.array([manifest.thresholds[c] for c in self.category_ids])
        self.model_name = manifest.name

    @classmethod
    def load(
        cls, directory: Path | str, policy: LoadedPolicy, zero_shot: ZeroShotDetector
    ) -> TrainedDetector:
        return cls(ModelArtifact.load(directory, policy.version), zero_shot, policy)

    def score(
        self, items: Sequence[Item], progress: Callable[[int], None] | None = None
    ) -> DetectorOutput:
        windows = self.zero_shot.embed(items, progress)
        n = len(items)
        evidence: list[list[Evidence]] = [[] for _ in range(n)]
        if len(windows.owner) == 0:
            return DetectorOutput(
                np.full((n, len(self.category_ids)), np.nan), evidence, windows.cut
            )
        head = self.artifact.head
        probs = self.artifact.calibrator.transform(head.predict_proba(windows.embeddings))
        if self.fallback.any():
            zs, _ = self.zero_shot.window_probs(windows.embeddings)
            probs[:, self.fallback] = zs[:, self.fallback]
        scores, _ = group_max(probs, windows.owner, n)
        for i, c in zip(*np.nonzero(scores >= self.thresholds * 0.8), strict=True):
            source = "zero-shot fallback" if self.fallback[c] else f"model {self.model_name}"
            evidence[i].append(
                Evidence(
                    self.name,
                    self.category_ids[c],
                    round(float(scores[i, c]), 4),
                    f"{source}: calibrated probability {scores[i, c]:.2f} "
                    f"(threshold {self.thresholds[c]:.2f})",
                )
            )
        return DetectorOutput(scores, evidence, windows.cut)
