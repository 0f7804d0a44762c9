"""The pipeline from items to verdicts: run detectors, fuse their scores, apply the policy's thresholds."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, Field, model_validator

from bastion.detectors import registry
from bastion.detectors.base import Detector, DetectorOutput, with_defaults
from bastion.detectors.base import Evidence as DetectorEvidence
from bastion.detectors.registry import DetectorSetup
from bastion.detectors.text_model import model_thresholds
from bastion.errors import InputError
from bastion.items import Item, as_item
from bastion.media.limits import MediaLimits
from bastion.models.scoring import fuse, fuse_max
from bastion.policy import UNSCORED_ACTION, Action, LoadedPolicy, load_policy

if TYPE_CHECKING:
    from bastion.detectors.multimodal import MediaModerator
    from bastion.judge.cascade import LLMCascade
    from bastion.media.hashing import MediaHash


class Evidence(BaseModel):
    """What a detector contributed to a category's score, and where in the item to look."""

    detector: str
    category: str
    score: float
    detail: str
    ref: str | None = None
    input_type: str = "text"
    source: str | None = None
    boxes: list[tuple[int, int, int, int]] = Field(default_factory=list)
    start_s: float | None = None
    end_s: float | None = None
    text: str | None = None


class MediaHashRecord(BaseModel):
    """A perceptual hash of an item's image (PDQ) or video frame (vPDQ), for hash banks."""

    source: str
    kind: str
    hash: str
    quality: int
    timestamp_s: float | None = None


class Verdict(BaseModel):
    """A moderation decision in the shape of an OpenAI moderation result, plus Bastion's fields.

    `flagged`, `categories`, `category_scores` and `category_applied_input_types` (which input
    types, of "text", "image", "video", "audio", flagged each category) mean what they mean in
    the OpenAI API; `action` comes from the policy's score bands; `hashes` are the perceptual
    hashes of the item's media; `error` is set (and the scores left empty) when the item could
    not be scored, for example when its media was refused. `uncovered` names the categories that
    no detector could score on the item's media (NudeNet not installed, for the categories that
    list nudity labels), each with why: their scores count only what was looked at (text, the
    words in the image), so their action is at least `review`, never `allow`.

    A verdict with an `error` fails closed, however it was built: `flagged` is None (unknown,
    not "safe") and `action` is `UNSCORED_ACTION` (review), so a client that acts on `action`
    sends the item to a person instead of publishing it.
    """

    id: str | None = None
    flagged: bool | None = None
    categories: dict[str, bool] = Field(default_factory=dict)
    category_scores: dict[str, float] = Field(default_factory=dict)
    action: Action = UNSCORED_ACTION
    category_actions: dict[str, Action] = Field(default_factory=dict)
    category_applied_input_types: dict[str, list[str]] = Field(default_factory=dict)
    evidence: list[Evidence] = Field(default_factory=list)
    hashes: list[MediaHashRecord] = Field(default_factory=list)
    rationale: str | None = None
    policy_version: str
    model_version: str
    truncated: bool = False
    uncovered: dict[str, str] = Field(default_factory=dict)
    error: str | None = None

    @model_validator(mode="after")
    def _fail_closed(self) -> Verdict:
        if self.error is not None:
            self.flagged = None
            self.action = UNSCORED_ACTION
        return self

    @property
    def top_category(self) -> str | None:
        if not self.category_scores:
            return None
        return max(self.category_scores, key=lambda c: self.category_scores[c])


MODEL = "model"
"""The registered name of the text model that a Moderator's `model` argument names."""

DEFAULT_DETECTORS = (MODEL, "nudity", "ocr", "speech")
"""What every Moderator runs unless told otherwise: the text model, then NudeNet and OCR on
images and video frames, and speech on audio and soundtracks."""


