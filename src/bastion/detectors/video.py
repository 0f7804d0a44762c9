"""Video detector: sampled frames through the image detectors, the soundtrack through speech.

It is not registered by name: the Moderator builds it from the image and audio detectors it runs,
so a detector added for images also looks at video frames.

Frames come from the decoder already sampled at scene changes (with a fixed-rate fallback and a
cap), so a cut to a single violating shot is looked at. Each frame is judged exactly as a still
image would be; per category the video scores its worst frame or its worst stretch of speech,
and the evidence carries that frame's timestamp or that segment's times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from bastion.detectors.base import (
    AudioDetector,
    BaseDetector,
    DetectorOutput,
    Evidence,
    ImageDetector,
    per_item_max,
    worst_of,
)
from bastion.items import Item


class VideoDetector(BaseDetector):
    name = "video"
    input_type = "video"

    def __init__(
        self,
        category_ids: Sequence[str],
        image_detectors: Sequence[ImageDetector],
        audio_detectors: Sequence[AudioDetector] = (),
    ) -> None:
        self.category_ids = list(category_ids)
        self.image_detectors = list(image_detectors)
        self.audio_detectors = list(audio_detectors)

    def score(self, items: Sequence[Item]) -> DetectorOutput:
        n_items, n_cat = len(items), len(self.category_ids)
        frames: list[np.ndarray] = []
        times: list[float] = []
        frame_owner: list[int] = []
        tracks = []
        track_owner: list[int] = []
        for i, item in enumerate(items):
            video = item.decoded.video if item.decoded is not None else None
            if video is None:
                continue
            for frame in video.frames:
                frames.append(frame.image)
                times.append(frame.timestamp_s)
                frame_owner.append(i)
            if video.audio is not None and video.audio.samples.size:
                tracks.append(video.audio)
                track_owner.append(i)
        parts: list[DetectorOutput] = []
        if frames:
            sources = [f"video frame at {t:.1f} s" for t in times]
            for det in self.image_detectors:
                rows = det.score_images(frames, sources)
                rows.evidence = [
                    [_at(ev, t) for ev in row] for row, t in zip(rows.evidence, times, strict=True)
                ]
                parts.append(
                    per_item_max(rows, np.asarray(frame_owner), n_items, self.category_ids)
                )
        for heard in self.audio_detectors if tracks else ():
            rows = heard.score_audio(tracks, ["video soundtrack"] * len(tracks), "video")
            parts.append(per_item_max(rows, np.asarray(track_owner), n_items, self.category_ids))
        if not parts:
            return DetectorOutput(np.full((n_items, n_cat), np.nan))
        return worst_of(parts)


def _at(ev: Evidence, t: float) -> Evidence:
    return replace(ev, input_type="video", start_s=t, end_s=t)
