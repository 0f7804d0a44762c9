"""Media moderation for a batch: decode each item's media safely, run the media detectors, hash.

The Moderator hands items with media here. Decoding happens in decoder processes under a time
budget per item (`MediaLimits.decode_timeout_s` for all of one item's media together); an item
whose media is refused gets an error naming the media and the limit, and the others go on.
The Moderator's media detectors then read the decoded media (by default NudeNet and OCR on
images, the same two on sampled video frames, Whisper on audio tracks). Each input type's scores
are kept apart so the verdict can say which input types drove each category
(`category_applied_input_types`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from bastion.detectors.base import (
    AudioDetector,
    Detector,
    DetectorOutput,
    Evidence,
    ImageDetector,
    worst_of,
)
from bastion.detectors.video import VideoDetector
from bastion.errors import BastionError
from bastion.items import DecodedMedia, Item
from bastion.media.decode import DecodedAudio, DecodedImage, DecodedVideo
from bastion.media.hashing import MediaHash, pdq_hash
from bastion.media.limits import MediaLimits
from bastion.media.sandbox import DecoderPool
from bastion.policy import LoadedPolicy


@dataclass
class MediaScores:
    """Per input type, scores `(n_items, n_categories)` (NaN where that type is absent)."""

    by_type: dict[str, np.ndarray]
    evidence: list[list[Evidence]]
    hashes: list[list[tuple[str, MediaHash]]]  # (source, hash) per item
    errors: list[str | None]
    #: Per item, the categories that no detector could score on its images, video frames or
    #: audio (NudeNet not installed, no such detector), each with why; empty for most items.
    uncovered: list[dict[str, str]] = field(default_factory=list)


class MediaModerator:
    """Decoder processes plus the Moderator's media detectors, built once per Moderator and reused.

    Each detector runs on the input type it reads. Video frames go through the image detectors
    that can score bare images, and soundtracks through the audio detectors that can score bare
    tracks, beside any detector that reads video itself.
    """

    def __init__(
        self,
        policy: LoadedPolicy,
        detectors: Sequence[Detector],
        *,
        limits: MediaLimits | None = None,
        pool: DecoderPool | None = None,
    ) -> None:
        ids = policy.category_ids
        self.category_ids = ids
        self.limits = limits or (pool.limits if pool is not None else MediaLimits())
        self.pool = pool or DecoderPool(self.limits)
        self.image_detectors = [d for d in detectors if d.input_type == "image"]
        self.audio_detectors = [d for d in detectors if d.input_type == "audio"]
        video = VideoDetector(
            ids,
            [d for d in self.image_detectors if isinstance(d, ImageDetector)],
            [d for d in self.audio_detectors if isinstance(d, AudioDetector)],
        )
        self.video_detectors = [video, *(d for d in detectors if d.input_type == "video")]

    def close(self) -> None:
        self.pool.close()

    # ------------------------------------------------------------------ decoding

    def decode(self, items: Sequence[Item]) -> list[str | None]:
        """Decode every item's media into `item.decoded`; returns an error (or None) per item."""
        workers = max(1, self.pool.workers)
        if len(items) == 1 or workers == 1:
            return [self._decode_item(item) for item in items]
        with ThreadPoolExecutor(workers, thread_name_prefix="bastion-decode") as ex:
            return list(ex.map(self._decode_item, items))

    def _decode_item(self, item: Item) -> str | None:
        deadline = time.monotonic() + self.limits.decode_timeout_s
        decoded = DecodedMedia()
        named = [(f"images[{k}]", s) for k, s in enumerate(item.images)]
        named += [(kind, s) for kind, s in (("video", item.video), ("audio", item.audio)) if s]
        for label, source in named:
            try:
                result = self.pool.decode(source, deadline - time.monotonic())
            except BastionError as exc:
                item.decoded = None
                return f"{label}: {exc}"
            if isinstance(result, DecodedImage):
                decoded.images.append(result)
            elif isinstance(result, DecodedVideo):
                decoded.video = result
            elif isinstance(result, DecodedAudio):
                decoded.audio = result
        item.decoded = decoded
        return None

    # ------------------------------------------------------------------ scoring

    def score(self, items: Sequence[Item]) -> MediaScores:
        """Decode, then score each input type; items whose media failed are all NaN."""
        errors = self.decode(items)
        ok = [item for item, err in zip(items, errors, strict=True) if err is None]
        n, n_cat = len(items), len(self.category_ids)
        index = np.array([i for i, err in enumerate(errors) if err is None], dtype=np.int64)
        by_type: dict[str, np.ndarray] = {}
        evidence: list[list[Evidence]] = [[] for _ in items]
        parts: list[tuple[str, DetectorOutput]] = []
        for kind, detectors in (
            ("image", self.image_detectors),
            ("video", self.video_detectors),
            ("audio", self.audio_detectors),
        ):
            if detectors and any(_has(it.decoded, kind) for it in ok):
                parts.append((kind, worst_of([det.score(ok) for det in detectors])))
        for kind, out in parts:
            full = np.full((n, n_cat), np.nan)
            full[index] = out.scores
            by_type[kind] = full
            for k, i in enumerate(index):
                evidence[i].extend(out.evidence[k])
                if out.errors[k] is not None and errors[i] is None:
                    errors[i] = out.errors[k]  # a part not looked at: not scored, not "safe"
        hashes = [
            _hashes(item) if err is None else [] for item, err in zip(items, errors, strict=True)
        ]
        uncovered = [
            self._uncovered(item) if err is None else {}
            for item, err in zip(items, errors, strict=True)
        ]
        for item in items:
            item.decoded = None  # frames can be large; the verdict keeps what matters
        return MediaScores(by_type, evidence, hashes, errors, uncovered)

    def _uncovered(self, item: Item) -> dict[str, str]:
        """What the image detectors could not cover for this item's images and video frames,
        and every category where no detector here reads its images or its audio at all."""
        decoded = item.decoded
        out: dict[str, str] = {}
        pictures = _has(decoded, "image") or _has(decoded, "video")
        for kind, present, detectors in (
            ("images", pictures, self.image_detectors),
            ("audio", _has(decoded, "audio"), self.audio_detectors),
        ):
            if present and not detectors:
                why = f"no detector in this Moderator reads {kind}"
                out.update((cid, why) for cid in self.category_ids if cid not in out)
        for det in self.image_detectors if pictures else ():
            for cid, why in det.uncovered.items():
                out.setdefault(cid, why)
        return out


def _has(decoded: DecodedMedia | None, kind: str) -> bool:
    """Whether decoded media has a part of this input type ("image", "video" or "audio")."""
    if decoded is None:
        return False
    part = {"image": decoded.images, "video": decoded.video, "audio": decoded.audio}[kind]
    return bool(part)


def _hashes(item: Item) -> list[tuple[str, MediaHash]]:
    """PDQ of every image (its first frame) and the video's vPDQ features, for hash banks."""
    out: list[tuple[str, MediaHash]] = []
    if item.decoded is None:
        return out
    for k, image in enumerate(item.decoded.images):
        out.append((f"images[{k}]", pdq_hash(image.frames[0])))
    if item.decoded.video is not None:
        out.extend(("video", h) for h in item.decoded.video.hashes)
    return out
