"""Build test media locally: good images, audio and video, and deliberately bad files.

Everything here is generated on the spot (Pillow, NumPy, scikit-image sample photos, espeak-ng,
PyAV); nothing is downloaded. Tests import it as ``import media_factory``.

Codecs used by :func:`make_video` (all encoders ship with the PyAV wheels):

* ``.mp4`` / ``.mov`` / ``.m4v`` / ``.mkv``: H.264 (``libx264``, falling back to ``mpeg4``) video
  and AAC (FFmpeg's native ``aac`` encoder) audio.
* ``.webm``: VP8 (``libvpx``) video and Opus (``libopus``, falling back to ``vorbis``) audio.
"""

from __future__ import annotations

import colorsys
import io
import math
import shutil
import struct
import subprocess
import zlib
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFont

__all__ = [
    "FONTS",
    "animated_gif",
    "caption_photo",
    "long_silent_wav",
    "make_video",
    "png_bomb",
    "read_wav_16k",
    "render_text",
    "sample_photo",
    "save_image",
    "speech_wav",
    "text_as_jpg",
    "truncated_jpeg",
    "video_without_frames",
    "zero_byte_file",
]

# Wall-clock limits for tests that run beside other jobs. The built-in 10 s per OCR'd image and
# 30 s per item's decoding hold on an idle machine, not on two cores shared with a CPU-bound
# job; the limits themselves are tested with tiny values (test_ocr_over_its_time_limit...).
PATIENT_LIMITS = {"ocr_timeout_s": 120.0, "decode_timeout_s": 300.0}


def patient_limits_file(directory: Path) -> Path:
    """`PATIENT_LIMITS` as the YAML file that `--media-limits` and $BASTION_MEDIA_LIMITS take."""
    path = Path(directory) / "patient-media-limits.yaml"
    path.write_text("".join(f"{name}: {value}\n" for name, value in PATIENT_LIMITS.items()))
    return path


FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
_FONT_NAMES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")

FONTS: list[str] = [str(FONT_DIR / name) for name in _FONT_NAMES if (FONT_DIR / name).is_file()]
"""Paths of the TrueType fonts available here (DejaVu Sans, Sans Bold, Serif, Sans Mono)."""

Color = tuple[int, int, int] | str
AnyFont = ImageFont.FreeTypeFont | ImageFont.ImageFont

_FORMATS_BY_SUFFIX = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".gif": "GIF",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
_EXIF_FORMATS = {"JPEG", "PNG", "WEBP", "TIFF"}
_EXIF_ORIENTATION = 0x0112

_SAMPLE_PHOTOS = ("astronaut", "chelsea", "coffee", "camera")

_WAV_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")


# --------------------------------------------------------------------------- helpers


def _prepare(path: Path) -> Path:
    """Return ``path`` as a Path, creating its parent directory if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _rgb(color: Color) -> tuple[int, int, int]:
    """Normalise a colour name or RGB tuple to an ``(r, g, b)`` tuple."""
    if isinstance(color, str):
        value = ImageColor.getrgb(color)
        return (value[0], value[1], value[2])
    r, g, b = color
    return (int(r), int(g), int(b))


def _load_font(font: str | None, size: int) -> AnyFont:
    """Load a TrueType font by path, or Pillow's scalable default font when ``font`` is None."""
    if font is None:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(font, size=size)


def _text_width(draw: ImageDraw.ImageDraw, text: str, font: AnyFont) -> float:
    """Advance width of a single line of text in pixels."""
    return float(draw.textlength(text, font=font))


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: AnyFont, max_width: float) -> list[str]:
    """Greedy word wrap of ``text`` to ``max_width`` pixels; over-long words are split."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        current = ""
        for word in paragraph.split():
            candidate = f"{current} {word}" if current else word
            if _text_width(draw, candidate, font) <= max_width:
                current = candidate
                continue
            if current:
                lines.append(current)
                current = ""
            # The word alone may still be too wide: cut it into pieces that fit.
            while _text_width(draw, word, font) > max_width and len(word) > 1:
                cut = len(word) - 1
                while cut > 1 and _text_width(draw, word[:cut], font) > max_width:
                    cut -= 1
                lines.append(word[:cut])
                word = word[cut:]
            current = word
        lines.append(current)
    return lines


def _to_rgb_array(image: np.ndarray) -> np.ndarray:
    """Coerce a (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array to RGB uint8 (H, W, 3)."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.size and float(array.max()) <= 1.0:
            array = array * 255.0
        array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    elif array.ndim == 3 and array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, :3]
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an image array (H, W[, C]), got shape {array.shape}")
    return np.ascontiguousarray(array)


