"""Decoding untrusted image, video and audio bytes into arrays, refusing what breaks a limit.

These functions run inside a decoder process (`bastion.media.sandbox`), never in the serving
process: a malformed file that hangs or crashes a codec costs one worker, not the service.
Each refusal is a typed `MediaError` whose message names the media and the limit or fault.

- Images: Pillow. The pixel count is checked from the header before any pixel is decoded;
  animated images give an evenly spaced sample of frames; EXIF orientation is applied;
  big JPEGs are decoded at reduced size (`draft`), others downscaled to `max_side`.
- Video: PyAV. Duration and frame size are checked from the container first; frames are kept
  at scene changes (a grey-histogram change over `scene_threshold`), at least every
  `fallback_seconds`, capped at `max_video_frames` (thinned evenly); the audio track is
  resampled to 16 kHz mono for speech; vPDQ hashes come from the `vpdq` library.
- Audio: PyAV, refused by the container's duration before decoding, and cut off while
  decoding if the container did not say.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bastion.errors import (
    CorruptMediaError,
    InputError,
    MediaError,
    MediaLimitError,
    UnsupportedMediaError,
)
from bastion.media.limits import MediaLimits
from bastion.media.sources import MediaSource

SAMPLE_RATE = 16_000
"""Audio is decoded to 16 kHz mono float32, what Whisper expects."""

_EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the transpose that displays the pixels upright (as ImageOps.exif_transpose).
_TRANSPOSE = {2: 0, 3: 3, 4: 1, 5: 5, 6: 4, 7: 6, 8: 2}  # values of PIL.Image.Transpose


@dataclass
class DecodedImage:
    """RGB uint8 frames (one for a still image) and the original size after EXIF orientation."""

    frames: list[np.ndarray]
    width: int
    height: int
    n_frames: int
    format: str


@dataclass
class VideoFrame:
    timestamp_s: float
    image: np.ndarray


@dataclass
class DecodedAudio:
    """Mono float32 samples at 16 kHz."""

    samples: np.ndarray
    duration_s: float


@dataclass
class DecodedVideo:
    frames: list[VideoFrame]
    duration_s: float
    width: int
    height: int
    audio: DecodedAudio | None
    hashes: list[Any] = field(default_factory=list)  # bastion.media.hashing.MediaHash


def check_rgb_image(image: np.ndarray, index: int) -> None:
    """Refuse anything but a non-empty RGB uint8 (H, W, 3) array, naming the image's index."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"image {index}: expected a NumPy array, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InputError(
            f"image {index}: expected an RGB uint8 array of shape (H, W, 3), "
            f"got {image.dtype} {image.shape}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(f"image {index}: empty image {image.shape}")


# --------------------------------------------------------------------------- images


def decode_image(source: MediaSource, limits: MediaLimits) -> DecodedImage:
    from PIL import Image, UnidentifiedImageError

    data = source.read(limits.max_image_bytes)
    Image.MAX_IMAGE_PIXELS = None  # our own check below names the limit; Pillow's would not
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise UnsupportedMediaError(
            f"{source.name}: not an image format Bastion can read (the file starts with "
            f"{data[:12]!r}); send PNG, JPEG, GIF, WebP, BMP or TIFF"
        ) from None
    except Exception as exc:
        raise CorruptMediaError(f"{source.name}: broken image header ({exc})") from exc
    width, height = im.size
    _check_pixels(source, width, height, limits)
    n_frames = int(getattr(im, "n_frames", 1) or 1)
    if n_frames > limits.max_image_frames:
        raise MediaLimitError(
            f"{source.name}: {n_frames:,} frames is over max_image_frames="
            f"{limits.max_image_frames:,}",
            "max_image_frames",
        )
    orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    frames = []
    try:
        for index in _evenly_spaced(n_frames, limits.image_frame_sample):
            if n_frames > 1:
                im.seek(index)
            elif im.format == "JPEG":
                im.draft("RGB", (limits.max_side, limits.max_side))  # decode big JPEGs small
            frame = im.convert("RGB")
            if orientation in _TRANSPOSE:
                frame = frame.transpose(Image.Transpose(_TRANSPOSE[orientation]))
            frame.thumbnail((limits.max_side, limits.max_side))
            frames.append(np.asarray(frame, dtype=np.uint8))
    except MediaError:
        raise
    except Exception as exc:
        raise CorruptMediaError(
            f"{source.name}: the image data is broken or truncated ({exc})"
        ) from exc
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return DecodedImage(frames, width, height, n_frames, str(im.format or "unknown"))


def _check_pixels(source: MediaSource, width: int, height: int, limits: MediaLimits) -> None:
    if width <= 0 or height <= 0:
        raise CorruptMediaError(f"{source.name}: the header gives an empty size {width}x{height}")
    if width * height > limits.max_pixels:
        raise MediaLimitError(
            f"{source.name}: {width:,} x {height:,} = {width * height:,} pixels is over "
            f"max_pixels={limits.max_pixels:,} (refused from the header, before decoding)",
            "max_pixels",
        )


