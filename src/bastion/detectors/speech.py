"""Speech detector: Whisper transcribes audio tracks; the text detectors judge what was said.

The transcript is scored as a whole and per segment (a threat said in the middle of a long
monologue must not be averaged away by the text windowing), and the evidence carries the
segment's words with its start and end times, so a reviewer can jump to the moment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from bastion.detectors.base import BaseDetector, DetectorOutput, Evidence, per_item_max, quote
from bastion.items import Item
from bastion.media.decode import DecodedAudio
from bastion.media.speech import Transcriber, Transcript, load_transcriber

if TYPE_CHECKING:
    from bastion.detectors.base import TextScorer
    from bastion.detectors.registry import DetectorSetup


class SpeechDetector(BaseDetector):
    name = "speech"
    input_type = "audio"

    def __init__(
        self,
        category_ids: Sequence[str],
        text_scorer: TextScorer,
        transcriber: Transcriber | None = None,
    ) -> None:
        self.category_ids = list(category_ids)
        self.text_scorer = text_scorer
        self.transcriber = transcriber

    @classmethod
    def from_setup(cls, setup: DetectorSetup) -> SpeechDetector:
        return cls(setup.category_ids, setup.text_scorer)

    def score(self, items: Sequence[Item]) -> DetectorOutput:
        tracks: list[DecodedAudio] = []
        owner: list[int] = []
        for i, item in enumerate(items):
            if item.decoded is not None and item.decoded.audio is not None:
                tracks.append(item.decoded.audio)
                owner.append(i)
        scored = self.score_audio(tracks, ["audio"] * len(tracks), self.input_type)
        return per_item_max(
            scored, np.asarray(owner, dtype=np.int64), len(items), self.category_ids
        )

    def transcribe(self, tracks: Sequence[DecodedAudio]) -> list[Transcript]:
        transcriber = self.transcriber or load_transcriber()
        return transcriber.transcribe_many([t.samples for t in tracks])

    def score_audio(
        self, tracks: Sequence[DecodedAudio], sources: Sequence[str], input_type: str
    ) -> DetectorOutput:
        """One row per track: the max over its whole transcript and each of its segments."""
        n_cat = len(self.category_ids)
        if not tracks:
            return DetectorOutput(np.zeros((0, n_cat)))
        transcripts = self.transcribe(tracks)
        texts: list[str] = []
        spans: list[tuple[float | None, float | None]] = []
        owner: list[int] = []
        for r, tr in enumerate(transcripts):
            if not tr.text.strip():
                continue
            texts.append(tr.text)
            spans.append(
                (tr.segments[0].start_s, tr.segments[-1].end_s) if tr.segments else (None, None)
            )
            owner.append(r)
            if len(tr.segments) > 1:
                for seg in tr.segments:
                    texts.append(seg.text.strip())
                    spans.append((seg.start_s, seg.end_s))
                    owner.append(r)
        if not texts:
            # Silence or no speech: an opinion ("nothing said"), not missing data.
            return DetectorOutput(np.full((len(tracks), n_cat), np.nan))
        judged = self.text_scorer(texts)
        evidence: list[list[Evidence]] = []
        for k, text in enumerate(texts):
            start, end = spans[k]
            src = sources[owner[k]]
            evidence.append(
                [
                    Evidence(
                        self.name,
                        ev.category,
                        ev.score,
                        f"said in {src} at {_span(start, end)}: {quote(text)}; "
                        f"{ev.detector}: {ev.detail}",
                        ref=ev.ref,
                        input_type=input_type,
                        source=src,
                        start_s=start,
                        end_s=end,
                        text=text,
                    )
                    for ev in judged.evidence[k]
                ]
            )
        rows = DetectorOutput(judged.scores, evidence)
        return per_item_max(rows, np.asarray(owner, dtype=np.int64), len(tracks), self.category_ids)


def _span(start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return "?"
    return f"{start:.1f}-{end:.1f} s"