def _to_pil(image: np.ndarray) -> Image.Image:
    """Wrap a uint8 array as a Pillow image (L, RGB or RGBA by channel count)."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        return Image.fromarray(array, mode="L")
    if array.ndim == 3 and array.shape[2] == 3:
        return Image.fromarray(array, mode="RGB")
    if array.ndim == 3 and array.shape[2] == 4:
        return Image.fromarray(array, mode="RGBA")
    raise ValueError(f"expected an image array (H, W[, C]), got shape {array.shape}")


def _noisy_background(
    width: int, height: int, color: tuple[int, int, int], seed: int
) -> np.ndarray:
    """A diagonal gradient from ``color`` towards its complement plus mild Gaussian noise."""
    base = np.array(color, dtype=np.float32)
    other = 0.7 * base + 0.3 * (255.0 - base)
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    t = ((xs + ys) / 2.0)[:, :, None]
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 6.0, size=(height, width, 3)).astype(np.float32)
    blended: np.ndarray = np.clip(base * (1.0 - t) + other * t + noise, 0, 255)
    return blended.astype(np.uint8)


# --------------------------------------------------------------------------- images


def render_text(
    text: str,
    *,
    font: str | None = None,
    size: int = 40,
    background: tuple[int, int, int] | str = "white",
    foreground: tuple[int, int, int] | str = "black",
    width: int | None = None,
    padding: int = 24,
    noise: bool = False,
) -> np.ndarray:
    """Render ``text`` into an RGB uint8 (H, W, 3) image.

    ``font`` is a TTF path (see :data:`FONTS`) or None for Pillow's default scalable font.
    With ``width`` (total image width in pixels) the text is word-wrapped to
    ``width - 2 * padding``; otherwise it is drawn as given (one line unless it contains
    newlines) and the image is sized to fit. ``noise=True`` paints a gradient with mild
    Gaussian noise behind the text. The output is deterministic (noise seeded from the text).
    """
    pil_font = _load_font(font, size)
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    if width is not None:
        if width <= 2 * padding:
            raise ValueError(f"width {width} leaves no room inside padding {padding}")
        lines = _wrap(scratch, text, pil_font, width - 2 * padding)
    else:
        lines = text.split("\n")
    block = "\n".join(lines)
    spacing = max(4, size // 4)
    left, top, right, bottom = scratch.multiline_textbbox(
        (0, 0), block, font=pil_font, spacing=spacing
    )
    image_w = width if width is not None else math.ceil(right - left) + 2 * padding
    image_h = math.ceil(bottom - top) + 2 * padding
    image_w, image_h = max(image_w, 1), max(image_h, 1)

    bg = _rgb(background)
    if noise:
        seed = zlib.crc32(text.encode("utf-8"))
        canvas = Image.fromarray(_noisy_background(image_w, image_h, bg, seed), mode="RGB")
    else:
        canvas = Image.new("RGB", (image_w, image_h), bg)
    draw = ImageDraw.Draw(canvas)
    draw.multiline_text(
        (padding - left, padding - top),
        block,
        font=pil_font,
        fill=_rgb(foreground),
        spacing=spacing,
    )
    return np.asarray(canvas, dtype=np.uint8).copy()


def caption_photo(photo: np.ndarray, text: str, *, size: int = 36) -> np.ndarray:
    """Make a meme: white text with a black outline, centred and wrapped over the photo's top.

    Returns a new RGB uint8 (H, W, 3) array; the input is not modified.
    """
    canvas = Image.fromarray(_to_rgb_array(photo), mode="RGB")
    bold = [f for f in FONTS if f.endswith("-Bold.ttf")]
    pil_font = _load_font(bold[0] if bold else (FONTS[0] if FONTS else None), size)
    draw = ImageDraw.Draw(canvas)
    margin = max(4, canvas.width // 40)
    stroke = max(2, size // 12)
    lines = _wrap(draw, text, pil_font, max(1, canvas.width - 2 * margin - 2 * stroke))
    draw.multiline_text(
        (canvas.width / 2, margin + stroke),
        "\n".join(lines),
        font=pil_font,
        fill=(255, 255, 255),
        anchor="ma",
        align="center",
        spacing=max(2, size // 6),
        stroke_width=stroke,
        stroke_fill=(0, 0, 0),
    )
    return np.asarray(canvas, dtype=np.uint8).copy()


def sample_photo(name: str) -> np.ndarray:
    """A scikit-image sample photo as RGB uint8 (H, W, 3).

    ``name`` is one of "astronaut" (512x512), "chelsea" (451x300 cat), "coffee" (600x400) or
    "camera" (512x512 grayscale, stacked to three channels). These ship inside scikit-image.
    """
    if name not in _SAMPLE_PHOTOS:
        raise ValueError(f"unknown sample photo {name!r}; choose from {_SAMPLE_PHOTOS}")
    from skimage import data  # imported lazily: scikit-image is a dev dependency

    photo: np.ndarray = getattr(data, name)()
    return _to_rgb_array(photo)


def save_image(
    image: np.ndarray,
    path: Path,
    *,
    format: str | None = None,
    exif_orientation: int | None = None,
    quality: int = 90,
) -> Path:
    """Write ``image`` (uint8 (H, W[, C]) array) to ``path`` and return the path.

    The format comes from ``format`` (Pillow name, e.g. "JPEG") or the suffix (.png, .jpg,
    .jpeg, .webp, .gif, .bmp, .tif). ``quality`` applies to JPEG and WebP. With
    ``exif_orientation`` (1-8; JPEG, PNG, WebP or TIFF) the EXIF Orientation tag (0x0112) is
    written but the pixels are stored as given, unrotated: a viewer that honours EXIF must
    rotate them (6 = rotate 90 degrees clockwise for display, 3 = 180, 8 = 90 counter-clockwise).
    """
    path = _prepare(path)
    fmt = (format or _FORMATS_BY_SUFFIX.get(path.suffix.lower(), "")).upper()
    if fmt == "JPG":
        fmt = "JPEG"
    if not fmt:
        raise ValueError(f"cannot infer an image format from {path.name!r}; pass format=")
    pil = _to_pil(image)
    if fmt == "JPEG" and pil.mode == "RGBA":
        pil = pil.convert("RGB")
    params: dict[str, Any] = {}
    if fmt in {"JPEG", "WEBP"}:
        params["quality"] = quality
    if exif_orientation is not None:
        if not 1 <= exif_orientation <= 8:
            raise ValueError(f"EXIF orientation must be 1..8, got {exif_orientation}")
        if fmt not in _EXIF_FORMATS:
            raise ValueError(f"{fmt} cannot carry EXIF; use one of {sorted(_EXIF_FORMATS)}")
        exif = Image.Exif()
        exif[_EXIF_ORIENTATION] = exif_orientation
        params["exif"] = exif.tobytes()
    pil.save(path, format=fmt, **params)
    return path


def animated_gif(
    path: Path, frames: int, *, size: tuple[int, int] = (32, 32), duration_ms: int = 40
) -> Path:
    """Write a looping animated GIF with exactly ``frames`` frames and return the path.

    ``size`` is (width, height). Each frame shows a square moving one pixel per frame across a
    black background, changing colour every full sweep, so consecutive frames always differ
    and Pillow never merges them. All frames share one 16-colour palette, so 10,000 frames of
    32x32 take about a second and ~1 MB.
    """
    if frames < 1:
        raise ValueError("an animated GIF needs at least one frame")
    width, height = size
    path = _prepare(path)
    palette: list[int] = [0, 0, 0]
    for k in range(15):
        r, g, b = colorsys.hsv_to_rgb(k / 15, 0.85, 0.95)
        palette += [round(r * 255), round(g * 255), round(b * 255)]
    side = max(1, min(width, height) // 4)
    span_x, span_y = width - side + 1, height - side + 1
    positions = span_x * span_y
    images: list[Image.Image] = []
    for i in range(frames):
        pixels = np.zeros((height, width), dtype=np.uint8)
        x, y = (i % positions) % span_x, (i % positions) // span_x
        pixels[y : y + side, x : x + side] = 1 + (i // positions) % 15
        frame = Image.fromarray(pixels, mode="P")
        frame.putpalette(palette)
        images.append(frame)
    images[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=duration_ms,
        loop=0,
        optimize=False,
    )
    return path


# --------------------------------------------------------------------------- bad images


def zero_byte_file(path: Path) -> Path:
    """Create an empty (0-byte) file at ``path`` (whatever its suffix) and return the path."""
    path = _prepare(path)
    path.write_bytes(b"")
    return path


def truncated_jpeg(path: Path) -> Path:
    """Write a JPEG of the astronaut photo cut to half its bytes; full decoding must fail.

    The header is intact (Image.open succeeds and reports 512x512), but ``load()`` raises
    ``OSError`` unless ``ImageFile.LOAD_TRUNCATED_IMAGES`` is set.
    """
    path = _prepare(path)
    buffer = io.BytesIO()
    Image.fromarray(sample_photo("astronaut"), mode="RGB").save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) // 2])
    return path


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    """Serialise one PNG chunk: length, type, payload and CRC-32 of type + payload."""
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def png_bomb(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """Write a tiny (< 1 KB) PNG whose IHDR claims ``width`` x ``height`` 8-bit grayscale.

    The chunks are well formed (correct CRCs): IHDR, one IDAT holding a short, unfinished zlib
    stream (a few rows of zeros, sync-flushed), IEND. Pillow's ``Image.open`` raises
    ``DecompressionBombError`` under the default ``MAX_IMAGE_PIXELS``; with that limit lifted
    it reports the claimed size without decoding, and ``load()`` raises ``OSError``
    ("image file is truncated").
    """
    if not (0 < width < 2**31 and 0 < height < 2**31):
        raise ValueError("PNG dimensions must be in 1 .. 2**31 - 1")
    path = _prepare(path)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    rows = b"\x00" * ((width + 1) * min(height, 4))  # filter byte 0 + zero pixels per row
    idat = compressor.compress(rows) + compressor.flush(zlib.Z_SYNC_FLUSH)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )
    path.write_bytes(data)
    return path


def text_as_jpg(path: Path) -> Path:
    """Write plain text (no image at all) to ``path`` (typically ``*.jpg``) and return it."""
    path = _prepare(path)
    path.write_text("hello, this is not an image\n" * 20, encoding="ascii")
    return path


# --------------------------------------------------------------------------- audio


def speech_wav(text: str, path: Path, *, voice: str = "en", speed: int = 150) -> Path:
    """Synthesise ``text`` with espeak-ng into a WAV (22,050 Hz, 16-bit mono) at ``path``.

    Runs ``espeak-ng -v voice -s speed -w path -- text``; raises ``CalledProcessError`` on
    failure and ``FileNotFoundError`` if espeak-ng is not installed.
    """
    path = _prepare(path)
    exe = shutil.which("espeak-ng") or "espeak-ng"
    subprocess.run(
        [exe, "-v", voice, "-s", str(speed), "-w", str(path), "--", text],
        check=True,
        timeout=120,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return path


def _decode_audio(path: Path, rate: int) -> np.ndarray:
    """Decode the first audio stream of ``path`` to float32 mono samples at ``rate`` Hz."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    chunks: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def read_wav_16k(path: Path) -> np.ndarray:
    """Read an audio file (any WAV PyAV decodes) as float32 mono samples at 16 kHz in [-1, 1]."""
    return _decode_audio(Path(path), 16_000)


