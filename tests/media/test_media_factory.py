"""Each media_factory function keeps its promise, checked with real decoders."""

from __future__ import annotations

import os
import struct
import time
import wave
import zlib
from pathlib import Path

import av
import media_factory as mf
import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# --------------------------------------------------------------------------- helpers


def _decode_video(path: Path) -> list[np.ndarray]:
    """All decoded video frames of ``path`` as RGB arrays."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def _audio_seconds(path: Path) -> float:
    """Seconds of decoded audio in the first audio stream of ``path``."""
    with av.open(str(path)) as container:
        samples, rate = 0, 0
        for frame in container.decode(audio=0):
            samples += frame.samples
            rate = frame.sample_rate
    return samples / rate


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two equally shaped uint8 arrays."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def _tone(seconds: float, rate: int = 16_000) -> np.ndarray:
    """A 440 Hz float32 sine at 0.3 amplitude."""
    t = np.arange(round(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


# --------------------------------------------------------------------------- images


def test_fonts_exist_and_load() -> None:
    assert len(mf.FONTS) >= 2
    for path in mf.FONTS:
        assert Path(path).is_file()
        assert mf.render_text("Aa", font=path).shape[2] == 3


def test_render_text_draws_and_sizes() -> None:
    image = mf.render_text("Hello there", size=40)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[1] > image.shape[0]  # one line: wider than tall
    assert (image < 64).all(axis=2).sum() > 100  # black ink on white
    assert (image[0, :] == 255).all() and (image[:, 0] == 255).all()  # padding stays background


def test_render_text_wraps_to_width() -> None:
    text = "the quick brown fox jumps over the lazy dog " * 3
    one_line = mf.render_text(text, size=30)
    wrapped = mf.render_text(text, size=30, width=320)
    assert wrapped.shape[1] == 320
    assert wrapped.shape[0] > 3 * one_line.shape[0]
    right_margin = wrapped[:, 320 - 20 :]
    assert (right_margin == 255).all()  # nothing drawn past width - padding


def test_render_text_default_font_colours_and_noise_are_deterministic() -> None:
    plain = mf.render_text("Default font", font=None, background=(0, 0, 80), foreground="yellow")
    assert tuple(plain[0, 0]) == (0, 0, 80)
    yellow = (plain[:, :, 0] > 200) & (plain[:, :, 1] > 200) & (plain[:, :, 2] < 60)
    assert yellow.sum() > 50
    noisy = mf.render_text("Noisy background", font=mf.FONTS[0], noise=True)
    assert np.array_equal(noisy, mf.render_text("Noisy background", font=mf.FONTS[0], noise=True))
    border = noisy[:10].reshape(-1, 3).astype(float)
    assert border.std(axis=0).min() > 2  # not a flat background
    assert not np.array_equal(noisy, mf.render_text("Noisy background", font=mf.FONTS[0]))


def test_caption_photo_draws_outlined_text_on_top() -> None:
    photo = mf.sample_photo("coffee")
    before = photo.copy()
    meme = mf.caption_photo(photo, "one does not simply caption a coffee", size=36)
    assert np.array_equal(photo, before)  # input untouched
    assert meme.shape == photo.shape and meme.dtype == np.uint8
    h = photo.shape[0]
    top, bottom = meme[: h // 4], meme[h // 2 :]
    assert np.array_equal(bottom, photo[h // 2 :])  # only the top is captioned
    assert (top > 245).all(axis=2).sum() > 500  # white fill
    assert (top < 15).all(axis=2).sum() > 500  # black outline


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("astronaut", (512, 512, 3)),
        ("chelsea", (300, 451, 3)),
        ("coffee", (400, 600, 3)),
        ("camera", (512, 512, 3)),
    ],
)
def test_sample_photo(name: str, shape: tuple[int, int, int]) -> None:
    photo = mf.sample_photo(name)
    assert photo.shape == shape and photo.dtype == np.uint8
    if name == "camera":
        assert np.array_equal(photo[:, :, 0], photo[:, :, 2])


def test_sample_photo_unknown() -> None:
    with pytest.raises(ValueError, match="unknown sample photo"):
        mf.sample_photo("lena")


@pytest.mark.parametrize(
    ("suffix", "fmt"), [(".png", "PNG"), (".jpg", "JPEG"), (".webp", "WEBP"), (".gif", "GIF")]
)
def test_save_image_by_suffix(tmp_path: Path, suffix: str, fmt: str) -> None:
    photo = mf.sample_photo("chelsea")
    path = mf.save_image(photo, tmp_path / f"cat{suffix}")
    with Image.open(path) as image:
        assert image.format == fmt
        assert image.size == (451, 300)
        decoded = np.asarray(image.convert("RGB"))
    if fmt == "PNG":
        assert np.array_equal(decoded, photo)
    else:
        assert _mean_abs_diff(decoded, photo) < 12


def test_save_image_explicit_format_and_quality(tmp_path: Path) -> None:
    photo = mf.sample_photo("astronaut")
    low = mf.save_image(photo, tmp_path / "low.bin", format="JPEG", quality=10)
    high = mf.save_image(photo, tmp_path / "high.bin", format="JPEG", quality=95)
    with Image.open(low) as image:
        assert image.format == "JPEG"
    assert low.stat().st_size < high.stat().st_size / 2


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp"])
def test_save_image_exif_orientation_is_tag_only(tmp_path: Path, suffix: str) -> None:
    photo = mf.sample_photo("chelsea")  # 451 wide x 300 high: rotation would show
    path = mf.save_image(photo, tmp_path / f"rotated{suffix}", exif_orientation=6)
    with Image.open(path) as image:
        assert image.getexif()[0x0112] == 6
        assert image.size == (451, 300)  # stored pixels are not rotated
        stored = np.asarray(image.convert("RGB"))
        assert _mean_abs_diff(stored, photo) < 12
        displayed = ImageOps.exif_transpose(image)
    assert displayed.size == (300, 451)  # orientation 6: rotate 90 degrees clockwise
    expected = np.rot90(photo, k=-1)
    assert _mean_abs_diff(np.asarray(displayed.convert("RGB")), expected) < 12


def test_save_image_rejects_exif_it_cannot_write(tmp_path: Path) -> None:
    photo = mf.sample_photo("camera")
    with pytest.raises(ValueError, match="EXIF"):
        mf.save_image(photo, tmp_path / "x.gif", exif_orientation=6)
    with pytest.raises(ValueError, match="orientation"):
        mf.save_image(photo, tmp_path / "x.jpg", exif_orientation=9)


def test_animated_gif_small_frames_all_distinct(tmp_path: Path) -> None:
    path = mf.animated_gif(tmp_path / "small.gif", 12, size=(8, 6), duration_ms=100)
    with Image.open(path) as image:
        assert getattr(image, "n_frames", 1) == 12 and image.size == (8, 6)
        assert getattr(image, "is_animated", False)
        frames = []
        for i in range(12):
            image.seek(i)
            assert image.info["duration"] == 100
            frames.append(np.asarray(image.convert("RGB")).copy())
    assert len({frame.tobytes() for frame in frames}) == 12  # Pillow merged none of them


@pytest.mark.slow
def test_animated_gif_ten_thousand_frames(tmp_path: Path) -> None:
    start = time.perf_counter()
    path = mf.animated_gif(tmp_path / "many.gif", 10_000)
    elapsed = time.perf_counter() - start
    assert elapsed < 10, f"10,000-frame GIF took {elapsed:.1f} s"
    assert path.stat().st_size < 5_000_000
    with Image.open(path) as image:
        assert getattr(image, "n_frames", 1) == 10_000
        assert image.size == (32, 32)
        image.seek(9_999)
        last = np.asarray(image.convert("RGB"))
        image.seek(9_998)
        before_last = np.asarray(image.convert("RGB"))
    assert not np.array_equal(last, before_last)


# --------------------------------------------------------------------------- bad images


def test_zero_byte_file(tmp_path: Path) -> None:
    path = mf.zero_byte_file(tmp_path / "empty.png")
    assert path.stat().st_size == 0
    with pytest.raises(UnidentifiedImageError):
        Image.open(path)


def test_truncated_jpeg_opens_but_fails_to_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)
    path = mf.truncated_jpeg(tmp_path / "cut.jpg")
    with Image.open(path) as image:
        assert image.format == "JPEG" and image.size == (512, 512)
        with pytest.raises(OSError, match="truncated"):
            image.load()
    assert 1_000 < path.stat().st_size < 200_000


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes, int]]:
    """Parse PNG chunks as (type, payload, stored crc)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        payload = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        chunks.append((kind, payload, crc))
        pos += 12 + length
    return chunks


