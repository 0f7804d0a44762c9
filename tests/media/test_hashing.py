"""PDQ and vPDQ hashes: ThreatExchange's exact format, robust to recompression, and per video scene."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from bastion.errors import CorruptMediaError, EmptyMediaError, InputError, MediaError
from bastion.media.hashing import (
    PDQ_MATCH_THRESHOLD,
    MediaHash,
    pdq_distance,
    pdq_distance_matrix,
    pdq_hash,
    pdq_hashes,
    vpdq_hashes,
)

SIZE = 512  # video frame side


def _photos() -> dict[str, np.ndarray]:
    astronaut = data.astronaut()
    return {
        "astronaut": astronaut,
        "coffee": data.coffee(),
        "chelsea": data.chelsea(),
        "camera": np.stack([data.camera()] * 3, axis=-1),
        "crop": np.ascontiguousarray(astronaut[40:300, 10:500]),
    }


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg_resized(image: np.ndarray, scale: float, quality: int) -> np.ndarray:
    small = Image.fromarray(image).resize(
        (round(image.shape[1] * scale), round(image.shape[0] * scale)), Image.Resampling.BILINEAR
    )
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


@pytest.mark.parametrize("name", list(_photos()))
def test_pdq_equals_threatexchange(name: str) -> None:
    from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_bytes

    image = _photos()[name]
    mine = pdq_hash(image)
    theirs, quality = pdq_from_bytes(_png(image))
    assert mine == MediaHash(kind="pdq", hash=theirs, quality=quality)
    assert len(mine.hash) == 64 and mine.hash == mine.hash.lower()
    int(mine.hash, 16)


def test_pdq_ignores_memory_layout() -> None:
    """pdqhash reads the raw buffer: a Fortran-ordered copy must still hash the same picture."""
    image = data.astronaut()
    assert pdq_hash(np.asfortranarray(image)) == pdq_hash(image)
    assert pdq_hash(image[::2, ::2]) == pdq_hash(np.ascontiguousarray(image[::2, ::2]))


def test_pdq_batch_equals_single() -> None:
    images = list(_photos().values())
    assert pdq_hashes(images) == [pdq_hash(image) for image in images]
    assert pdq_hashes([]) == []


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "camera"])
def test_pdq_survives_resize_and_jpeg(name: str) -> None:
    image = _photos()[name]
    original = pdq_hash(image).hash
    for scale, quality in [(0.75, 70), (0.5, 50), (1.3, 85)]:
        copy = pdq_hash(_jpeg_resized(image, scale, quality)).hash
        assert pdq_distance(original, copy) <= PDQ_MATCH_THRESHOLD, (scale, quality)


def test_pdq_different_photos_are_far_apart() -> None:
    hashes = {name: pdq_hash(image).hash for name, image in _photos().items() if name != "crop"}
    names = list(hashes)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert pdq_distance(hashes[a], hashes[b]) > 80, (a, b)


def test_pdq_distance_properties_and_matrix() -> None:
    from threatexchange.signal_type.pdq.pdq_utils import simple_distance

    hashes = [h.hash for h in pdq_hashes(list(_photos().values()))]
    for a in hashes:
        assert pdq_distance(a, a) == 0
        assert pdq_distance(a.upper(), a) == 0
        for b in hashes:
            assert pdq_distance(a, b) == pdq_distance(b, a) == simple_distance(a, b)
    assert pdq_distance("0" * 64, "f" * 64) == 256
    matrix = pdq_distance_matrix(hashes, hashes[::-1])
    assert matrix.shape == (len(hashes), len(hashes))
    expected = [[pdq_distance(a, b) for b in hashes[::-1]] for a in hashes]
    assert matrix.tolist() == expected
    assert pdq_distance_matrix([], hashes).shape == (0, len(hashes))


@pytest.mark.parametrize("bad", ["", "abc", "g" * 64, "0" * 63, "0" * 65, "0x" + "0" * 62])
def test_pdq_distance_rejects_malformed_hashes(bad: str) -> None:
    with pytest.raises(InputError, match="not a PDQ hash"):
        pdq_distance(bad, "0" * 64)
    with pytest.raises(InputError):
        pdq_distance_matrix(["0" * 64, bad], ["0" * 64])


@pytest.mark.parametrize(
    "bad",
    [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32), np.zeros((0, 8, 3), np.uint8)],
)
def test_pdq_rejects_bad_images(bad: np.ndarray) -> None:
    with pytest.raises(InputError, match="image 1"):
        pdq_hashes([data.astronaut(), bad])


# --- vPDQ -------------------------------------------------------------------------------------


def _scenes() -> tuple[np.ndarray, np.ndarray]:
    coffee = cv2.resize(data.coffee(), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return data.astronaut(), coffee


def _write_video(path: Path, frames: list[np.ndarray], fps: int = 10) -> None:
    import av

    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


@pytest.fixture(scope="module")
def two_scene_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s at 10 fps: the astronaut for 1.5 s, then the coffee cup."""
    astronaut, coffee = _scenes()
    path = tmp_path_factory.mktemp("video") / "two_scenes.mp4"
    _write_video(path, [astronaut] * 15 + [coffee] * 15)
    return path