def long_silent_wav(path: Path, seconds: float = 3 * 3600, rate: int = 8000) -> Path:
    """Write a valid 8-bit mono PCM WAV of ``seconds`` duration as a sparse file.

    Only the 44-byte header is written; the data chunk is created with ``truncate`` so the
    file reads as zero bytes (8-bit PCM is unsigned, so this is a constant -1.0 DC level,
    which sounds silent; true 8-bit silence would be 0x80) and costs no disk or time.
    The default (3 hours at 8 kHz) is 86.4 MB apparent size.
    """
    n_bytes = round(seconds * rate)
    if n_bytes < 0:
        raise ValueError("seconds must be >= 0")
    pad = n_bytes % 2  # RIFF chunks are word aligned
    riff_size = 36 + n_bytes + pad
    if riff_size > 0xFFFFFFFF:
        raise ValueError("too long for a RIFF/WAV file (4 GiB limit)")
    path = _prepare(path)
    header = _WAV_HEADER.pack(
        b"RIFF", riff_size, b"WAVE", b"fmt ", 16, 1, 1, rate, rate, 1, 8, b"data", n_bytes
    )
    with path.open("wb") as f:
        f.write(header)
        f.truncate(len(header) + n_bytes + pad)
    return path


# --------------------------------------------------------------------------- video


