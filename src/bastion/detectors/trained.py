"""Trained detector: a calibrated multi-label head over the encoder, blended with zero-shot.

It embeds each item's windows once and shares them with the zero-shot detector. Each category's
score is the head's and the zero-shot detector's probability blended in logit space (the
manifest's `zero_shot_weight`; all zero-shot for categories the model had too few training
positives for, listed in `zero_shot_fallback`), then calibrated by the map fit on held-out data
at training time, so fallback categories are calibrated too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bastion.detectors.base import BaseDetector, DetectorOutput, Evidence
from bastion.detectors.zero_shot import ZeroShotDetector, encoder_version
from bastion.items import Item
from bastion.models.artifact import ModelArtifact
from bastion.models.scoring import group_max
from bastion.policy import LoadedPolicy


class TrainedDetector(BaseDetector):
    name = "trained"
    fallback: np.ndarray

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
        self.blend = artifact.zero_shot_share
        self.thresholds = np.array([manifest.thresholds[c] for c in self.category_ids])
        self.model_name = manifest.name

    @property
    def version(self) -> str:
        model = f":{self.model_name}" if self.model_name else ""
        return self.name + model + encoder_version(self.encoder)

    @classmethod
    def load(
        cls,
        directory: Path | str,
        policy: LoadedPolicy,
        zero_shot: ZeroShotDetector,
        *,
        onnx: bool = False,
    ) -> TrainedDetector:
        return cls(ModelArtifact.load(directory, policy.version, onnx=onnx), zero_shot, policy)

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
        emb = windows.embeddings
        zs = self.zero_shot.window_probs(emb)[0] if self.blend.any() else None
        scores, _ = group_max(self.artifact.predict_proba(emb, zs), windows.owner, n)
        for i, c in zip(*np.nonzero(scores >= self.thresholds * 0.8), strict=True):
            source = (
                "zero-shot fallback"
                if self.fallback[c]
                else f"model {self.model_name}"
                + (f" blended with zero-shot ({self.blend[c]:.0%})" if self.blend[c] else "")
            )
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
