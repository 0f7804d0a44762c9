"""NudeNet wrapper: agrees with NudeNet's own detector, batches consistently, and handles odd shapes.

No test image here contains nudity: the scikit-image sample photos are enough to pin the
pre/post-processing, because agreement with NudeNet's reference code is what is checked.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from bastion.errors import InputError, ModelError
from bastion.media.nudenet import (
    EXPOSED_LABELS,
    LABELS,
    NudeNet,
    Region,
    default_model_path,
    missing_reason,
)

# `nudenet` (the weights) is the optional extra `bastion[nudity]`; `make install` and CI have it.
pytestmark = pytest.mark.skipif(missing_reason() is not None, reason=str(missing_reason()))


def _samples() -> dict[str, np.ndarray]:
    camera = data.camera()
    astronaut = data.astronaut()
    return {
        "astronaut": astronaut,
        "chelsea": data.chelsea(),
        "coffee": data.coffee(),
        "camera": np.stack([camera] * 3, axis=-1),
        "wide_strip": np.ascontiguousarray(astronaut[:7, :300]),
        "tall_crop": np.ascontiguousarray(astronaut[:, 100:250]),
        "one_pixel": astronaut[:1, :1].copy(),
    }


@pytest.fixture(scope="module")
def detector() -> NudeNet:
    return NudeNet(threads=2)


@pytest.fixture(scope="module")
def reference() -> object:
    from nudenet import NudeDetector

    return NudeDetector()


def _close(mine: list[Region], theirs: list[dict[str, object]], *, px: int = 2) -> None:
    assert [r.label for r in mine] == [d["class"] for d in theirs]
    for region, ref in zip(mine, theirs, strict=True):
        assert region.score == pytest.approx(ref["score"], abs=0.02)
        assert np.abs(np.subtract(region.box, ref["box"])).max() <= px  # type: ignore[arg-type]


def test_labels_match_the_models_own_metadata() -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(default_model_path()), providers=["CPUExecutionProvider"])
    names = ast.literal_eval(session.get_modelmeta().custom_metadata_map["names"])
    assert tuple(names[i] for i in range(len(names))) == LABELS
    assert set(LABELS) >= EXPOSED_LABELS
    assert len(EXPOSED_LABELS) == 5


@pytest.mark.parametrize("name", list(_samples()))
def test_matches_nudenet_reference(detector: NudeNet, reference: object, name: str) -> None:
    """Same labels, boxes within 2 px and scores within 0.02 of `NudeDetector().detect`.

    NudeNet 3.4.2 feeds the model the channels in the order it is given them (its
    COLOR_RGBA2BGR + swapRB=True cancel out; NudeNet issue #203), so for any 3-channel array
    `x` our `detect([x])` must equal its `detect(x)`. Passing it the RGB array is the call
    that feeds the model RGB, as ours does; its BGR path is checked too, against our BGR.
    """
    image = _samples()[name]
    _close(detector.detect([image])[0], reference.detect(image))  # type: ignore[attr-defined]
    bgr = np.ascontiguousarray(image[..., ::-1])
    _close(detector.detect([bgr])[0], reference.detect(bgr))  # type: ignore[attr-defined]


def test_nudenet_reference_feeds_the_model_the_channels_it_is_given() -> None:
    """Pins the NudeNet quirk the comparison above relies on; if NudeNet fixes it, revisit."""
    from nudenet.nudenet import _read_image

    image = np.zeros((4, 4, 3), np.uint8)
    image[..., 0] = 255  # only the first channel lit
    blob = _read_image(image, 320)[0]
    assert blob[0, 0].max() == pytest.approx(1.0)
    assert blob[0, 2].max() == 0.0


def test_astronaut_is_a_face_and_not_explicit(detector: NudeNet) -> None:
    (regions,) = detector.detect([data.astronaut()])
    assert not [r for r in regions if r.label in EXPOSED_LABELS and r.score > 0.5]
    faces = [r for r in regions if r.label == "FACE_FEMALE"]
    assert faces and faces[0].score > 0.5
    x, y, w, h = faces[0].box
    # Eileen Collins' face is in the upper middle of the 512 x 512 photo.
    assert 120 < x + w / 2 < 320 and 60 < y + h / 2 < 200


@pytest.mark.slow
def test_batch_equals_one_by_one(detector: NudeNet) -> None:
    images = list(_samples().values()) * 3  # 21 images: more than one chunk of 16
    batched = detector.detect(images)
    single = [detector.detect([image])[0] for image in images]
    assert len(batched) == len(images)
    for b, s in zip(batched, single, strict=True):
        assert [r.label for r in b] == [r.label for r in s]
        for rb, rs in zip(b, s, strict=True):
            assert rb.score == pytest.approx(rs.score, abs=1e-4)
            assert np.abs(np.subtract(rb.box, rs.box)).max() <= 1


def test_boxes_lie_inside_the_image_and_scores_are_sorted(detector: NudeNet) -> None:
    images = list(_samples().values())
    low = NudeNet(min_score=0.05, threads=2)
    for image, regions in zip(images, low.detect(images), strict=True):
        height, width = image.shape[:2]
        scores = [r.score for r in regions]
        assert scores == sorted(scores, reverse=True)
        assert all(s >= 0.05 for s in scores)
        for r in regions:
            x, y, w, h = r.box
            assert 0 <= x <= width and 0 <= y <= height
            assert w >= 0 and x + w <= width
            assert h >= 0 and y + h <= height
            assert r.label in LABELS
            assert r.exposed == (r.label in EXPOSED_LABELS)


def test_min_score_filters(detector: NudeNet) -> None:
    image = data.astronaut()
    low = NudeNet(min_score=0.05, threads=2).detect([image])[0]
    high = NudeNet(min_score=0.9, threads=2).detect([image])[0]
    default = detector.detect([image])[0]
    assert len(low) >= len(default) >= len(high)
    assert all(r.score >= 0.9 for r in high)


def test_odd_shapes_and_empty_batch(detector: NudeNet) -> None:
    assert detector.detect([]) == []
    shapes = [(7, 300), (300, 7), (1, 1), (320, 320), (1000, 40)]
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]
    results = detector.detect(images)
    assert len(results) == len(images)
    assert all(isinstance(r, list) for r in results)


def test_non_contiguous_input(detector: NudeNet) -> None:
    image = data.astronaut()
    view = image[::2, ::2]  # a strided view, as slicing a decoded frame gives
    assert detector.detect([view]) == detector.detect([np.ascontiguousarray(view)])


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((10, 10), np.uint8),
        np.zeros((10, 10, 4), np.uint8),
        np.zeros((10, 10, 3), np.float32),
        np.zeros((0, 10, 3), np.uint8),
    ],
)
def test_bad_images_raise_input_error(detector: NudeNet, bad: np.ndarray) -> None:
    with pytest.raises(InputError, match="image 1"):
        detector.detect([data.astronaut(), bad])


def test_missing_model_raises_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        NudeNet(tmp_path / "nope.onnx")


def test_corrupt_model_raises_model_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(os.urandom(256))
    with pytest.raises(ModelError, match="could not be loaded"):
        NudeNet(bad)
