"""Perceptual hashes for hash banks: PDQ for images and vPDQ for videos, in ThreatExchange's format.

Banks of known-bad media (NCMEC, GIFCT, ThreatExchange) are exchanged as PDQ hashes: 256 bits
written as 64 lowercase hex characters, matched when at most 31 bits differ. The hex here is
byte-for-byte what `threatexchange`'s PdqSignal produces (the tests check it), so a hash
computed here can be looked up in a bank built by any ThreatExchange tool and vice versa.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bastion.errors import CorruptMediaError, EmptyMediaError, InputError
from bastion.media.decode import check_rgb_image

__all__ = [
    "PDQ_MATCH_THRESHOLD",
    "MediaHash",
    "pdq_distance",
    "pdq_distance_matrix",
    "pdq_hash",
    "pdq_hashes",
    "vpdq_hashes",
]

#: Hamming distance at or under which two PDQ hashes are the same picture (ThreatExchange's
#: PDQ_CONFIDENT_MATCH_THRESHOLD and VPDQ_DISTANCE_THRESHOLD).
PDQ_MATCH_THRESHOLD = 31

_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class MediaHash:
    """One perceptual hash.

    `kind` is "pdq" (an image) or "vpdq" (one sampled video frame); `hash` is 64 lowercase hex
    characters; `quality` is PDQ's 0-100 quality (under ~50 the frame is flat or blurred and
    matches on it are unreliable, so banks usually skip it). Video hashes carry the frame's
    `timestamp_s` and `frame` number, so a match can point a reviewer at the moment.
    """

    kind: str
    hash: str
    quality: int
    timestamp_s: float | None = None
    frame: int | None = None


def pdq_hash(image: np.ndarray) -> MediaHash:
    """PDQ hash of one RGB uint8 image (see `pdq_hashes`)."""
    return pdq_hashes([image])[0]


def pdq_hashes(images: Sequence[np.ndarray]) -> list[MediaHash]:
    """PDQ hash per RGB uint8 image, hex-encoded as ThreatExchange does.

    The pdqhash binding reads the buffer as C-ordered whatever the array's strides say (a
    Fortran-ordered array silently hashes to different bits), hence the contiguous copy.
    """
    import pdqhash

    for i, image in enumerate(images):
        check_rgb_image(image, i)
    results = []
    for image in images:
        bits, quality = pdqhash.compute(np.ascontiguousarray(image))
        results.append(MediaHash(kind="pdq", hash=_bits_to_hex(bits), quality=int(quality)))
    return results


def pdq_distance(a: str, b: str) -> int:
    """Hamming distance between two PDQ hex hashes (0-256); a match is <= PDQ_MATCH_THRESHOLD."""
    return (int(_check_hex(a), 16) ^ int(_check_hex(b), 16)).bit_count()


def pdq_distance_matrix(a: Sequence[str], b: Sequence[str]) -> np.ndarray:
    """All pairwise distances, shape (len(a), len(b)), as uint16: one query batch against a bank.

    Vectorised with NumPy's popcount, in row blocks that bound memory, so a batch against a
    bank of 100k hashes is a few array operations rather than millions of Python XORs.
    """
    # As four uint64 words per hash; the (rows, len(b), 4) XOR block is kept under ~64 MB.
    left = _hex_to_bytes(a).view(np.uint64)
    right = _hex_to_bytes(b).view(np.uint64)
    out = np.zeros((len(left), len(right)), dtype=np.uint16)
    rows = max(1, (64 << 20) // (32 * max(1, len(right))))
    for start in range(0, len(left), rows):
        xor = left[start : start + rows, None, :] ^ right[None, :, :]
        out[start : start + rows] = np.bitwise_count(xor).sum(axis=2, dtype=np.uint16)
    return out


def vpdq_hashes(
    video_path: Path,
    seconds_per_hash: float = 1.0,
    *,
    downsample_width: int = 0,
    downsample_height: int = 0,
) -> list[MediaHash]:
    """vPDQ: a PDQ hash of one frame every `seconds_per_hash` (0 = every frame), in time order.

    Consecutive identical hashes (a still shot) are collapsed to the first, which keeps the
    frame where the shot starts; identical hashes far apart are both kept. `downsample_*` (0 =
    the video's own size) shrink frames before hashing, which is faster on large video and
    barely moves the hash, since PDQ works on a 64 x 64 reduction anyway.

    vpdq decodes the file in-process with FFmpeg's libraries and has no time limit of its own:
    pass only videos the media decoder has already accepted within its limits.
    """
    import vpdq

    path = Path(video_path)
    if not path.is_file():
        raise InputError(f"{path}: video file not found")
    if path.stat().st_size == 0:
        raise EmptyMediaError(f"{path}: the video file is empty")
    if seconds_per_hash < 0:
        raise ValueError(f"seconds_per_hash must be >= 0, got {seconds_per_hash}")
    if downsample_width < 0 or downsample_height < 0:
        raise ValueError("downsample_width and downsample_height must be >= 0")
    try:
        features = vpdq.computeHash(
            str(path),
            seconds_per_hash=seconds_per_hash,
            downsample_width=downsample_width,
            downsample_height=downsample_height,
        )
    except Exception as exc:  # vpdq raises a bare Exception("Fail to create VPDQ hash")
        raise CorruptMediaError(f"{path}: could not be decoded for vPDQ hashing ({exc})") from exc
    hashes: list[MediaHash] = []
    for feature in features:
        digest = _feature_hex(feature, vpdq)
        if hashes and hashes[-1].hash == digest:
            continue
        hashes.append(
            MediaHash(
                kind="vpdq",
                hash=digest,
                quality=int(feature.quality),
                timestamp_s=float(feature.timestamp),
                frame=int(feature.frame_number),
            )
        )
    return hashes


def _feature_hex(feature: Any, vpdq: Any) -> str:
    """A VpdqFeature's hash as 64 lowercase hex.

    vpdq 0.2.5 stores `hash` as a Hash256 dict of sixteen 16-bit words and sets `hex` from it
    (`vpdq.hash_to_hex`); ThreatExchange's vpdq_util reads `.hex`. Older wheels only have the
    Hash256, so fall back to converting it.
    """
    digest = getattr(feature, "hex", None)
    if not isinstance(digest, str):
        digest = vpdq.hash_to_hex(feature.hash)
    return _check_hex(str(digest).lower())


def _bits_to_hex(bits: np.ndarray) -> str:
    """256 0/1 values, most significant first, to 64 hex chars: ThreatExchange's
    `"%0*X" % (64, int("".join(bits), 2))`, lower-cased, but without the string round trip."""
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()


def _check_hex(value: str) -> str:
    if not isinstance(value, str) or not _HEX64.fullmatch(value.lower()):
        raise InputError(f"not a PDQ hash (64 hex characters): {value!r:.80}")
    return value.lower()


def _hex_to_bytes(values: Sequence[str]) -> np.ndarray:
    raw = b"".join(bytes.fromhex(_check_hex(v)) for v in values)
    return np.frombuffer(raw, dtype=np.uint8).reshape(len(values), 32)
