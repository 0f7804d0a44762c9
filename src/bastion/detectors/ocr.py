"""Text-in-image detector: Tesseract reads captions, memes and screenshots; the text detectors judge the words.

A threat drawn into a picture is still a threat, and typographic attacks (text overlaid to
steer a classifier) are text. So the recognised text goes through the same text detectors,
calibration and thresholds as a comment would, and the evidence records the words read and the
boxes of the lines they came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from bastion.detectors.base import DetectorOutput, Evidence, TextScorer, quote, score_item_images
from bastion.items import Item
from bastion.media.ocr import OcrResult, Tesseract


@lru_cache(maxsize=1)
def load_tesseract() -> Tesseract:
    return Tesseract()


MIN_OCR_CHARS = 3
"""Fewer letters than this read from an image is noise (a stray glyph in a photo), not text."""


class OcrDetector:
    name = "ocr"
    input_type = "image"

    def __init__(
        self, category_ids: Sequence[str], text_scorer: TextScorer, ocr: Tesseract | None = None
    ) -> None:
        self.category_ids = list(category_ids)
        self.text_scorer = text_scorer
        self.ocr = ocr

    def score(self, items: Sequence[Item]) -> DetectorOutput:
        return score_item_images(self, items)

    def read(self, images: Sequence[np.ndarray]) -> list[OcrResult]:
        return (self.ocr or load_tesseract()).read_many(images)

    def score_images(self, images: Sequence[np.ndarray], sources: Sequence[str]) -> DetectorOutput:
        results = self.read(images) if images else []
        return self.score_read(results, sources)

    def score_read(self, results: Sequence[OcrResult], sources: Sequence[str]) -> DetectorOutput:
        """Score already-recognised text (the video detector reuses it for frames)."""
        scores = np.full((len(results), len(self.category_ids)), np.nan)
        evidence: list[list[Evidence]] = [[] for _ in results]
        rows = [
            r
            for r, res in enumerate(results)
            if sum(ch.isalnum() for ch in res.text) >= MIN_OCR_CHARS
        ]
        if not rows:
            return DetectorOutput(scores, evidence)
        texts = [results[r].text for r in rows]
        judged = self.text_scorer(texts)
        for k, r in enumerate(rows):
            scores[r] = judged.scores[k]
            boxes = tuple(line.box for line in results[r].lines)
            for ev in judged.evidence[k]:
                evidence[r].append(
                    Evidence(
                        self.name,
                        ev.category,
                        ev.score,
                        f"text in {sources[r]}: {quote(texts[k])}; {ev.detector}: {ev.detail}",
                        ref=ev.ref,
                        input_type=self.input_type,
                        source=sources[r],
                        boxes=boxes,
                        text=texts[k],
                    )
                )
        return DetectorOutput(scores, evidence)
