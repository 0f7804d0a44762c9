"""The Detector protocol: a batch of items in, a score per (item, category) out, NaN where it does not apply."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from bastion.items import Item

if TYPE_CHECKING:
    from bastion.media.decode import DecodedAudio

InputType = str
"""Which part of an item a detector reads and a score came from: "text", "image", "video" or
"audio"."""


@dataclass(frozen=True)
class Evidence:
    """Why a detector scored a category as it did, in a form a reviewer can check.

    Media evidence says where to look: `source` names the media ("images[1]", "video",
    "audio"), `boxes` are (x, y, w, h) regions in that image or frame, `start_s`/`end_s` a
    time span, and `text` the words read from an image or heard in speech.
    """

    detector: str
    category: str
    score: float
    detail: str
    ref: str | None = None
    input_type: InputType = "text"
    source: str | None = None
    boxes: tuple[tuple[int, int, int, int], ...] = ()
    start_s: float | None = None
    end_s: float | None = None
    text: str | None = None


@dataclass
class DetectorOutput:
    """Scores `(n_items, n_categories)` in the policy's category order, plus evidence per item.

    `truncated[i]` is True when the detector could not look at all of item i (too long);
    `errors[i]` says why it could not look at item i at all (OCR timed out on one of its
    images, say), and the Moderator then reports the item as not scored rather than safe.
    """

    scores: np.ndarray
    evidence: list[list[Evidence]] = field(default_factory=list)
    truncated: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    errors: list[str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.scores.ndim != 2:
            raise ValueError(f"detector scores must be 2-D, got shape {self.scores.shape}")
        if not self.evidence:
            self.evidence = [[] for _ in range(self.scores.shape[0])]
        if len(self.truncated) == 0:
            self.truncated = np.zeros(self.scores.shape[0], dtype=bool)
        elif len(self.truncated) != self.scores.shape[0]:
            raise ValueError("detector 'truncated' must have one entry per item")
        if not self.errors:
            self.errors = [None] * self.scores.shape[0]


def quote(text: str, limit: int = 120) -> str:
    """Text on one line, cut to `limit` characters, in double quotes (for evidence details)."""
    flat = " ".join(text.split())
    return '"' + (flat if len(flat) <= limit else flat[: limit - 1] + "…") + '"'


def per_item_max(
    rows: DetectorOutput, owner: np.ndarray, n_items: int, category_ids: Sequence[str]
) -> DetectorOutput:
    """Item scores from row scores (images, frames, segments), keeping the worst row's evidence.

    `owner[r]` is the item row r belongs to. An item is as violating as its most violating
    image; each category's evidence is what that row gave for it, so a reviewer is pointed at
    the image (or frame) that decided. Items without rows are NaN: no opinion.
    """
    from bastion.models.scoring import group_max

    n_cat = len(category_ids)
    evidence: list[list[Evidence]] = [[] for _ in range(n_items)]
    if len(owner) == 0:
        return DetectorOutput(np.full((n_items, n_cat), np.nan), evidence)
    finite = np.where(np.isfinite(rows.scores), rows.scores, -np.inf)
    best, arg = group_max(finite, np.asarray(owner), n_items)
    scores = np.where(np.isfinite(best), best, np.nan)
    for i, c in zip(*np.nonzero(np.isfinite(scores)), strict=True):
        row = int(arg[i, c])
        evidence[i].extend(e for e in rows.evidence[row] if e.category == category_ids[c])
    for ev in evidence:
        ev.sort(key=lambda e: -e.score)
    errors: list[str | None] = [None] * n_items
    for row, error in enumerate(rows.errors):
        if error is not None and errors[owner[row]] is None:
            errors[owner[row]] = error
    return DetectorOutput(scores, evidence, errors=errors)


@runtime_checkable
class Detector(Protocol):
    """Anything with a name, its categories and a batch `score` method is a detector.

    Kept small on purpose (like a threatexchange signal type): a new detector plugs into the
    Moderator without touching the others. A detector that does not apply to an item or category
    returns NaN there, so fusion can tell "no opinion" from "safe".

    The four properties are everything else the Moderator reads; `BaseDetector` gives each its
    default, so a new detector writes only `name`, `category_ids` and `score`. (An object with
    only those three is still accepted: the Moderator reads it through `with_defaults`.)
    """

    name: str
    category_ids: list[str]

    def score(self, items: Sequence[Item]) -> DetectorOutput: ...

    @property
    def input_type(self) -> InputType:
        """What it reads: "text" runs on items' text (and on words OCR and speech find in
        media); "image", "video" or "audio" runs on that media, decoded."""
        ...

    @property
    def version(self) -> str:
        """How a verdict's `model_version` names it (text detectors only): its name, plus the
        model and encoder it runs where those can change."""
        ...

    @property
    def fallback(self) -> np.ndarray | None:
        """Per category, True where it has no trained model of its own (its score there comes
        from the policy text alone); None: true everywhere. The LLM stage may judge such cells."""
        ...

    @property
    def uncovered(self) -> dict[str, str]:
        """The categories it should score on media but cannot here (a model not installed),
        each with why: the Moderator sends such media to a person rather than read NaN as 0."""
        ...


class BaseDetector:
    """The defaults of the Detector members a detector need not write: it reads text, is named
    by its name in `model_version`, has no trained model, and covers what it should."""

    name: str
    category_ids: list[str]
    input_type: InputType = "text"
    fallback: np.ndarray | None = None

    @property
    def version(self) -> str:
        return self.name

    @property
    def uncovered(self) -> dict[str, str]:
        return {}


class _Scores(Protocol):
    name: str
    category_ids: list[str]

    def score(self, items: Sequence[Item]) -> DetectorOutput: ...


class _WithDefaults(BaseDetector):
    def __init__(self, detector: _Scores) -> None:
        self.detector = detector
        self.name = detector.name
        self.category_ids = detector.category_ids

    def score(self, items: Sequence[Item]) -> DetectorOutput:
        return self.detector.score(items)


def with_defaults(detector: Detector | _Scores) -> Detector:
    """The detector itself, or one that reads only its name, categories and `score` (a detector
    written before the protocol grew its properties) with the defaults of `BaseDetector`."""
    if isinstance(detector, Detector):
        return detector
    return _WithDefaults(detector)


def worst_of(outputs: Sequence[DetectorOutput]) -> DetectorOutput:
    """Detectors that look at different things (OCR and NudeNet, frames and soundtrack) combined:
    per cell the highest score, all their evidence (strongest first), the first error."""
    from bastion.models.scoring import fuse_max

    n = outputs[0].scores.shape[0]
    evidence = [
        sorted((e for o in outputs for e in o.evidence[i]), key=lambda e: -e.score)
        for i in range(n)
    ]
    errors = [next((o.errors[i] for o in outputs if o.errors[i]), None) for i in range(n)]
    return DetectorOutput(fuse_max([o.scores for o in outputs]), evidence, errors=errors)


TextScorer = Callable[[Sequence[str]], DetectorOutput]
"""Scores texts with the Moderator's text detectors, fused: how text read from media is judged."""