def test_png_bomb_is_tiny_valid_and_huge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = mf.png_bomb(tmp_path / "bomb.png")
    data = path.read_bytes()
    assert len(data) < 1024
    chunks = _png_chunks(data)
    assert [kind for kind, _, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    for kind, payload, crc in chunks:
        assert zlib.crc32(kind + payload) == crc
    assert struct.unpack(">II", chunks[0][1][:8]) == (100_000, 100_000)

    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)  # Pillow's default guard
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)
    with Image.open(path) as image:
        assert image.size == (100_000, 100_000)
        with pytest.raises(OSError):
            image.load()


def test_png_bomb_custom_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    path = mf.png_bomb(tmp_path / "wide.png", width=60_000, height=3)
    with Image.open(path) as image:
        assert image.size == (60_000, 3)


def test_text_as_jpg(tmp_path: Path) -> None:
    path = mf.text_as_jpg(tmp_path / "fake.jpg")
    assert path.suffix == ".jpg"
    assert path.read_text().startswith("hello, this is not an image\n")
    with pytest.raises(UnidentifiedImageError):
        Image.open(path)


# --------------------------------------------------------------------------- audio


def test_speech_wav_and_read_wav_16k(tmp_path: Path) -> None:
    path = mf.speech_wav("Hello, this is a moderation test.", tmp_path / "speech.wav")
    with wave.open(str(path)) as wav:
        seconds = wav.getnframes() / wav.getframerate()
        assert wav.getnchannels() == 1
    assert 0.5 <= seconds <= 10
    samples = mf.read_wav_16k(path)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(samples.size / 16_000 - seconds) < 0.05
    assert 0.05 < float(np.abs(samples).max()) <= 1.0