def _evenly_spaced(n: int, k: int) -> list[int]:
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]


# --------------------------------------------------------------------------- video and audio


@contextmanager
def _container(source: MediaSource, max_bytes: int) -> Iterator[Any]:
    import av

    source.check_size(max_bytes)
    target: Any = str(source.path) if source.data is None else io.BytesIO(source.data)
    try:
        container = av.open(target, mode="r", timeout=None)
    except av.error.InvalidDataError as exc:
        raise UnsupportedMediaError(
            f"{source.name}: not a {source.kind} format Bastion can read ({exc.strerror or exc})"
        ) from None
    except av.error.FFmpegError as exc:
        raise CorruptMediaError(f"{source.name}: cannot open ({exc.strerror or exc})") from exc
    try:
        yield container
    finally:
        container.close()


def _declared_seconds(container: Any, stream: Any) -> float | None:
    if container.duration:
        return float(container.duration) / 1_000_000
    if stream is not None and stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


def decode_audio(source: MediaSource, limits: MediaLimits) -> DecodedAudio:
    """The first audio track (of an audio file or a video) as 16 kHz mono float32."""
    with _container(source, limits.max_audio_bytes) as container:
        if not container.streams.audio:
            raise CorruptMediaError(f"{source.name}: has no audio track")
        stream = container.streams.audio[0]
        _check_seconds(source, _declared_seconds(container, stream), limits.max_audio_seconds)
        return _decode_audio_stream(source, container, stream, limits)


def _check_seconds(source: MediaSource, seconds: float | None, limit: float) -> None:
    if seconds is not None and seconds > limit:
        name = f"max_{source.kind}_seconds"
        raise MediaLimitError(
            f"{source.name}: {_clock(seconds)} long is over {name}={limit:g} "
            "(refused from the container's duration, before decoding)",
            name,
        )


class _AudioCollector:
    """Resamples decoded audio frames to 16 kHz mono float32 and counts against the cap."""

    def __init__(self, limits: MediaLimits) -> None:
        import av

        self.resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        self.cap = int(limits.max_audio_seconds * SAMPLE_RATE)
        self.chunks: list[np.ndarray] = []
        self.total = 0

    def add(self, frame: Any) -> None:
        """`None` flushes what the resampler still holds."""
        for out in self.resampler.resample(frame):
            chunk = out.to_ndarray().reshape(-1)
            self.chunks.append(chunk)
            self.total += chunk.size

    @property
    def full(self) -> bool:
        return self.total >= self.cap

    def result(self) -> DecodedAudio:
        """The samples so far, cut to the cap."""
        if not self.chunks:
            return DecodedAudio(np.zeros(0, np.float32), 0.0)
        samples = np.concatenate(self.chunks)[: self.cap].astype(np.float32)
        return DecodedAudio(samples, samples.size / SAMPLE_RATE)


def _decode_audio_stream(
    source: MediaSource, container: Any, stream: Any, limits: MediaLimits
) -> DecodedAudio:
    import av

    audio = _AudioCollector(limits)
    try:
        for frame in container.decode(stream):
            audio.add(frame)
            if audio.total > audio.cap:
                _refuse_long(source, audio.total / SAMPLE_RATE, limits.max_audio_seconds, "audio")
        audio.add(None)
    except av.error.FFmpegError as exc:
        raise CorruptMediaError(
            f"{source.name}: broken audio data ({exc.strerror or exc})"
        ) from exc
    return audio.result()


def _refuse_long(source: MediaSource, seconds: float, limit: float, what: str) -> None:
    raise MediaLimitError(
        f"{source.name}: the {what} runs past max_{what}_seconds={limit:g} (stopped decoding at "
        f"{_clock(seconds)}; the container did not declare its duration)",
        f"max_{what}_seconds",
    )


