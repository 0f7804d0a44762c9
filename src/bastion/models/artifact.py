"""Model artifacts: a directory with manifest.json (what, from what, how good) and safetensors weights.

The manifest is the model's paper trail: the policy version it was trained for, the encoder, every
training source with its licence and row count, validation metrics and the chosen thresholds. A
model is only loaded for the policy version it was trained for, because category ids, rules and
examples may have changed meaning since.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from bastion.errors import ModelError
from bastion.models.calibration import CategoryCalibrator
from bastion.models.heads import MultiLabelHead
from bastion.models.onnx_runtime import OnnxHead

MANIFEST = "manifest.json"
WEIGHTS = "head.safetensors"
HEAD_ONNX = "head.onnx"
ONNX_ENCODER_DIR = "encoder-int8"
FINETUNED_ENCODER = "encoder"  # sub-directory of a model with a fine-tuned encoder
AUPRC_TOLERANCE = 0.005
FORMAT_VERSION = 1


class TrainingSource(BaseModel):
    name: str
    licence: str
    use: str
    rows: int
    positives: int
    duplicates: int = Field(
        0,
        description="rows dropped as the same text as an earlier row (of an earlier source, or "
        "a repeat within this one)",
    )
    weight: float = Field(1.0, description="the recipe's emphasis on this source (1: as its size)")
    role: Literal["train", "calibration"] = Field(
        "train", description="calibration: held out whole, only for calibration and thresholds"
    )


class ThresholdTarget(BaseModel):
    """Per category: the lowest threshold with precision `value` ("precision"), the lowest
    with false-positive rate at most `value` ("fpr"), or the best F1 ("f1", no value). Then,
    optionally, one shift of them all for the best F-beta of the any-category flag
    (`binary_beta`), and a raise that caps the flags on wholly-safe sources (`max_safe_flagged`)."""

    kind: Literal["precision", "fpr", "f1"]
    value: float = Field(1.0, ge=0.0, le=1.0)
    binary_beta: float | None = Field(
        None,
        gt=0.0,
        description="then move all thresholds together (in logit space) to the best F-beta of "
        "'flagged in any category' on the calibration split; above 1 favours recall",
    )
    max_safe_flagged: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="then raise thresholds together until no wholly-safe source has more than "
        "this share of its calibration rows flagged in any category",
    )


class CalibrationParams(BaseModel):
    method: Literal["platt", "isotonic"]
    fitted: list[bool]
    pooled: list[bool] = Field(default_factory=list, description="columns on the pooled map")
    platt: list[list[float]]
    isotonic: list[tuple[list[float], list[float]] | None]


class RuntimeCheck(BaseModel):
    """The int8 ONNX path measured against the PyTorch path on the held-out calibration rows."""

    runtime: str = "onnx-int8"
    encoder_sha256: str = Field(description="the exported encoder file the check ran on")
    rows: int
    max_abs_diff: float = Field(description="largest difference of any calibrated score")
    flag_agreement: float = Field(
        description="share of rows flagged (any category) by both or neither"
    )
    binary_auprc_torch: float | None
    binary_auprc_onnx: float | None
    tolerance: float = AUPRC_TOLERANCE

    @property
    def within_tolerance(self) -> bool:
        if self.binary_auprc_torch is None or self.binary_auprc_onnx is None:
            return False
        return self.binary_auprc_torch - self.binary_auprc_onnx <= self.tolerance


class Manifest(BaseModel):
    format_version: int = FORMAT_VERSION
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    name: str
    policy_id: str
    policy_version: str
    encoder: str
    encoder_dim: int
    categories: list[str]
    hidden: int = 0
    calibration: CalibrationParams
    thresholds: dict[str, float]
    threshold_target: ThresholdTarget
    zero_shot_fallback: list[str] = Field(
        default_factory=list, description="categories without training data, scored zero-shot"
    )
    zero_shot_weight: float = Field(
        0.0, description="zero-shot share of each non-fallback category's score (logit blend)"
    )
    sources: list[TrainingSource]
    metrics: dict[str, float | None] = Field(default_factory=dict)
    recipe: dict[str, object] = Field(default_factory=dict)
    runtime_check: RuntimeCheck | None = Field(
        None, description="the int8 ONNX path against PyTorch; loading uses ONNX only if it passed"
    )


class ModelArtifact:
    """A trained head, its calibration and its manifest, as saved in one directory."""

    def __init__(
        self, manifest: Manifest, head: MultiLabelHead | OnnxHead, calibrator: CategoryCalibrator
    ):
        self.manifest = manifest
        self.head = head
        self.calibrator = calibrator

    @property
    def zero_shot_share(self) -> np.ndarray:
        """Per category, the zero-shot share of its score: all of it for fallback categories."""
        m = self.manifest
        return np.array(
            [1.0 if c in m.zero_shot_fallback else m.zero_shot_weight for c in m.categories]
        )

    def predict_proba(self, X: np.ndarray, zero_shot: np.ndarray | None) -> np.ndarray:
        """Calibrated probabilities (n, C) for embeddings X, given the zero-shot detector's
        probabilities for the same rows (None only when the model blends in none)."""
        from bastion.models.scoring import blend_with_zero_shot

        probs = self.head.predict_proba(X)
        share = self.zero_shot_share
        if share.any():
            if zero_shot is None:
                raise ValueError("this model blends in zero-shot scores: pass them")
            probs = blend_with_zero_shot(probs, zero_shot, share)
        return self.calibrator.transform(probs)

    def save(self, directory: Path | str) -> Path:
        """Write the manifest, the head's weights and its ONNX export."""
        from safetensors.numpy import save_file

        from bastion.models.onnx_export import export_head

        if not isinstance(self.head, MultiLabelHead):
            raise ModelError("a model loaded for ONNX serving has no trainable weights to save")
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        weights = {
            k: np.ascontiguousarray(v, dtype=np.float32) for k, v in self.head.state_dict().items()
        }
        save_file(weights, str(out / WEIGHTS))
        export_head(self.head, out / HEAD_ONNX, self.manifest.encoder_dim)
        write_manifest(self.manifest, out)
        return out

    @classmethod
    def load(
        cls, directory: Path | str, policy_version: str | None = None, *, onnx: bool = False
    ) -> ModelArtifact:
        """Load a model; refuse it when it was trained for another policy version. With `onnx`,
        the head runs from its ONNX export (no PyTorch), where the directory has one."""
        from safetensors.numpy import load_file

        path = Path(directory)
        manifest = read_manifest(path)
        if policy_version is not None and manifest.policy_version != policy_version:
            raise ModelError(
                f"{path} was trained for policy {manifest.policy_version}, but the policy in use is "
                f"{policy_version}. Its categories or rules may mean something else now: retrain "
                "with `bastion train`, or moderate with the policy version it was trained for."
            )
        if onnx and (path / HEAD_ONNX).exists():
            return cls(
                manifest, OnnxHead(path / HEAD_ONNX), calibrator_from_params(manifest.calibration)
            )
        if not (path / WEIGHTS).exists():
            raise ModelError(f"{path}: weights file {WEIGHTS} is missing")
        head = MultiLabelHead.from_state_dict(
            load_file(str(path / WEIGHTS)), len(manifest.categories), manifest.hidden
        )
        return cls(manifest, head, calibrator_from_params(manifest.calibration))