def test_speech_wav_voice_speed_and_leading_dash(tmp_path: Path) -> None:
    slow = mf.speech_wav("one two three four five", tmp_path / "slow.wav", speed=100)
    fast = mf.speech_wav("one two three four five", tmp_path / "fast.wav", speed=300)
    assert mf.read_wav_16k(slow).size > 1.5 * mf.read_wav_16k(fast).size
    dashed = mf.speech_wav("-v is not an option here", tmp_path / "dash.wav", voice="en-us")
    assert mf.read_wav_16k(dashed).size > 8_000


def test_long_silent_wav_is_sparse(tmp_path: Path) -> None:
    path = mf.long_silent_wav(tmp_path / "long.wav")
    # Sparse: 86 MB long, almost none of it on disk (what made it quick, checked without a clock).
    assert path.stat().st_size > 80_000_000
    assert path.stat().st_blocks * 512 < 1_000_000
    with wave.open(str(path)) as wav:
        assert wav.getnchannels() == 1 and wav.getsampwidth() == 1
        assert wav.getframerate() == 8000
        assert wav.getnframes() / wav.getframerate() == pytest.approx(3 * 3600)
        assert wav.readframes(4000) == b"\x00" * 4000
    stat = os.stat(path)
    assert stat.st_size == 44 + 3 * 3600 * 8000
    assert stat.st_blocks * 512 < 1_000_000  # sparse: ~86 MB apparent, a few KB on disk


def test_long_silent_wav_custom_and_odd_length(tmp_path: Path) -> None:
    path = mf.long_silent_wav(tmp_path / "short.wav", seconds=2.5, rate=8001)
    with wave.open(str(path)) as wav:
        assert wav.getnframes() == 20_002 and wav.getframerate() == 8001
    with av.open(str(path)) as container:
        assert container.streams.audio[0].codec_context.name == "pcm_u8"
    path = mf.long_silent_wav(tmp_path / "odd.wav", seconds=1, rate=8001)
    assert path.stat().st_size == 44 + 8001 + 1  # RIFF pad byte
    assert mf.read_wav_16k(path).size == pytest.approx(16_000, abs=5)


# --------------------------------------------------------------------------- video


