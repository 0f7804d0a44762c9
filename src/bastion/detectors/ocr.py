"""Text-in-image detector: Tesseract reads captions, memes and screenshots; the text detectors judge the words.

A threat drawn into a picture is still a threat, and typographic attacks (text overlaid to
steer a classifier) are text. So the recognised text goes through the same text detectors,
calibration and thresholds as a comment would, and the evidence records the words read and the
boxes of the lines they came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from bastion.detectors.base import (
    BaseDetector,
    DetectorOutput,
    Evidence,
    TextScorer,
    per_item_max,
    quote,
    score_item_images,
)
from bastion.errors import BastionError
from bastion.items import Item
from bastion.media.ocr import OcrResult, Tesseract

if TYPE_CHECKING:
    from bastion.detectors.registry import DetectorSetup


@lru_cache(maxsize=4)
def load_tesseract(timeout_s: float = 10.0) -> Tesseract:
    """One Tesseract per time limit (it checks its language data when built, in a subprocess)."""
    return Tesseract(timeout_s=timeout_s)


MIN_OCR_CHARS = 3
"""Fewer letters than this read from an image is noise (a stray glyph in a photo), not text."""


class OcrDetector(BaseDetector):
    name = "ocr"
    input_type = "image"

    def __init__(
        self,
        category_ids: Sequence[str],
        text_scorer: TextScorer,
        ocr: Tesseract | None = None,
        *,
        timeout_s: float = 10.0,
    ) -> None:
        """`ocr` reads the images; without it, a Tesseract with `timeout_s` per image, built at
        the first image (so a Moderator that never sees one needs no Tesseract)."""
        self.category_ids = list(category_ids)
        self.text_scorer = text_scorer
        self.ocr = ocr
        self.timeout_s = timeout_s

    @classmethod
    def from_setup(cls, setup: DetectorSetup) -> OcrDetector:
        return cls(
            setup.category_ids, setup.text_scorer, timeout_s=setup.media_limits.ocr_timeout_s
        )

    def score(self, items: Sequence[Item]) -> DetectorOutput:
        return score_item_images(self, items)

    def read(self, images: Sequence[np.ndarray]) -> tuple[list[OcrResult], list[str | None]]:
        """OCR results and, per image, why it could not be read (None when it was).

        The batch is read at once; if that fails (one image over the OCR time limit), each
        image is read again on its own so only the failing ones are lost.
        """
        ocr = self.ocr or load_tesseract(self.timeout_s)
        try:
            return ocr.read_many(images), [None] * len(images)
        except BastionError:
            pass
        results: list[OcrResult] = []
        errors: list[str | None] = []
        for image in images:
            try:
                results.append(ocr.read(image))
                errors.append(None)
            except BastionError as exc:
                results.append(OcrResult(text="", lines=[]))
                errors.append(str(exc))
        return results, errors

    def score_images(self, images: Sequence[np.ndarray], sources: Sequence[str]) -> DetectorOutput:
        results, errors = self.read(images) if images else ([], [])
        out = self.score_read(results, sources)
        out.errors = [
            None if e is None else f"{sources[r]}: text could not be read ({e})"
            for r, e in enumerate(errors)
        ]
        return out

    def score_read(self, results: Sequence[OcrResult], sources: Sequence[str]) -> DetectorOutput:
        """Score already-recognised text (the video detector reuses it for frames).

        Each image's whole text is scored, and each of its blocks alone when there are several:
        a screenshot of a chat is several messages, and one threat among friendly lines must
        not be averaged away. The image scores its worst passage; the evidence quotes that
        passage with the boxes of its lines.
        """
        texts: list[str] = []
        boxes: list[tuple[tuple[int, int, int, int], ...]] = []
        owner: list[int] = []
        for r, res in enumerate(results):
            passages = [res.lines] + (res.blocks() if len(res.blocks()) > 1 else [])
            for lines in passages:
                text = "\n".join(line.text for line in lines)
                if sum(ch.isalnum() for ch in text) < MIN_OCR_CHARS:
                    continue
                texts.append(text)
                boxes.append(tuple(line.box for line in lines))
                owner.append(r)
        if not texts:
            return DetectorOutput(np.full((len(results), len(self.category_ids)), np.nan))
        judged = self.text_scorer(texts)
        evidence = [
            [
                Evidence(
                    self.name,
                    ev.category,
                    ev.score,
                    f"text in {sources[owner[k]]}: {quote(text)}; {ev.detector}: {ev.detail}",
                    ref=ev.ref,
                    input_type=self.input_type,
                    source=sources[owner[k]],
                    boxes=boxes[k],
                    text=text,
                )
                for ev in judged.evidence[k]
            ]
            for k, text in enumerate(texts)
        ]
        rows = DetectorOutput(judged.scores, evidence)
        return per_item_max(
            rows, np.asarray(owner, dtype=np.int64), len(results), self.category_ids
        )