def write_manifest(manifest: Manifest, directory: Path | str) -> None:
    (Path(directory) / MANIFEST).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")


def read_manifest(directory: Path | str) -> Manifest:
    """A model directory's manifest, checked; ModelError says what is wrong with it."""
    path = Path(directory)
    if not (path / MANIFEST).exists():
        raise ModelError(f"{path}: not a Bastion model directory (no {MANIFEST})")
    try:
        manifest = Manifest.model_validate(json.loads((path / MANIFEST).read_text("utf-8")))
    except (ValidationError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path / MANIFEST}: not a valid model manifest: {exc}") from None
    if manifest.format_version != FORMAT_VERSION:
        raise ModelError(
            f"{path}: model format {manifest.format_version}, this Bastion reads {FORMAT_VERSION}"
        )
    return manifest


def calibration_params(cal: CategoryCalibrator) -> CalibrationParams:
    return CalibrationParams(
        method=cal.method,
        fitted=[bool(f) for f in cal.fitted_],
        pooled=[bool(f) for f in cal.pooled_],
        platt=[[float(a), float(b)] for a, b in cal.platt_],
        isotonic=[
            None if iso is None else ([float(x) for x in iso[0]], [float(y) for y in iso[1]])
            for iso in cal.isotonic_
        ],
    )


def calibrator_from_params(params: CalibrationParams) -> CategoryCalibrator:
    cal = CategoryCalibrator(params.method)
    cal.fitted_ = np.array(params.fitted, dtype=bool)
    cal.pooled_ = np.array(params.pooled or [False] * len(params.fitted), dtype=bool)
    cal.platt_ = np.array(params.platt, dtype=np.float64).reshape(-1, 2)
    cal.isotonic_ = [
        None if iso is None else (np.array(iso[0]), np.array(iso[1])) for iso in params.isotonic
    ]
    return cal