def decode_video(source: MediaSource, limits: MediaLimits) -> DecodedVideo:
    """Frames at scene changes (and at least every `fallback_seconds`), audio, vPDQ hashes."""
    import av

    with _container(source, limits.max_video_bytes) as container:
        if not container.streams.video:
            raise CorruptMediaError(f"{source.name}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        _check_seconds(source, _declared_seconds(container, stream), limits.max_video_seconds)
        width, height = stream.codec_context.width, stream.codec_context.height
        if width and height:
            _check_pixels(source, width, height, limits)
        audio_stream = container.streams.audio[0] if container.streams.audio else None
        sampler = _SceneSampler(limits)
        soundtrack = _AudioCollector(limits)
        streams = [s for s in (stream, audio_stream) if s is not None]
        decoded = 0
        try:
            for packet in container.demux(*streams):
                for frame in packet.decode():
                    if isinstance(frame, av.VideoFrame):
                        decoded += 1
                        if decoded > limits.max_decoded_frames:
                            raise MediaLimitError(
                                f"{source.name}: more than max_decoded_frames="
                                f"{limits.max_decoded_frames:,} frames",
                                "max_decoded_frames",
                            )
                        t = float(frame.time or 0.0)
                        if t > limits.max_video_seconds:
                            _refuse_long(source, t, limits.max_video_seconds, "video")
                        sampler.offer(frame, t)
                    elif not soundtrack.full:  # a long soundtrack is cut, the video is kept
                        soundtrack.add(frame)
        except av.error.FFmpegError as exc:
            if not sampler.frames:
                raise CorruptMediaError(
                    f"{source.name}: broken video data ({exc.strerror or exc})"
                ) from exc
        if not sampler.frames:
            raise CorruptMediaError(f"{source.name}: the video has no decodable frames")
        frames = sampler.result()
        duration = _declared_seconds(container, stream) or sampler.last_t
    audio = soundtrack.result() if soundtrack.chunks else None
    hashes = _vpdq(source, limits)
    return DecodedVideo(frames, float(duration), width, height, audio, hashes)


class _SceneSampler:
    """Keeps frames that differ from the last kept one by more than the scene threshold.

    The difference is the mean of two cheap measures on a 64x36 grey thumbnail: how far its
    64-bin histogram moved (a cut to different lighting) and the mean absolute pixel change (a
    cut to a different composition in similar tones); a cut moves both, noise neither.

    Frames are compared every `scene_check_seconds` (cheap: a 64x36 grey thumbnail) and kept
    full size only when chosen. When more than the cap are chosen, the kept set is thinned to
    evenly spaced ones (the first frame always stays): a long video with constant cuts is
    sampled across its length rather than only at its start.
    """

    def __init__(self, limits: MediaLimits) -> None:
        self.limits = limits
        self.frames: list[VideoFrame] = []
        self._last_check = -np.inf
        self._last_kept = -np.inf
        self._last_hist: np.ndarray | None = None
        self._last_thumb: np.ndarray | None = None
        self.last_t = 0.0

    def offer(self, frame: Any, t: float) -> None:
        self.last_t = max(self.last_t, t)
        if t - self._last_check < self.limits.scene_check_seconds and self.frames:
            return
        self._last_check = t
        thumb = frame.to_ndarray(width=64, height=36, format="gray")
        hist = np.bincount((thumb >> 2).reshape(-1), minlength=64) / thumb.size
        if self._last_hist is None or self._last_thumb is None:
            change = 1.0
        else:
            moved = 0.5 * np.abs(hist - self._last_hist).sum()
            shifted = np.abs(thumb.astype(np.int16) - self._last_thumb).mean() / 255
            change = 0.5 * (moved + shifted)
        if change >= self.limits.scene_threshold or t - self._last_kept >= (
            self.limits.fallback_seconds
        ):
            self._last_hist = hist
            self._last_thumb = thumb.astype(np.int16)
            self._last_kept = t
            self.frames.append(VideoFrame(t, self._rgb(frame)))
            if len(self.frames) > 4 * self.limits.max_video_frames:
                self.frames = self._thin(self.frames, 2 * self.limits.max_video_frames)

    def _rgb(self, frame: Any) -> np.ndarray:
        side = self.limits.video_frame_side
        w, h = frame.width, frame.height
        scale = min(1.0, side / max(w, h))
        out_w, out_h = max(2, round(w * scale)), max(2, round(h * scale))
        return np.asarray(frame.to_ndarray(width=out_w, height=out_h, format="rgb24"))

    @staticmethod
    def _thin(frames: list[VideoFrame], k: int) -> list[VideoFrame]:
        return [frames[i] for i in _evenly_spaced(len(frames), k)]

    def result(self) -> list[VideoFrame]:
        return self._thin(self.frames, self.limits.max_video_frames)


def _vpdq(source: MediaSource, limits: MediaLimits) -> list[Any]:
    """vPDQ needs a file; bytes are written to a private temporary one first."""
    from bastion.media.hashing import vpdq_hashes

    if source.path is not None:
        return list(vpdq_hashes(source.path, limits.vpdq_seconds_per_hash))
    assert source.data is not None
    fd, name = tempfile.mkstemp(prefix="bastion-video-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(source.data)
        return list(vpdq_hashes(Path(name), limits.vpdq_seconds_per_hash))
    finally:
        os.unlink(name)


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def decode(source: MediaSource, limits: MediaLimits) -> DecodedImage | DecodedVideo | DecodedAudio:
    """Decode by the source's kind (what the decoder process runs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's EXIF and palette warnings are not our errors
        if source.kind == "image":
            return decode_image(source, limits)
        if source.kind == "video":
            return decode_video(source, limits)
        return decode_audio(source, limits)