@pytest.fixture(scope="module")
def three_photos() -> list[np.ndarray]:
    return [mf.sample_photo(name) for name in ("astronaut", "chelsea", "coffee")]


@pytest.fixture(scope="module")
def slideshow(tmp_path_factory: pytest.TempPathFactory, three_photos: list[np.ndarray]) -> Path:
    path = tmp_path_factory.mktemp("video") / "slides.mp4"
    return mf.make_video(path, three_photos, seconds_per_frame=1, audio=_tone(2.5))


def test_make_video_slideshow_with_audio(slideshow: Path, three_photos: list[np.ndarray]) -> None:
    frames = _decode_video(slideshow)
    assert len(frames) == 30
    assert frames[0].shape == (512, 600, 3)  # largest width x largest height
    with av.open(str(slideshow)) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == "h264"
        assert float(video.average_rate or 0) == pytest.approx(10)
        assert video.duration is not None and video.time_base is not None
        assert float(video.duration * video.time_base) == pytest.approx(3.0, abs=0.2)
        assert container.duration is not None
        assert container.duration / 1e6 == pytest.approx(3.0, abs=0.2)
        assert len(container.streams.audio) == 1
        assert container.streams.audio[0].codec_context.name == "aac"
    assert _audio_seconds(slideshow) == pytest.approx(2.5, abs=0.2)
    # Each photo is held for ten frames, letterboxed (centred) into 600x512.
    astronaut = np.zeros((512, 600, 3), np.uint8)
    astronaut[:, 44:556] = three_photos[0]
    assert _mean_abs_diff(frames[0], astronaut) < 8
    assert _mean_abs_diff(frames[9], astronaut) < 8
    assert _mean_abs_diff(frames[10], astronaut) > 30
    coffee = np.zeros((512, 600, 3), np.uint8)
    coffee[56:456] = three_photos[2]
    assert _mean_abs_diff(frames[29], coffee) < 8


def test_make_video_audio_longer_than_frames(
    tmp_path: Path, three_photos: list[np.ndarray]
) -> None:
    wav = mf.speech_wav("This sentence is longer than the two frames of video.", tmp_path / "s.wav")
    speech_seconds = mf.read_wav_16k(wav).size / 16_000
    path = mf.make_video(tmp_path / "talk.mkv", three_photos[:1], fps=5, audio=wav)
    frames = _decode_video(path)
    assert len(frames) == int(np.ceil(speech_seconds * 5 - 1e-9))
    assert _audio_seconds(path) == pytest.approx(speech_seconds, abs=0.2)


def test_make_video_defaults_odd_sizes_no_audio(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    inputs = [rng.integers(0, 255, size=(17, 33, 3), dtype=np.uint8) for _ in range(4)]
    inputs.append(np.full((9, 9), 128, np.uint8))  # grayscale, smaller: letterboxed
    path = mf.make_video(tmp_path / "tiny.mp4", inputs, fps=25)
    frames = _decode_video(path)
    assert len(frames) == 5
    assert frames[0].shape == (18, 34, 3)
    with av.open(str(path)) as container:
        assert len(container.streams.audio) == 0
        assert float(container.streams.video[0].average_rate or 0) == pytest.approx(25)


def test_make_video_webm(tmp_path: Path, three_photos: list[np.ndarray]) -> None:
    path = mf.make_video(
        tmp_path / "clip.webm", three_photos, fps=4, seconds_per_frame=0.5, audio=_tone(1.0)
    )
    assert len(_decode_video(path)) == 6
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name in {"vp8", "vp9"}
        assert container.streams.audio[0].codec_context.name in {"opus", "vorbis"}
    assert _audio_seconds(path) == pytest.approx(1.0, abs=0.2)


def test_make_video_rejects_empty(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one frame"):
        mf.make_video(tmp_path / "none.mp4", [])


def test_video_without_frames(tmp_path: Path) -> None:
    path = mf.video_without_frames(tmp_path / "hollow.mp4")
    assert 0 < path.stat().st_size < 4096
    with av.open(str(path)) as container:
        assert container.format.name.startswith("mov,mp4")
        assert len(container.streams.video) == 1
        assert len(container.streams.audio) == 0
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 64, 64)
    assert _decode_video(path) == []
