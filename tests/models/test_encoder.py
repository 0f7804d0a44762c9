"""The text encoder: offline only, unit vectors, input order kept although batches are length-sorted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bastion.errors import ModelError
from bastion.models.encoder import (
    DEFAULT_ENCODER,
    SHIPPED_ONNX_ENCODER,
    TextEncoder,
    encoder_runtime,
    load_encoder,
    resolve_encoder_path,
    shipped_onnx_encoder,
)


def test_a_hub_name_is_refused_with_a_message_not_downloaded() -> None:
    with pytest.raises(ModelError, match="never downloads models"):
        resolve_encoder_path("sentence-transformers/paraphrase-MiniLM-L3-v2")


def test_a_directory_that_is_not_a_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"neither modules\.json nor config\.json"):
        resolve_encoder_path(tmp_path)


def test_default_resolves_to_the_packaged_model() -> None:
    path = resolve_encoder_path(None)
    assert (path / "modules.json").exists() and path == resolve_encoder_path("all-MiniLM-L6-v2")


@pytest.mark.slow
def test_encode_keeps_order_and_returns_unit_vectors() -> None:
    enc = load_encoder()
    texts = ["short", "a much longer sentence " * 20, "", "medium length text here"]
    batch = enc.encode(texts)
    assert batch.shape == (4, enc.dim) and batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch[[0, 1, 3]], axis=1), 1.0, atol=1e-5)
    for i, text in enumerate(texts):
        np.testing.assert_allclose(enc.encode([text])[0], batch[i], atol=1e-5)
    assert enc.encode([]).shape == (0, enc.dim)


@pytest.mark.slow
def test_a_configured_model_directory_loads(tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "my-encoder"
    shutil.copytree(resolve_encoder_path(None), copy)
    enc = TextEncoder(copy)
    assert enc.name == "my-encoder"
    ref = load_encoder().encode(["same weights, same vector"])
    np.testing.assert_allclose(enc.encode(["same weights, same vector"]), ref, atol=1e-5)


def test_the_shipped_onnx_export_serves_the_default_encoder_unless_torch_is_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BASTION_RUNTIME", raising=False)
    assert SHIPPED_ONNX_ENCODER.is_dir()
    assert (
        shipped_onnx_encoder(None) == shipped_onnx_encoder(DEFAULT_ENCODER) == SHIPPED_ONNX_ENCODER
    )
    assert shipped_onnx_encoder(DEFAULT_ENCODER, "onnx") == SHIPPED_ONNX_ENCODER
    assert shipped_onnx_encoder("/models/my-encoder") is None
    assert shipped_onnx_encoder(DEFAULT_ENCODER, "torch") is None
    monkeypatch.setenv("BASTION_RUNTIME", "torch")
    assert shipped_onnx_encoder(DEFAULT_ENCODER) is None
    assert shipped_onnx_encoder(DEFAULT_ENCODER, "auto") == SHIPPED_ONNX_ENCODER
    monkeypatch.setenv("BASTION_RUNTIME", "fast")
    with pytest.raises(ModelError, match="runtime 'fast' is not one of auto, onnx, torch"):
        shipped_onnx_encoder(DEFAULT_ENCODER)
    assert encoder_runtime("onnx") == "onnx"