class Moderator:
    """Runs detectors over batches of items and returns one Verdict per item, in order.

    Build it once (loading the encoder and fitting the zero-shot prototypes takes seconds) and
    call `moderate` many times.
    """

    def __init__(
        self,
        policy: str | Path | LoadedPolicy = "openai",
        *,
        model: str | Path | None = "default",
        detectors: Sequence[Detector | str] = (),
        default_detectors: Sequence[str] = DEFAULT_DETECTORS,
        weights: Sequence[float] | None = None,
        thresholds: Mapping[str, float] | None = None,
        encoder: str | None = None,
        batch_size: int = 1024,
        media_limits: MediaLimits | None = None,
        runtime: str | None = None,
        cascade: LLMCascade | None = None,
    ) -> None:
        """`model` is "default" (the model shipped in the package, where it was trained for this
        policy version and encoder; zero-shot otherwise), "zero-shot" (or None), or a trained
        model directory (refused when trained for another policy version). A trained model's
        calibrated thresholds are used unless `thresholds` are given. `media_limits` bound the
        decoding of images, video and audio (decoder processes start at the first item with
        media; `close()` stops them). `runtime` runs the encoder and head with "onnx" (int8,
        no PyTorch), "torch", or "auto" (the default, or $BASTION_RUNTIME): ONNX where an export
        exists and, for a trained model, its manifest's check found it within tolerance.
        `cascade` turns on the LLM stage: cells whose fused score falls in its uncertain band
        (or of categories without a trained model, if it says so) are judged by its LLM judge,
        whose answer is fused in and whose rationale goes into the verdict.

        The detectors it runs are `default_detectors` (names: the text model `model` names, and
        NudeNet, OCR and speech for media) and then `detectors`, added to them: built detectors,
        or names that `bastion.detectors.registry` builds. To run only your own, replace the
        defaults: `default_detectors=()`. Text detectors' scores are averaged (with `weights`,
        one per text detector in that order); each media type's detectors give their worst."""
        self.policy = policy if isinstance(policy, LoadedPolicy) else load_policy(policy)
        wanted = _each_name_once([*default_detectors, *detectors])
        registry.check(w for w in wanted if isinstance(w, str))  # before the slow loading
        if thresholds is None and MODEL in wanted:
            thresholds = model_thresholds(model, self.policy, encoder)
        default = self.policy.policy.bands
        cats = self.policy.policy.categories
        thresholds = thresholds or {}
        self.thresholds = np.array([thresholds.get(c.id, c.threshold_or(default)) for c in cats])
        self.bands = [c.bands_or(default) for c in cats]
        self.media_limits = media_limits or MediaLimits()
        setup = DetectorSetup(
            self.policy,
            self.score_texts,
            self.thresholds,
            self.media_limits,
            model=model,
            encoder=encoder,
            runtime=runtime,
        )
        self.detectors = [
            registry.build(d, setup) if isinstance(d, str) else with_defaults(d) for d in wanted
        ]
        for det in self.detectors:
            if list(det.category_ids) != self.policy.category_ids:
                raise InputError(
                    f"detector '{det.name}' scores categories {det.category_ids[:3]}... which do not "
                    f"match policy {self.policy.version}; build it from the same policy"
                )
        self.text_detectors = [d for d in self.detectors if d.input_type == "text"]
        if not self.text_detectors:
            raise ValueError(
                "a Moderator needs at least one text detector (OCR and speech hand it the words "
                "they find): keep 'model' among its detectors, or add 'zero-shot' or your own"
            )
        self.weights = list(weights) if weights is not None else None
        self.batch_size = batch_size
        self.model_version = "+".join(d.version for d in self.text_detectors)
        if cascade is not None and cascade.judge.policy.version != self.policy.version:
            raise InputError(
                f"the LLM judge reads policy {cascade.judge.policy.version}, not "
                f"{self.policy.version}; build it from the same policy"
            )
        self.cascade = cascade
        if cascade is not None:
            self.model_version += f"+llm-judge:{cascade.judge.backend.name}"
        # Categories no text detector has a trained model for (the LLM stage may judge them all).
        self.untrained = np.logical_and.reduce(
            [
                np.ones(len(self.thresholds), bool) if d.fallback is None else d.fallback
                for d in self.text_detectors
            ]
        )
        self._media: MediaModerator | None = None

    @property
    def media(self) -> MediaModerator:
        """The media detectors and decoder processes, built at first use."""
        if self._media is None:
            from bastion.detectors.multimodal import MediaModerator

            self._media = MediaModerator(
                self.policy,
                [d for d in self.detectors if d.input_type != "text"],
                limits=self.media_limits,
            )
        return self._media

    def close(self) -> None:
        """Stop the decoder processes (if any were started)."""
        if self._media is not None:
            self._media.close()
            self._media = None

    def __enter__(self) -> Moderator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def score_texts(self, texts: Sequence[str]) -> DetectorOutput:
        """The text detectors' fused scores for bare texts (text read from images, speech)."""
        return self._score_text_items([Item(text=t) for t in texts])

    def _score_text_items(self, items: Sequence[Item]) -> DetectorOutput:
        outputs = [det.score(items) for det in self.text_detectors]
        return DetectorOutput(
            fuse([o.scores for o in outputs], self.weights),
            [[e for o in outputs for e in o.evidence[i]] for i in range(len(items))],
            np.logical_or.reduce([o.truncated for o in outputs]),
        )

    def moderate(
        self,
        items: Iterable[Item | str],
        progress: Callable[[int], None] | None = None,
    ) -> list[Verdict]:
        """Score items in batches; bad items get a Verdict with `error` set, never an exception."""
        batch: list[Item] = []
        verdicts: list[Verdict] = []
        for value in items:
            batch.append(as_item(value))
            if len(batch) >= self.batch_size:
                verdicts.extend(self._moderate_batch(batch, progress))
                batch = []
        if batch:
            verdicts.extend(self._moderate_batch(batch, progress))
        return verdicts

    def moderate_one(self, item: Item | str) -> Verdict:
        return self._moderate_batch([as_item(item)], None)[0]

    def _moderate_batch(
        self, items: list[Item], progress: Callable[[int], None] | None
    ) -> list[Verdict]:
        n, n_cat = len(items), len(self.policy.category_ids)
        by_type: dict[str, np.ndarray] = {}
        evidence: list[list[DetectorEvidence]] = [[] for _ in items]
        cut = np.zeros(n, dtype=bool)
        errors: list[str | None] = [None] * n
        hashes: list[list[tuple[str, MediaHash]]] = [[] for _ in items]
        uncovered: list[dict[str, str]] = [{} for _ in items]
        with_text = [i for i, item in enumerate(items) if item.has_text]
        if with_text:
            out = self._score_text_items([items[i] for i in with_text])
            by_type["text"] = np.full((n, n_cat), np.nan)
            by_type["text"][with_text] = out.scores
            cut[with_text] = out.truncated
            for k, i in enumerate(with_text):
                evidence[i].extend(out.evidence[k])
        with_media = [i for i, item in enumerate(items) if item.has_media]
        if with_media:
            media = self.media.score([items[i] for i in with_media])
            for kind, scores in media.by_type.items():
                by_type[kind] = np.full((n, n_cat), np.nan)
                by_type[kind][with_media] = scores
            for k, i in enumerate(with_media):
                evidence[i].extend(media.evidence[k])
                hashes[i] = media.hashes[k]
                errors[i] = media.errors[k]
                uncovered[i] = media.uncovered[k]
        fused = fuse_max(list(by_type.values())) if by_type else np.full((n, n_cat), np.nan)
        rationales: list[str | None] = [None] * n
        if self.cascade is not None:
            usable = np.array(
                [errors[i] is None and not item.is_blank for i, item in enumerate(items)]
            )
            fused, rationales = self._judge(items, fused, usable, evidence)
        verdicts = []
        for i, item in enumerate(items):
            per_type = {kind: scores[i] for kind, scores in by_type.items()}
            verdicts.append(
                self._verdict(
                    item,
                    fused[i],
                    per_type,
                    evidence[i],
                    hashes[i],
                    bool(cut[i]),
                    errors[i],
                    uncovered[i],
                )
            )
            verdicts[-1].rationale = rationales[i]
        if progress is not None:
            progress(len(items))
        return verdicts

    def _judge(
        self,
        items: list[Item],
        fused: np.ndarray,
        usable: np.ndarray,
        evidence: list[list[DetectorEvidence]],
    ) -> tuple[np.ndarray, list[str | None]]:
        """The LLM stage: judge the uncertain cells, fuse, and collect the rationales.

        A failed judgement leaves the cheap score as it was and says so in the rationale; it is
        never read as "safe".
        """
        assert self.cascade is not None
        ids = self.policy.category_ids
        cells = self.cascade.route(fused, self.untrained) & usable[:, None]
        rows, cols = np.nonzero(cells)
        lines: list[list[str]] = [[] for _ in items]
        if len(rows) == 0:
            return fused, [None] * len(items)
        results = self.cascade.judge.judge_pairs(
            [(items[i], ids[c]) for i, c in zip(rows, cols, strict=True)]
        )
        judged = np.full(fused.shape, np.nan)
        for i, c, result in zip(rows, cols, results, strict=True):
            if result.judgement is None:
                lines[i].append(f"{ids[c]}: LLM judge failed ({result.error}); cheap score kept.")
                continue
            judged[i, c] = result.probability
            lines[i].append(f"{ids[c]}: {result.judgement.rationale}")
            evidence[i].append(
                DetectorEvidence(
                    detector="llm-judge",
                    category=ids[c],
                    score=round(result.probability, 6),
                    detail=result.judgement.rationale,
                    ref=",".join(result.judgement.rule_ids) or None,
                )
            )
        out = np.where(cells, self.cascade.fuse(fused, judged), fused)
        return out, ["\n".join(lines_i) or None for lines_i in lines]

    def _verdict(
        self,
        item: Item,
        scores: np.ndarray,
        per_type: dict[str, np.ndarray],
        evidence: list[DetectorEvidence],
        hashes: list[tuple[str, MediaHash]],
        cut: bool,
        error: str | None,
        uncovered: Mapping[str, str] | None = None,
    ) -> Verdict:
        base = {
            "id": item.id,
            "policy_version": self.policy.version,
            "model_version": self.model_version,
            "truncated": item.truncated or cut,
        }
        if item.is_blank:
            what = "empty text" if not item.text else "text has no visible characters"
            return Verdict(**base, error=f"{what}: nothing to moderate")
        if error is not None:
            return Verdict(**base, error=error)
        ids = self.policy.category_ids
        clean = np.where(np.isfinite(scores), scores, 0.0)
        flags = clean >= self.thresholds
        applied = {
            cid: [kind for kind, s in per_type.items() if np.isfinite(s[c]) and s[c] >= t]
            for c, (cid, t) in enumerate(zip(ids, self.thresholds, strict=True))
        }
        for cid, flagged in zip(ids, flags, strict=True):
            if flagged and not applied[cid]:  # the LLM stage flagged it: it read the whole item
                applied[cid] = [kind for kind in per_type if np.isfinite(per_type[kind]).any()]
        actions = {
            cid: band.action(float(s)) for cid, band, s in zip(ids, self.bands, clean, strict=True)
        }
        uncovered = {cid: why for cid, why in (uncovered or {}).items() if cid in actions}
        for cid in uncovered:  # not looked at is not safe: a person looks
            actions[cid] = max(actions[cid], Action.review, key=lambda a: a.rank)
        action = max(actions.values(), key=lambda a: a.rank, default=Action.allow)
        return Verdict(
            **base,
            flagged=bool(flags.any()),
            categories={cid: bool(f) for cid, f in zip(ids, flags, strict=True)},
            category_scores={cid: round(float(s), 6) for cid, s in zip(ids, clean, strict=True)},
            action=action,
            category_actions=actions,
            category_applied_input_types=applied,
            uncovered=uncovered,
            evidence=[Evidence(**e.__dict__) for e in evidence],
            hashes=[
                MediaHashRecord(
                    source=src,
                    kind=h.kind,
                    hash=h.hash,
                    quality=h.quality,
                    timestamp_s=h.timestamp_s,
                )
                for src, h in hashes
            ],
        )


def _each_name_once(wanted: Sequence[Detector | str]) -> list[Detector | str]:
    """`wanted` without a name given twice (a default named again runs once)."""
    seen: set[str] = set()
    out: list[Detector | str] = []
    for w in wanted:
        if isinstance(w, str) and w in seen:
            continue
        seen.update([w] if isinstance(w, str) else [])
        out.append(w)
    return out


@lru_cache(maxsize=4)
def default_moderator(policy: str = "openai") -> Moderator:
    """One memoised Moderator per built-in policy, for the one-call API."""
    return Moderator(policy)


def moderate(text: str | Item, policy: str = "openai") -> Verdict:
    """Moderate one text with a built-in policy: `bastion.moderate("some text").flagged`.

    Raises InputError for an item that cannot be scored (for example empty text); the batch API
    `Moderator.moderate` reports such items in `Verdict.error` instead.
    """
    verdict = default_moderator(policy).moderate_one(text)
    if verdict.error:
        raise InputError(verdict.error)
    return verdict
