"""Media detectors' own logic: NudeNet regions onto policy categories, fusion across modalities,
and which detectors the media moderator runs on which part of an item."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from bastion.detectors.base import (
    BaseDetector,
    DetectorOutput,
    Evidence,
    per_item_max,
    score_item_images,
)
from bastion.detectors.multimodal import MediaModerator
from bastion.detectors.nudity import NudityDetector, align_threshold
from bastion.items import Item
from bastion.media.decode import DecodedImage, DecodedVideo, VideoFrame
from bastion.media.limits import MediaLimits
from bastion.media.nudenet import Region
from bastion.media.sandbox import Decoded
from bastion.models.scoring import fuse_max
from bastion.policy import load_policy


class FixedRegions:
    """Stands in for NudeNet's output: the tests must not contain nude imagery to detect."""

    def __init__(self, regions: list[list[Region]]) -> None:
        self.regions = regions

    def detect(self, images: object) -> list[list[Region]]:
        return self.regions


@pytest.mark.parametrize("target", [0.3, 0.5, 0.857])
def test_align_threshold_keeps_the_detectors_decision_and_order(target: float) -> None:
    raw = np.linspace(0, 1, 201)
    mapped = np.array([align_threshold(float(r), 0.5, target) for r in raw])
    assert np.array_equal(raw >= 0.5, mapped >= target - 1e-12)
    assert np.all(np.diff(mapped) >= 0)
    assert mapped[0] == 0 and mapped[-1] == pytest.approx(1.0)
    assert align_threshold(0.3, 0.5, 0.857) == pytest.approx(0.3)  # weak stays weak


def test_nudity_counts_only_for_categories_the_policy_maps() -> None:
    policy = load_policy("openai")
    ids = policy.category_ids
    sexual, minors = ids.index("sexual"), ids.index("sexual/minors")
    thresholds = np.full(len(ids), 0.8)
    model = FixedRegions(
        [
            [
                Region("FEMALE_BREAST_EXPOSED", 0.9, (10, 20, 30, 40)),
                Region("FACE_FEMALE", 0.95, (0, 0, 5, 5)),
            ],
            [Region("FACE_FEMALE", 0.95, (0, 0, 5, 5)), Region("BELLY_EXPOSED", 0.7, (1, 1, 2, 2))],
        ]
    )
    det = NudityDetector(policy, model, thresholds=thresholds)  # type: ignore[arg-type]
    out = det.score_images([np.zeros((8, 8, 3), np.uint8)] * 2, ["images[0]", "images[1]"])
    assert out.scores[0, sexual] == pytest.approx(0.8 + (0.9 - 0.5) * 0.2 / 0.5)  # flagged
    assert out.scores[1, sexual] == 0.0  # looked and found nothing that counts: a real "no"
    assert np.isnan(out.scores[:, minors]).all()  # never inferred from a body part
    others = [c for c in range(len(ids)) if c != sexual]
    assert np.isnan(out.scores[:, others]).all()
    (ev,) = out.evidence[0]
    assert ev.category == "sexual" and ev.boxes == ((10, 20, 30, 40),)
    assert ev.input_type == "image" and "FEMALE_BREAST_EXPOSED" in ev.detail
    assert out.evidence[1] == []


def test_mlcommons_maps_nudity_to_sexual_content_only() -> None:
    det = NudityDetector(load_policy("mlcommons"))
    assert det.applies
    mapped = [c for c, labels in zip(det.category_ids, det.labels, strict=True) if labels]
    assert mapped == ["s12"]


def test_per_item_max_keeps_the_worst_rows_evidence() -> None:
    ids = ["a", "b"]
    rows = DetectorOutput(
        np.array([[0.2, 0.9], [0.7, 0.1], [np.nan, np.nan]]),
        [
            [Evidence("x", "b", 0.9, "row0 b")],
            [Evidence("x", "a", 0.7, "row1 a"), Evidence("x", "b", 0.1, "row1 b")],
            [],
        ],
    )
    out = per_item_max(rows, np.array([0, 0, 2]), 3, ids)
    assert out.scores[0].tolist() == [0.7, 0.9]
    assert [e.detail for e in out.evidence[0]] == ["row0 b", "row1 a"]
    assert np.isnan(out.scores[1]).all() and np.isnan(out.scores[2]).all()


