"""Safe decoding: every named kind of bad media gets its own typed, named refusal; good media decodes."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import media_factory as mf
import numpy as np
import pytest

from bastion.errors import (
    CorruptMediaError,
    DecodeTimeoutError,
    EmptyMediaError,
    InputError,
    MediaLimitError,
    UnsupportedMediaError,
)
from bastion.items import Item, item_from_openai_input
from bastion.media.decode import DecodedAudio, DecodedImage, DecodedVideo
from bastion.media.limits import MediaLimits
from bastion.media.sandbox import DecoderPool
from bastion.media.sources import MediaSource


@pytest.fixture(scope="module")
def pool() -> Iterator[DecoderPool]:
    with DecoderPool(MediaLimits(), workers=2) as p:
        yield p


def image(path: Path) -> MediaSource:
    return MediaSource.of(path, "image")


# ------------------------------------------------------------------ bad inputs, one test each


def test_zero_byte_file_is_refused_as_empty(pool: DecoderPool, tmp_path: Path) -> None:
    with pytest.raises(EmptyMediaError, match=r"empty \(0 bytes\)"):
        pool.decode(image(mf.zero_byte_file(tmp_path / "empty.jpg")))


def test_truncated_jpeg_is_corrupt(pool: DecoderPool, tmp_path: Path) -> None:
    with pytest.raises(CorruptMediaError, match="truncated"):
        pool.decode(image(mf.truncated_jpeg(tmp_path / "cut.jpg")))


def test_png_claiming_ten_billion_pixels_is_refused_from_its_header(
    pool: DecoderPool, tmp_path: Path
) -> None:
    with pytest.raises(MediaLimitError, match="100,000 x 100,000") as err:
        pool.decode(image(mf.png_bomb(tmp_path / "bomb.png")))
    assert err.value.limit == "max_pixels"
    assert "before decoding" in str(err.value)


def test_gif_with_ten_thousand_frames_is_refused(pool: DecoderPool, tmp_path: Path) -> None:
    path = mf.animated_gif(tmp_path / "many.gif", 10_000, size=(8, 8))
    with pytest.raises(MediaLimitError, match="10,000 frames") as err:
        pool.decode(image(path))
    assert err.value.limit == "max_image_frames"


def test_text_file_named_jpg_is_unsupported(pool: DecoderPool, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedMediaError, match="not an image format") as err:
        pool.decode(image(mf.text_as_jpg(tmp_path / "note.jpg")))
    assert "hello" in str(err.value)  # shows what the bytes actually are


def test_video_with_no_frames_is_corrupt(pool: DecoderPool, tmp_path: Path) -> None:
    path = mf.video_without_frames(tmp_path / "empty.mp4")
    with pytest.raises(CorruptMediaError, match="no decodable frames"):
        pool.decode(MediaSource.of(path, "video"))


def test_three_hour_audio_is_refused_by_duration_before_decoding(
    pool: DecoderPool, tmp_path: Path
) -> None:
    path = mf.long_silent_wav(tmp_path / "long.wav")
    # Decoding 3 h would take far longer than this budget: the refusal must come from the header.
    with pytest.raises(MediaLimitError, match="3:00:00 long") as err:
        pool.decode(MediaSource.of(path, "audio"), timeout_s=20)
    assert err.value.limit == "max_audio_seconds"
    assert "before decoding" in str(err.value)


def test_missing_file_names_the_path(pool: DecoderPool, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        pool.decode(image(tmp_path / "nowhere.png"))


def test_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    path = mf.save_image(mf.sample_photo("coffee"), tmp_path / "coffee.png")
    with (
        DecoderPool(MediaLimits(max_image_bytes=1_000), workers=1) as small,
        pytest.raises(MediaLimitError, match="max_image_bytes") as err,
    ):
        small.decode(image(path))
    assert err.value.limit == "max_image_bytes"


def test_slow_decode_is_cut_off_and_the_pool_recovers(pool: DecoderPool, tmp_path: Path) -> None:
    """A decode over its time limit is killed; the next decode gets a fresh worker."""
    big = np.random.default_rng(0).integers(0, 255, (4000, 6000, 3), dtype=np.uint8)
    path = mf.save_image(big, tmp_path / "noise.png")  # ~72 MB of noise: seconds to decode
    limits = MediaLimits(max_image_bytes=200_000_000)
    with DecoderPool(limits, workers=1) as slow:
        slow.decode(image(mf.save_image(mf.sample_photo("camera"), tmp_path / "warm.png")))
        with pytest.raises(DecodeTimeoutError, match="was stopped") as err:
            slow.decode(image(path), timeout_s=0.05)
        assert err.value.limit == "decode_timeout_s"
        again = slow.decode(image(tmp_path / "warm.png"))
    assert isinstance(again, DecodedImage)
    assert again.frames[0].shape == (512, 512, 3)


# ------------------------------------------------------------------ good inputs


def test_exif_orientation_is_applied(pool: DecoderPool, tmp_path: Path) -> None:
    photo = mf.sample_photo("chelsea")  # 300 x 451 (H x W)
    path = mf.save_image(photo, tmp_path / "rotated.jpg", exif_orientation=6)
    out = pool.decode(image(path))
    assert isinstance(out, DecodedImage)
    assert out.frames[0].shape[:2] == (451, 300)  # displayed upright: rotated 90° clockwise
    assert (out.width, out.height) == (300, 451)
    upright = np.rot90(photo, k=-1).astype(float)
    assert np.abs(out.frames[0].astype(float) - upright).mean() < 12  # JPEG noise only


def test_animated_image_gives_a_bounded_even_sample(pool: DecoderPool, tmp_path: Path) -> None:
    out = pool.decode(image(mf.animated_gif(tmp_path / "a.gif", 50)))
    assert isinstance(out, DecodedImage)
    assert out.n_frames == 50
    assert len(out.frames) == MediaLimits().image_frame_sample
    assert not np.array_equal(out.frames[0], out.frames[-1])


def test_big_images_are_downscaled_to_max_side(tmp_path: Path) -> None:
    photo = np.kron(mf.sample_photo("astronaut"), np.ones((6, 6, 1), dtype=np.uint8))  # 3072 px
    path = mf.save_image(photo, tmp_path / "big.jpg")
    with DecoderPool(MediaLimits(max_side=1000), workers=1) as p:
        out = p.decode(image(path))
    assert isinstance(out, DecodedImage)
    assert max(out.frames[0].shape[:2]) <= 1000
    assert (out.width, out.height) == (3072, 3072)


def test_data_uri_and_bytes_decode_like_the_file(pool: DecoderPool, tmp_path: Path) -> None:
    path = mf.save_image(mf.sample_photo("coffee"), tmp_path / "c.png")
    raw = path.read_bytes()
    uri = "data:image/png;base64," + base64.b64encode(raw).decode()
    frames = [
        pool.decode(MediaSource.of(v, "image")).frames[0]  # type: ignore[union-attr]
        for v in (path, raw, uri)
    ]
    assert np.array_equal(frames[0], frames[1]) and np.array_equal(frames[0], frames[2])


def test_remote_urls_and_bad_data_uris_are_refused_by_name() -> None:
    with pytest.raises(InputError, match="remote URLs are not fetched"):
        MediaSource.of("https://example.com/cat.png", "image")
    with pytest.raises(InputError, match="invalid base64"):
        MediaSource.of("data:image/png;base64,@@@", "image")
    with pytest.raises(InputError, match="base64-encoded"):
        MediaSource.of("data:image/png,rawbytes", "image")


def test_openai_multimodal_input_form(tmp_path: Path) -> None:
    raw = mf.save_image(mf.sample_photo("camera"), tmp_path / "x.png").read_bytes()
    uri = "data:image/png;base64," + base64.b64encode(raw).decode()
    item = item_from_openai_input(
        [
            {"type": "text", "text": "look at this"},
            {"type": "image_url", "image_url": {"url": uri}},
        ]
    )
    assert item.text == "look at this"
    assert [s.data for s in item.images] == [raw]
    with pytest.raises(InputError, match="input part 0"):
        item_from_openai_input([{"type": "audio", "audio": "x"}])
    assert item_from_openai_input("plain").text == "plain"


def test_audio_decodes_to_16khz_mono(pool: DecoderPool, tmp_path: Path) -> None:
    path = mf.speech_wav("hello there, this is a test", tmp_path / "s.wav")
    out = pool.decode(MediaSource.of(path, "audio"))
    assert isinstance(out, DecodedAudio)
    expected = mf.read_wav_16k(path)
    assert abs(out.samples.size - expected.size) < 400
    assert out.samples.dtype == np.float32 and out.samples.ndim == 1
    assert 0.05 < np.abs(out.samples).max() <= 1.0


def test_video_samples_scene_changes_and_keeps_the_audio(pool: DecoderPool, tmp_path: Path) -> None:
    scenes = [mf.sample_photo(n) for n in ("astronaut", "coffee", "camera")]
    speech = mf.speech_wav("good morning everyone", tmp_path / "s.wav")
    path = mf.make_video(tmp_path / "v.mp4", scenes, fps=10, seconds_per_frame=1.5, audio=speech)
    out = pool.decode(MediaSource.of(path, "video"))
    assert isinstance(out, DecodedVideo)
    times = [f.timestamp_s for f in out.frames]
    # The first frame, each cut (1.5 s, 3.0 s), and nothing in between (scenes are static and
    # shorter than the fallback interval).
    assert len(times) == 3
    assert times[0] == pytest.approx(0.0, abs=0.11)
    assert times[1] == pytest.approx(1.5, abs=0.26)
    assert times[2] == pytest.approx(3.0, abs=0.26)
    assert out.duration_s == pytest.approx(4.5, abs=0.3)
    assert out.audio is not None and out.audio.duration_s > 0.5
    assert out.hashes and all(h.kind == "vpdq" for h in out.hashes)


def test_long_static_video_falls_back_to_a_fixed_rate_under_the_cap(tmp_path: Path) -> None:
    path = mf.make_video(
        tmp_path / "still.mp4", [mf.sample_photo("camera")], fps=5, seconds_per_frame=20
    )
    limits = MediaLimits(fallback_seconds=2.0, max_video_frames=6)
    with DecoderPool(limits, workers=1) as p:
        out = p.decode(MediaSource.of(path, "video"))
    assert isinstance(out, DecodedVideo)
    times = [f.timestamp_s for f in out.frames]
    assert len(times) == 6  # 10 fallback frames over 20 s, thinned evenly to the cap
    assert times[0] == pytest.approx(0.0, abs=0.01)
    assert times[-1] > 15
    assert np.all(np.diff(times) > 0)


def test_item_media_fields_accept_paths_bytes_and_uris(tmp_path: Path) -> None:
    item = Item(images=[tmp_path / "a.png", b"\x89PNG"], video=str(tmp_path / "v.mp4"))
    assert [s.kind for s in item.media] == ["image", "image", "video"]
    assert item.has_media and not item.has_text and not item.is_blank
    assert Item().is_blank