def _encoder_available(name: str) -> bool:
    """Whether PyAV here can encode with codec ``name``."""
    try:
        return bool(av.Codec(name, "w").is_encoder)
    except Exception:
        return False


def _pick_codecs(suffix: str, codec: str) -> tuple[str, str]:
    """Choose (video codec, audio codec) for a container suffix and a requested video codec."""
    if suffix == ".webm":
        video = codec if codec in {"libvpx", "libvpx-vp9", "libaom-av1"} else "libvpx"
        audio = "libopus" if _encoder_available("libopus") else "vorbis"
    else:
        video = codec
        audio = "aac"
    if not _encoder_available(video):
        video = "mpeg4"
    return video, audio


def _fit_frame(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Letterbox ``frame`` (RGB) into ``width`` x ``height``: resize to fit, pad with black."""
    h, w = frame.shape[:2]
    if (w, h) != (width, height):
        scale = min(width / w, height / h)
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        if (new_w, new_h) != (w, h):
            frame = np.asarray(
                Image.fromarray(frame, mode="RGB").resize((new_w, new_h), Image.Resampling.LANCZOS)
            )
        canvas = np.zeros((height, width, 3), dtype=np.uint8)
        top, left = (height - new_h) // 2, (width - new_w) // 2
        canvas[top : top + new_h, left : left + new_w] = frame
        frame = canvas
    return np.ascontiguousarray(frame)


def _audio_samples(audio: Path | np.ndarray, rate: int) -> np.ndarray:
    """Load ``audio`` (a file path, or a mono sample array at ``rate``) as float32 mono."""
    if isinstance(audio, (str, Path)):
        return _decode_audio(Path(audio), rate)
    samples = np.asarray(audio)
    if np.issubdtype(samples.dtype, np.integer):
        samples = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max)
    samples = np.squeeze(samples).astype(np.float32)
    if samples.ndim != 1:
        raise ValueError(f"audio samples must be mono (n,), got shape {np.shape(audio)}")
    return samples


def _audio_frame(chunk: np.ndarray, fmt: str, layout: str, rate: int, pts: int) -> av.AudioFrame:
    """Build one mono av.AudioFrame in the encoder's sample format from float32 samples."""
    if fmt in {"s16", "s16p"}:
        data: np.ndarray = np.clip(np.rint(chunk * 32767.0), -32768, 32767).astype(np.int16)
    elif fmt in {"s32", "s32p"}:
        data = np.clip(np.rint(chunk.astype(np.float64) * 2147483647.0), -(2**31), 2**31 - 1)
        data = data.astype(np.int32)
    elif fmt in {"flt", "fltp"}:
        data = chunk.astype(np.float32)
    elif fmt in {"dbl", "dblp"}:
        data = chunk.astype(np.float64)
    else:
        raise ValueError(f"unsupported encoder sample format {fmt!r}")
    frame = av.AudioFrame.from_ndarray(data.reshape(1, -1), format=fmt, layout=layout)
    frame.sample_rate = rate
    frame.pts = pts
    frame.time_base = Fraction(1, rate)
    return frame


def make_video(
    path: Path,
    frames: Sequence[np.ndarray],
    *,
    fps: float = 10,
    seconds_per_frame: float | None = None,
    audio: Path | np.ndarray | None = None,
    audio_rate: int = 16000,
    codec: str = "libx264",
) -> Path:
    """Encode ``frames`` (uint8 RGB/gray arrays) into a video at ``path`` with PyAV.

    The container comes from the suffix (.mp4, .mov, .m4v, .mkv, .webm). Each input frame is
    held for ``seconds_per_frame`` seconds (``round(fps * seconds_per_frame)`` copies, at least
    one), or one video frame each by default. Frames of different sizes are letterboxed into
    the largest width/height, rounded up to even numbers.

    ``audio`` is an audio file path (decoded and resampled to ``audio_rate``) or float32 mono
    samples at ``audio_rate``; it is encoded whole as AAC (Opus/Vorbis for .webm). The video is
    extended by repeating the last frame until it is at least as long as the audio.
    ``codec`` is the video encoder (falls back to ``mpeg4`` if unavailable; .webm uses VP8).
    """
    if not frames:
        raise ValueError("make_video needs at least one frame")
    if fps <= 0:
        raise ValueError("fps must be positive")
    path = _prepare(path)
    rgb = [_to_rgb_array(f) for f in frames]
    width = max(f.shape[1] for f in rgb)
    height = max(f.shape[0] for f in rgb)
    width, height = width + width % 2, height + height % 2
    rgb = [_fit_frame(f, width, height) for f in rgb]

    repeats = 1 if seconds_per_frame is None else max(1, round(fps * seconds_per_frame))
    schedule = [i for i in range(len(rgb)) for _ in range(repeats)]
    samples = None if audio is None else _audio_samples(audio, audio_rate)
    if samples is not None and samples.size:
        needed = math.ceil(samples.size / audio_rate * fps - 1e-9)
        schedule += [len(rgb) - 1] * max(0, needed - len(schedule))

    video_codec, audio_codec = _pick_codecs(path.suffix.lower(), codec)
    rate = Fraction(fps).limit_denominator(10_000)
    options: dict[str, str] = {}
    if video_codec == "libx264":
        options = {"preset": "veryfast", "crf": "18"}
    elif video_codec.startswith("libvpx"):
        options = {"deadline": "realtime", "cpu-used": "8", "b": "2M"}
    with av.open(str(path), mode="w") as container:
        vstream = container.add_stream(video_codec, rate=rate, options=options)
        assert isinstance(vstream, av.VideoStream)
        vstream.width = width
        vstream.height = height
        vstream.pix_fmt = "yuv420p"
        astream: av.AudioStream | None = None
        if samples is not None:
            added = container.add_stream(audio_codec, rate=audio_rate, layout="mono")
            assert isinstance(added, av.AudioStream)
            astream = added
        container.start_encoding()

        time_base = 1 / rate
        for pts, index in enumerate(schedule):
            vframe = av.VideoFrame.from_ndarray(rgb[index], format="rgb24")
            vframe.pts = pts
            vframe.time_base = time_base
            container.mux(vstream.encode(vframe))
        container.mux(vstream.encode(None))

        if astream is not None and samples is not None:
            ctx = astream.codec_context
            fmt, layout = ctx.format.name, ctx.layout.name  # encoder's native sample format
            step = ctx.frame_size or 1024
            for start in range(0, samples.size, step):
                chunk = samples[start : start + step]
                container.mux(astream.encode(_audio_frame(chunk, fmt, layout, audio_rate, start)))
            container.mux(astream.encode(None))
    return path


def video_without_frames(path: Path) -> Path:
    """Write an MP4 that declares a 64x64 H.264 video stream but holds zero encoded frames.

    A plain MP4 muxer drops tracks without samples, so the file is written as a fragmented
    MP4 (``movflags=empty_moov+frag_keyframe``): the moov box carries the video track header
    and no fragment ever follows. PyAV/FFmpeg open it, list one video stream (64x64), and
    decode zero frames. The container is MP4 whatever the suffix.
    """
    path = _prepare(path)
    video_codec = "libx264" if _encoder_available("libx264") else "mpeg4"
    options = {"movflags": "empty_moov+frag_keyframe"}
    with av.open(str(path), mode="w", format="mp4", options=options) as container:
        stream = container.add_stream(video_codec, rate=10)
        assert isinstance(stream, av.VideoStream)
        stream.width = 64
        stream.height = 64
        stream.pix_fmt = "yuv420p"
        container.start_encoding()
        container.mux(stream.encode(None))
    return path