def test_fuse_max_is_the_worst_modality_and_nan_only_where_nothing_applies() -> None:
    text = np.array([[0.1, np.nan], [np.nan, np.nan]])
    image = np.array([[0.6, 0.2], [np.nan, np.nan]])
    fused = fuse_max([text, image])
    assert fused[0].tolist() == [0.6, 0.2]
    assert np.isnan(fused[1]).all()


def test_without_nudenet_installed_the_nudity_categories_are_uncovered_not_scored_0(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`nudenet` is an optional extra: without it nothing is loaded, every score is NaN (no
    opinion, never a 0 that reads as safe) and `uncovered` names the categories it would score."""
    import sys

    import bastion.detectors.nudity as nudity

    monkeypatch.setitem(sys.modules, "nudenet", None)  # what `import nudenet` sees uninstalled
    monkeypatch.setattr(nudity, "load_nudenet", lambda: pytest.fail("NudeNet was loaded"))
    policy = load_policy("openai")
    det = NudityDetector(policy)
    assert det.applies
    assert set(det.uncovered) == {"sexual"}
    assert "bastion[nudity]" in det.uncovered["sexual"]
    assert "no detector covers" in det.uncovered["sexual"]
    out = det.score_images([np.zeros((8, 8, 3), np.uint8)], ["images[0]"])
    assert np.isnan(out.scores).all() and out.evidence == [[]]


def test_with_nudenet_installed_or_given_nothing_is_uncovered() -> None:
    policy = load_policy("openai")
    assert NudityDetector(policy).uncovered == {}
    given = NudityDetector(policy, FixedRegions([[]]))  # type: ignore[arg-type]
    assert given.uncovered == {}


class _Bright(BaseDetector):
    """An image detector of one's own: "violence" is how bright the picture is."""

    name = "bright"
    input_type = "image"

    def __init__(self, category_ids: list[str]) -> None:
        self.category_ids = category_ids

    def score(self, items: Sequence[Item]) -> DetectorOutput:
        return score_item_images(self, items)

    def score_images(self, images: Sequence[np.ndarray], sources: Sequence[str]) -> DetectorOutput:
        scores = np.full((len(images), len(self.category_ids)), np.nan)
        scores[:, self.category_ids.index("violence")] = [image.mean() / 255 for image in images]
        return DetectorOutput(scores)


class _Decoded:
    """Stands in for the decoder processes: every source decodes to the same media."""

    workers = 1
    limits = MediaLimits()

    def __init__(self, media: Decoded) -> None:
        self.media = media

    def decode(self, source: object, timeout_s: float | None = None) -> Decoded:
        return self.media

    def close(self) -> None:
        pass


FRAME = np.full((64, 64, 3), 204, np.uint8)


def test_an_image_detector_of_ones_own_also_scores_video_frames() -> None:
    policy = load_policy("openai")
    video = DecodedVideo([VideoFrame(1.5, FRAME)], 3.0, 64, 64, audio=None)
    media = MediaModerator(policy, [_Bright(policy.category_ids)], pool=_Decoded(video))  # type: ignore[arg-type]
    scores = media.score([Item(video=b"video bytes")])
    assert set(scores.by_type) == {"video"} and scores.errors == [None]
    assert scores.by_type["video"][0, policy.category_ids.index("violence")] == pytest.approx(0.8)
    assert scores.uncovered == [{}]


def test_media_that_no_detector_reads_is_uncovered_in_every_category() -> None:
    policy = load_policy("openai")
    image = DecodedImage([FRAME], 64, 64, 1, "PNG")
    media = MediaModerator(policy, [], pool=_Decoded(image))  # type: ignore[arg-type]
    (uncovered,) = media.score([Item(images=[b"image bytes"])]).uncovered
    assert set(uncovered) == set(policy.category_ids)
    assert uncovered["violence"] == "no detector in this Moderator reads images"
