"""Model artifacts round-trip exactly and are refused for another policy version."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bastion.errors import ModelError
from bastion.models.artifact import (
    Manifest,
    ModelArtifact,
    ThresholdTarget,
    TrainingSource,
    calibration_params,
)
from bastion.models.calibration import CategoryCalibrator
from bastion.models.heads import MultiLabelHead


def _artifact(hidden: int = 0) -> tuple[ModelArtifact, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 6)).astype(np.float32)
    Y = np.column_stack([X[:, 0] > 0, X[:, 1] > 0.5]).astype(float)
    head = MultiLabelHead(epochs=20, hidden=hidden).fit(X, Y)
    cal = CategoryCalibrator("isotonic", min_positives=5).fit(head.predict_proba(X), Y)
    manifest = Manifest(
        name="t",
        policy_id="p",
        policy_version="p@1+abc",
        encoder="fake",
        encoder_dim=6,
        categories=["a", "b"],
        hidden=hidden,
        calibration=calibration_params(cal),
        thresholds={"a": 0.5, "b": 0.7},
        threshold_target=ThresholdTarget(kind="precision", value=0.8),
        sources=[TrainingSource(name="s", licence="MIT", use="ship-ok", rows=400, positives=200)],
        metrics={"val_auprc": 0.9},
    )
    return ModelArtifact(manifest, head, cal), X


@pytest.mark.parametrize("hidden", [0, 16])
def test_round_trip_gives_identical_scores(tmp_path: Path, hidden: int) -> None:
    art, X = _artifact(hidden)
    art.save(tmp_path / "m")
    loaded = ModelArtifact.load(tmp_path / "m", policy_version="p@1+abc")
    np.testing.assert_allclose(loaded.head.predict_proba(X), art.head.predict_proba(X), atol=1e-6)
    a = art.calibrator.transform(art.head.predict_proba(X))
    b = loaded.calibrator.transform(loaded.head.predict_proba(X))
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert loaded.manifest.sources[0].licence == "MIT"
    assert loaded.manifest.thresholds == {"a": 0.5, "b": 0.7}


def test_another_policy_version_is_refused_with_both_versions_named(tmp_path: Path) -> None:
    art, _ = _artifact()
    art.save(tmp_path / "m")
    with pytest.raises(ModelError, match=r"trained for policy p@1\+abc.*in use is p@1\+def"):
        ModelArtifact.load(tmp_path / "m", policy_version="p@1+def")


def test_broken_directories_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a Bastion model directory"):
        ModelArtifact.load(tmp_path)
    art, _ = _artifact()
    art.save(tmp_path / "m")
    (tmp_path / "m" / "head.safetensors").unlink()
    with pytest.raises(ModelError, match="weights file"):
        ModelArtifact.load(tmp_path / "m")
    (tmp_path / "m" / "manifest.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(ModelError, match="not a valid model manifest"):
        ModelArtifact.load(tmp_path / "m")
