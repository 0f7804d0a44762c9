"""Risk recall: find the likely violations in a large pool through several channels at once.

No single signal finds everything. A hash bank finds re-uploads of known images and nothing
new; a near-duplicate text bank finds copy-paste campaigns; an embedding bank finds paraphrases
of a few known examples of an emerging harm that no classifier was trained for; the classifier
finds what it was trained on; and a per-source aggregate finds the account whose posts are each
only borderline but all point the same way. Recall runs them all over the pool in batches and
keeps every item any channel found, recording which channels found it and how strongly, so the
ranker and the reviewer can see why an item is there.

Each channel gives every item a score (NaN where it has nothing to say: no media for the hash
channel, no bank of that kind) and a hit rule (`RecallSettings`). A bank feeds the channel named
by its kind, through the one method every kind has (`Bank.recall_scores`); where several banks
feed a channel, each item keeps its best score. An item hit by any channel is a `Candidate`.
`RecallResult.order(channel)` orders the whole pool by one channel's score, and `order()` by all
of them merged with reciprocal-rank fusion, which needs no calibration between channels whose
scores are on different scales (Cormack, Clarke and Büttcher, SIGIR 2009).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from bastion.banks.base import Bank, RecallBatch
from bastion.banks.scoring import source_aggregate
from bastion.batch.inputs import BatchInput
from bastion.errors import InputError
from bastion.items import Item
from bastion.media.hashing import MediaHash
from bastion.moderator import Moderator, Verdict
from bastion.triage.rank import CHANNELS, Candidate, category_severity
from bastion.triage.recall_settings import RecallSettings as RecallSettings

#: Reciprocal-rank fusion's constant: ranks deeper than about this many count little.
RRF_K = 60


@dataclass
class RecallResult:
    """Per pool item (in pool order): its id and one score column per channel (NaN: nothing to
    say); the candidates (items any channel hit, in pool order); the lines that could not be
    read, each with its reason."""

    ids: list[str]
    scores: np.ndarray  # (n_items, len(CHANNELS))
    hits: np.ndarray  # bool, same shape
    candidates: list[Candidate]
    errors: list[str] = field(default_factory=list)

    def hit_counts(self) -> dict[str, int]:
        return {c: int(self.hits[:, j].sum()) for j, c in enumerate(CHANNELS)}

    def order(self, channel: str | None = None) -> list[str]:
        """Pool item ids, most likely violating first: by one channel's score (items it has no
        score for last), or with `channel=None` by reciprocal-rank fusion of every channel."""
        if channel is not None:
            column = self.scores[:, CHANNELS.index(channel)]
            key = np.where(np.isfinite(column), -column, np.inf)
            return [self.ids[i] for i in np.argsort(key, kind="stable")]
        return [self.ids[i] for i in np.argsort(-rrf(self.scores), kind="stable")]


def rrf(scores: np.ndarray, k: int = RRF_K) -> np.ndarray:
    """Reciprocal-rank fusion: per item, the sum over channels of 1 / (k + its rank there).

    Why ranks and not scores: a cosine, a Hamming distance and a calibrated probability are
    not comparable, and calibrating them against each other would need the labels recall is
    trying to find. An item only some channels scored gets nothing from the others.
    """
    fused = np.zeros(len(scores))
    for j in range(scores.shape[1]):
        column = scores[:, j]
        finite = np.isfinite(column)
        if not finite.any():
            continue
        order = np.argsort(np.where(finite, -column, np.inf), kind="stable")
        ranks = np.empty(len(column))
        ranks[order] = np.arange(1, len(column) + 1)
        fused += np.where(finite, 1.0 / (k + ranks), 0.0)
    return fused


def recall(
    pool: BatchInput,
    moderator: Moderator,
    *,
    banks: Sequence[Bank] = (),
    settings: RecallSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RecallResult:
    """Run every channel over `pool` in batches, `banks` of any kinds; see the module's
    docstring."""
    settings = settings or RecallSettings()
    unknown = sorted({b.kind for b in banks} - set(CHANNELS))
    if unknown:
        raise InputError(f"no recall channel for banks of kind {', '.join(unknown)}")
    severity = category_severity(moderator.policy)
    total = pool.count()
    ids: list[str] = []
    rows: list[np.ndarray] = []
    keep: list[tuple[Item, Verdict, dict[str, float]]] = []
    errors: list[str] = []
    authors: list[str | None] = []
    source_basis: list[float] = []
    done = 0
    for chunk in pool.plan(max(1, total)):
        for batch in pool.read(chunk, settings.batch_size):
            items: list[Item] = []
            for row in batch:
                record = row.record
                if record.item is None:
                    errors.append(record.error or f"line {record.line}: unreadable")
                    continue
                item = record.item
                if item.id is None:
                    item.id = f"line-{record.line}"
                items.append(item)
            if items:
                scores, distances, verdicts = _score_batch(items, moderator, banks)
                for i, item in enumerate(items):
                    ids.append(str(item.id))
                    rows.append(scores[i])
                    keep.append((item, verdicts[i], distances[i]))
                    authors.append(_text_or_none(item.metadata.get(settings.author_key)))
                    embedding = scores[i][CHANNELS.index("embedding")]
                    classifier = scores[i][CHANNELS.index("classifier")]
                    source_basis.append(embedding if math.isfinite(embedding) else classifier)
            done += len(batch)
            if progress is not None:
                progress(done, total)
    duplicates = _first_duplicate(ids)
    if duplicates is not None:
        raise InputError(f"item id {duplicates!r} appears more than once in the pool")
    matrix = np.array(rows, dtype=float).reshape(len(ids), len(CHANNELS))
    nearest = np.array([d.get("embedding", np.inf) for _, _, d in keep], dtype=float)
    hits = _hits(matrix, nearest, settings)
    _source_channel(matrix, hits, np.array(source_basis, dtype=float), authors, settings)
    candidates = [
        _candidate(item, verdict, matrix[i], hits[i], distances, severity, settings)
        for i, (item, verdict, distances) in enumerate(keep)
        if hits[i].any()
    ]
    return RecallResult(ids, matrix, hits, candidates, errors)


def _score_batch(
    items: list[Item], moderator: Moderator, banks: Sequence[Bank]
) -> tuple[np.ndarray, list[dict[str, float]], list[Verdict]]:
    n = len(items)
    scores = np.full((n, len(CHANNELS)), np.nan)
    distances: list[dict[str, float]] = [{} for _ in items]
    verdicts = moderator.moderate(items)
    col = {c: j for j, c in enumerate(CHANNELS)}
    for i, v in enumerate(verdicts):
        if v.error is None and v.category_scores:
            scores[i, col["classifier"]] = max(v.category_scores.values())
    batch = RecallBatch(
        [item.scoring_text for item in items],
        lambda: [
            [MediaHash(h.kind, h.hash, h.quality, h.timestamp_s) for h in v.hashes]
            for v in verdicts
        ],
        lambda: [_md5s(item) for item in items],
    )
    for bank in banks:
        found = bank.recall_scores(batch)
        j = col[bank.kind]
        for i in range(n):  # per item, the best bank of the channel wins (the first of equals)
            s, before = float(found.scores[i]), scores[i, j]
            if math.isfinite(s) and (math.isnan(before) or s > before):
                scores[i, j] = s
                if math.isfinite(found.distances[i]):
                    distances[i][bank.kind] = float(found.distances[i])
    return scores, distances, verdicts


def _md5s(item: Item) -> list[str]:
    """MD5 of each media file of the item that can be read (exact-file matches in hash banks);
    one that cannot is left out here: the Moderator already reported it on the verdict."""
    out = []
    for source in item.media:
        data = source.data
        if data is None and source.path is not None:
            try:
                data = source.path.read_bytes()
            except OSError:
                continue
        if data is None:
            continue
        out.append(hashlib.md5(data, usedforsecurity=False).hexdigest())
    return out


def _hits(
    scores: np.ndarray, embedding_distance: np.ndarray, settings: RecallSettings
) -> np.ndarray:
    """Hash and text: any live match. Classifier: the threshold. Embedding: the nearest positive
    exemplar close enough *and* a positive contrastive score: an item nearer the bank's negative
    exemplars (the look-alikes it says are fine) than its positives is not recalled by it."""
    col = {c: j for j, c in enumerate(CHANNELS)}
    hits = np.zeros(scores.shape, dtype=bool)
    close = embedding_distance <= 1.0 - settings.embedding_min_similarity
    hits[:, col["embedding"]] = close & (np.nan_to_num(scores[:, col["embedding"]], nan=-1) > 0)
    hits[:, col["hash"]] = np.isfinite(scores[:, col["hash"]])
    hits[:, col["text"]] = np.isfinite(scores[:, col["text"]])
    hits[:, col["classifier"]] = np.nan_to_num(scores[:, col["classifier"]], nan=-1) >= (
        settings.classifier_threshold
    )
    return hits


def _source_channel(
    scores: np.ndarray,
    hits: np.ndarray,
    basis: np.ndarray,
    authors: Sequence[str | None],
    settings: RecallSettings,
) -> None:
    """Fill the source column: each item gets its author's aggregate; items of an author at or
    over the threshold scoring at least the floor are hits."""
    j = CHANNELS.index("source")
    known = [i for i, a in enumerate(authors) if a is not None and math.isfinite(basis[i])]
    if not known:
        return
    agg = source_aggregate(
        basis[known],
        [authors[i] for i in known],
        method="topk_mean",
        k=settings.source_k,
        min_items=settings.source_min_items,
    )
    by_author = {
        str(s): (float(v), int(c))
        for s, v, c in zip(agg.sources, agg.scores, agg.counts, strict=True)
    }
    for i in known:
        value, count = by_author[str(authors[i])]
        if count >= settings.source_min_items and math.isfinite(value):
            scores[i, j] = value
            if value >= settings.source_threshold and basis[i] >= settings.source_item_floor:
                hits[i, j] = True


def _candidate(
    item: Item,
    verdict: Verdict,
    scores: np.ndarray,
    hits: np.ndarray,
    distances: dict[str, float],
    severity: dict[str, int],
    settings: RecallSettings,
) -> Candidate:
    meta = dict(item.metadata)
    return Candidate(
        item_id=str(item.id),
        text=item.text or None,
        media=[str(m.path) for m in item.media if m.path is not None],
        channels={c: float(scores[j]) for j, c in enumerate(CHANNELS) if hits[j]},
        distances={c: d for c, d in distances.items() if hits[CHANNELS.index(c)]},
        scores=dict(verdict.category_scores),
        severity=severity,
        reach=_number(meta.get(settings.reach_key)),
        reports=_number(meta.get(settings.reports_key)),
        author=_text_or_none(meta.get(settings.author_key)),
        created_at=_time(meta.get(settings.created_key)),
        metadata=meta,
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _text_or_none(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _first_duplicate(ids: Iterable[str]) -> str | None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            return i
        seen.add(i)
    return None