@runtime_checkable
class ImageDetector(Protocol):
    """A detector that can also score bare images (RGB uint8 arrays), one row per image.

    Items reach it through `score`; the video detector sends sampled frames through
    `score_images` so that a frame is judged exactly as a still image would be.
    """

    name: str
    category_ids: list[str]
    input_type: InputType

    def score(self, items: Sequence[Item]) -> DetectorOutput: ...

    def score_images(
        self, images: Sequence[np.ndarray], sources: Sequence[str]
    ) -> DetectorOutput: ...


@runtime_checkable
class AudioDetector(Protocol):
    """A detector that can also score bare audio tracks, one row per track.

    Items reach it through `score`; the video detector sends soundtracks through `score_audio`
    (with `input_type` "video", so the evidence says where the words were heard).
    """

    name: str
    category_ids: list[str]

    def score(self, items: Sequence[Item]) -> DetectorOutput: ...

    def score_audio(
        self, tracks: Sequence[DecodedAudio], sources: Sequence[str], input_type: str
    ) -> DetectorOutput: ...


def score_item_images(detector: ImageDetector, items: Sequence[Item]) -> DetectorOutput:
    """An image detector's item scores: every frame of every decoded image, max per item."""
    images: list[np.ndarray] = []
    sources: list[str] = []
    owner: list[int] = []
    for i, item in enumerate(items):
        if item.decoded is None:
            continue
        for k, image in enumerate(item.decoded.images):
            for f, frame in enumerate(image.frames):
                images.append(frame)
                sources.append(f"images[{k}]" + (f" frame {f}" if len(image.frames) > 1 else ""))
                owner.append(i)
    rows = (
        detector.score_images(images, sources)
        if images
        else DetectorOutput(np.zeros((0, len(detector.category_ids))))
    )
    return per_item_max(rows, np.asarray(owner, dtype=np.int64), len(items), detector.category_ids)
