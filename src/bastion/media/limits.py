"""Limits on untrusted media: how many bytes, pixels, frames and seconds Bastion will decode.

Every limit is checked as early as the format allows, from headers before pixels: a PNG that
claims 100,000 x 100,000 pixels is refused from its 33-byte header, a 3-hour audio file from its
container's duration. Where a header can lie (a video without a duration, a GIF's frame count)
the decoder also counts as it goes and stops at the limit. The defaults suit a short-video or
chat platform; raise them in config for long-form content.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bastion.errors import InputError


class MediaLimits(BaseModel):
    """The limits one decode respects. Immutable; pass a modified copy (`model_copy(update=...)`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_image_bytes: int = Field(20_000_000, gt=0, description="largest image file accepted")
    max_video_bytes: int = Field(500_000_000, gt=0, description="largest video file accepted")
    max_audio_bytes: int = Field(200_000_000, gt=0, description="largest audio file accepted")
    max_pixels: int = Field(
        50_000_000, gt=0, description="width x height of one image or frame (decompression bombs)"
    )
    max_image_frames: int = Field(
        1_000, gt=0, description="animated images with more frames than this are refused"
    )
    image_frame_sample: int = Field(
        8, gt=0, description="frames sampled, evenly spaced, from an animated image"
    )
    max_side: int = Field(
        2_048, ge=64, description="decoded images are downscaled so no side exceeds this"
    )
    max_video_seconds: float = Field(600.0, gt=0, description="longest video accepted")
    max_audio_seconds: float = Field(600.0, gt=0, description="longest audio track transcribed")
    max_video_frames: int = Field(
        32, gt=0, description="most frames sampled from one video for the image detectors"
    )
    max_decoded_frames: int = Field(
        100_000, gt=0, description="frames a video may have in all (decoded to find scene changes)"
    )
    video_frame_side: int = Field(
        1_280, ge=64, description="sampled video frames are downscaled so no side exceeds this"
    )
    scene_threshold: float = Field(
        0.15, gt=0, le=1, description="frame change (histogram and pixels) that is a new scene"
    )
    scene_check_seconds: float = Field(
        0.25, gt=0, description="how often frames are compared for scene changes"
    )
    fallback_seconds: float = Field(
        2.0, gt=0, description="a frame is sampled at least this often, scene change or not"
    )
    vpdq_seconds_per_hash: float = Field(1.0, gt=0, description="vPDQ hashes one frame per this")
    decode_timeout_s: float = Field(
        30.0, gt=0, description="wall-clock limit for decoding all of one item's media"
    )
    ocr_timeout_s: float = Field(
        10.0, gt=0, description="wall-clock limit for reading the text in one image or frame"
    )
    worker_memory_mb: int | None = Field(
        4_096, ge=256, description="address-space limit of each decoder process (None: no limit)"
    )


def load_media_limits(path: Path) -> MediaLimits:
    """Limits from a YAML (or JSON) mapping of field names; unknown names and bad values refused."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read media limits ({exc})") from exc
    if not isinstance(raw, dict):
        raise InputError(f"{path}: media limits must be a mapping of limit names to values")
    try:
        return MediaLimits(**raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise InputError(f"{path}: {problems}") from None