@pytest.mark.parametrize("seconds_per_hash", [1.0, 0.5, 0.0])
def test_vpdq_follows_the_scenes(two_scene_video: Path, seconds_per_hash: float) -> None:
    astronaut, coffee = (pdq_hash(scene).hash for scene in _scenes())
    hashes = vpdq_hashes(two_scene_video, seconds_per_hash=seconds_per_hash)
    assert hashes and all(h.kind == "vpdq" for h in hashes)
    times = [h.timestamp_s for h in hashes]
    assert all(t is not None and 0.0 <= t < 3.0 for t in times)
    assert times == sorted(times) and len(set(times)) == len(times)
    assert hashes[0].timestamp_s == 0.0
    for h in hashes:
        assert len(h.hash) == 64 and h.hash == h.hash.lower()
        assert 0 <= h.quality <= 100 and h.frame is not None
        assert h.timestamp_s is not None
        scene = astronaut if h.timestamp_s < 1.5 else coffee
        other = coffee if scene is astronaut else astronaut
        assert pdq_distance(h.hash, scene) <= PDQ_MATCH_THRESHOLD, h
        assert pdq_distance(h.hash, other) > 80, h
    # Both scenes are there, and consecutive duplicates were collapsed.
    assert any(pdq_distance(h.hash, coffee) <= PDQ_MATCH_THRESHOLD for h in hashes)
    assert all(a.hash != b.hash for a, b in itertools.pairwise(hashes))


def test_vpdq_dedupes_a_still_video(tmp_path: Path) -> None:
    """A still picture for 2 s at every-frame sampling collapses to its first frame (or a few,
    where the encoder's keyframe and predicted frames differ by a bit)."""
    path = tmp_path / "still.mp4"
    _write_video(path, [data.astronaut()] * 20)
    hashes = vpdq_hashes(path, seconds_per_hash=0.0)
    assert hashes[0].timestamp_s == 0.0 and hashes[0].frame == 0
    assert len(hashes) < 20


def test_vpdq_downsampling_keeps_the_hash(two_scene_video: Path) -> None:
    full = vpdq_hashes(two_scene_video)
    small = vpdq_hashes(two_scene_video, downsample_width=128, downsample_height=128)
    assert len(small) == len(full)
    for a, b in zip(full, small, strict=True):
        assert a.timestamp_s == b.timestamp_s
        assert pdq_distance(a.hash, b.hash) <= PDQ_MATCH_THRESHOLD


def test_vpdq_missing_empty_and_broken_files(tmp_path: Path, two_scene_video: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        vpdq_hashes(tmp_path / "missing.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(EmptyMediaError):
        vpdq_hashes(empty)
    text = tmp_path / "text.mp4"
    text.write_text("this is not a video\n")
    with pytest.raises(CorruptMediaError):
        vpdq_hashes(text)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(two_scene_video.read_bytes()[:1000])
    with pytest.raises(MediaError):
        vpdq_hashes(truncated)
    with pytest.raises(ValueError, match="seconds_per_hash"):
        vpdq_hashes(two_scene_video, seconds_per_hash=-1)
