"""Embedding banks: positive and negative exemplars in encoder space, scored contrastively.

An embedding bank holds exemplar texts, embedded by one encoder, in two groups: positives (what
the bank is about: known scam scripts, grooming openers, a category's violating examples) and
negatives (`Entry.negative`: look-alikes known to be fine). It answers two questions, batch
first:

- `score(X)`: per item, the contrastive score (`scoring.contrastive_scores`: nearer the k
  nearest positives than the k nearest negatives?), with the nearest positives' entry ids and
  similarities and the nearest negative's, as evidence. `score_sources` adds up the scores of
  each source's recent items (`scoring.source_aggregate`), so one account posting a pattern of
  borderline items surfaces.
- `match(X, min_similarity)`: per item, the positive entries at least that similar (distance =
  1 - cosine), unless the item is at least as near to a negative exemplar as to its nearest
  positive: then the negative (an allow-list entry) wins and the item's list is empty
  (`scoring.suppressed`).

A bank without positives (new, or emptied by removals) answers with a defined neutral result,
not an error: `score` gives NaN scores (Bastion's "no opinion", which fusion skips) and no
neighbours, `match` gives no matches. A detector built on a bank must not fail the moderation
of every item because a reviewer removed the bank's last entry.

On disk (one version directory, see `files.py`): `entries.jsonl`; `positives.npy` and
`negatives.npy`, float32 unit rows, row i of each being the i-th positive (negative) entry of
entries.jsonl in file order; and per non-empty group its FAISS index, `positives.faiss` +
`positives.json` (`vector_index.py`: exact, HNSW or IVF-PQ, chosen by size). Positives and
negatives are kept apart so each index holds exactly the rows of one file: IVF-PQ re-ranks from
the memory-mapped file, and negatives (usually few) get their own small exact index. `add`
extends the previous version's indexes instead of rebuilding them where the index kind allows.

The bank's settings record the encoder (name and dimension). The encoder is loaded only when
texts must be embedded; opening a bank with a different encoder is an error, because vectors
of two encoders are not comparable even when their dimensions agree. The default encoder is the
shipped int8 ONNX export of all-MiniLM-L6-v2, as the Moderator uses.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from bastion.banks.base import (
    BankSettings,
    RecallBatch,
    RecallScores,
    VersionedBank,
    create_first_version,
    format_ids,
    read_entries,
)
from bastion.banks.entries import Entry, Match
from bastion.banks.files import (
    ENTRIES,
    BankError,
    BankVersion,
    current_version,
    locked,
    new_version,
    next_manifest,
    write_jsonl,
)
from bastion.banks.scoring import (
    AggregateMethod,
    SourceScores,
    contrastive_scores,
    source_aggregate,
    suppressed,
)
from bastion.banks.vector_index import (
    IndexChoice,
    IndexParams,
    VectorIndex,
    build_index,
    extend_index,
    load_index,
    rebuild_index,
    unit_rows,
)
from bastion.models.encoder import DEFAULT_ENCODER, Encoder, load_encoder, shipped_onnx_encoder

KIND: Literal["embedding"] = "embedding"
SIGNAL = "embedding"
POSITIVES = "positives"
NEGATIVES = "negatives"
_DEFAULT_DIM = 384
_ENCODER_ALIASES = {f"sentence-transformers/{DEFAULT_ENCODER}": DEFAULT_ENCODER}


class EmbeddingBankSettings(BankSettings):
    """An embedding bank's settings, as kept in its manifest.

    `k` 5: neighbours per side in the contrastive score, Sentinel's default. `min_similarity`
    0.8: the cosine above which `match` reports an entry; with all-MiniLM-L6-v2 that is a
    paraphrase or a light edit of the exemplar, while texts merely on the same topic sit around
    0.4-0.7. `baseline` 0: the similarity the score contrasts with when the bank has no
    negatives. The index fields are `vector_index.IndexParams`'s (kind, auto thresholds, HNSW
    M / efConstruction / efSearch, IVF nlist / nprobe / PQ size / re-ranking, retraining).
    """

    kind_name: ClassVar[str] = "embedding"

    encoder: str = DEFAULT_ENCODER
    dim: int = Field(_DEFAULT_DIM, ge=1)
    k: int = Field(5, ge=1)
    min_similarity: float = Field(0.8, ge=-1.0, le=1.0)
    baseline: float = Field(0.0, ge=-1.0, le=1.0)
    index: IndexChoice = "auto"
    exact_max: int = Field(IndexParams.exact_max, ge=0)
    hnsw_max: int = Field(IndexParams.hnsw_max, ge=0)
    hnsw_m: int = Field(IndexParams.hnsw_m, ge=2)
    ef_construction: int = Field(IndexParams.ef_construction, ge=1)
    ef_search: int = Field(IndexParams.ef_search, ge=1)
    nlist: int | None = Field(None, ge=1)
    nprobe: int = Field(IndexParams.nprobe, ge=1)
    pq_m: int | None = Field(None, ge=1)
    rerank: int = Field(IndexParams.rerank, ge=1)
    retrain_growth: float = Field(IndexParams.retrain_growth, gt=1.0)

    def index_params(self) -> IndexParams:
        return IndexParams(
            kind=self.index,
            exact_max=self.exact_max,
            hnsw_max=self.hnsw_max,
            hnsw_m=self.hnsw_m,
            ef_construction=self.ef_construction,
            ef_search=self.ef_search,
            nlist=self.nlist,
            nprobe=self.nprobe,
            pq_m=self.pq_m,
            rerank=self.rerank,
            retrain_growth=self.retrain_growth,
        )


@dataclass(frozen=True)
class BankScores:
    """What `EmbeddingBank.score` returns, one row per item.

    `scores`: the contrastive score (float64; NaN when the bank has no positives).
    `positive_ids` / `positive_similarities`: the k nearest positive entries, nearest first
    (similarities float32 (n, k), NaN where the bank has fewer than k positives).
    `positive_rows`: the same as positions in `bank.entries` (-1 for none), for labels.
    `negative_id` / `negative_similarity`: the nearest negative entry (None / NaN without one).
    """

    scores: np.ndarray
    positive_ids: list[list[str]]
    positive_similarities: np.ndarray
    positive_rows: np.ndarray
    negative_id: list[str | None]
    negative_similarity: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


class EmbeddingBank(VersionedBank):
    """One version of an embedding bank (see the module's docstring). `add` and `remove` commit
    a new version and return the bank opened at it; this object keeps answering from its own."""

    kind: ClassVar[str] = KIND
    signal: ClassVar[str] = SIGNAL
    threshold_key: ClassVar[str] = "min_similarity"  # a cosine

    def __init__(
        self,
        path: Path,
        version: BankVersion,
        entries: Sequence[Entry],
        positives: np.ndarray,
        negatives: np.ndarray,
        positive_index: VectorIndex | None,
        negative_index: VectorIndex | None,
        encoder: Encoder | None,
    ) -> None:
        self.path = path
        self._version = version
        self._entries = tuple(entries)
        self.settings = EmbeddingBankSettings.parse(version.manifest.settings, self.name)
        self._positives = positives
        self._negatives = negatives
        flags = np.array([e.negative for e in entries], dtype=bool)
        self._positive_rows = np.flatnonzero(~flags)
        self._negative_rows = np.flatnonzero(flags)
        self._positive_index = positive_index
        self._negative_index = negative_index
        self._encoder = encoder
        if len(positives) != len(self._positive_rows) or len(negatives) != len(self._negative_rows):
            raise BankError(
                f"bank {self.name!r}: {len(positives)} positive and {len(negatives)} negative "
                f"vectors for {len(self._positive_rows)} positive and "
                f"{len(self._negative_rows)} negative entries; restore or rebuild the bank"
            )

    # -- opening --------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: Path,
        name: str,
        settings: dict[str, Any],
        description: str = "",
        *,
        encoder: Encoder | None = None,
    ) -> EmbeddingBank:
        """Make a new, empty bank at `path` (version 1). `settings` are `EmbeddingBankSettings`
        fields; `dim` may be left out for the default encoder, or when `encoder` is given."""
        raw = dict(settings)
        name_given = str(raw.get("encoder", encoder.name if encoder else DEFAULT_ENCODER))
        raw["encoder"] = _ENCODER_ALIASES.get(name_given, name_given)
        if "dim" not in raw:
            if encoder is not None:
                raw["dim"] = encoder.dim
            elif raw["encoder"] != DEFAULT_ENCODER:
                raise BankError(
                    f"embedding bank {name!r}: give the dimension of encoder "
                    f"{raw['encoder']!r} as setting 'dim' (or create the bank with the encoder)"
                )
        parsed = EmbeddingBankSettings.parse(raw, name)
        if encoder is not None:
            _check_encoder(encoder, parsed, name)
        empty = np.zeros((0, parsed.dim), dtype=np.float32)
        create_first_version(
            path,
            name,
            KIND,
            parsed,
            description,
            lambda staging: _write_version(staging, [], empty, empty, None, None),
        )
        return cls.open(path, encoder)

    @classmethod
    def open(cls, path: Path, encoder: Encoder | None = None) -> EmbeddingBank:
        """The bank's current version, every file checked against its manifest. `encoder`, if
        given, must be the one the bank was made with; otherwise it is loaded when needed."""
        return cls._load(path, current_version(path), encoder)

    @classmethod
    def _load(cls, path: Path, version: BankVersion, encoder: Encoder | None) -> EmbeddingBank:
        manifest = version.manifest
        if manifest.kind != KIND:
            raise BankError(f"bank {manifest.name!r} is a {manifest.kind} bank, not an {KIND} one")
        settings = EmbeddingBankSettings.parse(manifest.settings, manifest.name)
        if encoder is not None:
            _check_encoder(encoder, settings, manifest.name)
        entries = read_entries(version)
        positives = _read_vectors(version, POSITIVES, settings.dim)
        negatives = _read_vectors(version, NEGATIVES, settings.dim)
        params = settings.index_params()
        return cls(
            path,
            version,
            entries,
            positives,
            negatives,
            _read_index(version, POSITIVES, positives, params),
            _read_index(version, NEGATIVES, negatives, params),
            encoder,
        )

    # -- what it is ------------------------------------------------------------------------

    @classmethod
    def check_service_settings(cls, settings: Mapping[str, Any]) -> None:
        """Embedding banks made over the API use the default encoder: an encoder setting names a
        model directory the service would load, which a request must not choose."""
        encoder = settings.get("encoder", DEFAULT_ENCODER)
        if encoder not in (DEFAULT_ENCODER, f"sentence-transformers/{DEFAULT_ENCODER}"):
            raise BankError(
                f"setting encoder: banks created over the API use the default encoder "
                f"({DEFAULT_ENCODER}); create a bank with another with `bastion bank create`"
            )
        if "dim" in settings:
            raise BankError("setting dim: it is the encoder's, and set from it")

    @property
    def dim(self) -> int:
        return self.settings.dim

    @property
    def index_kinds(self) -> dict[str, str | None]:
        """Which index each group uses now ("exact", "hnsw", "ivfpq"; None when empty)."""
        return {
            POSITIVES: self._positive_index.kind if self._positive_index else None,
            NEGATIVES: self._negative_index.kind if self._negative_index else None,
        }

    @property
    def encoder(self) -> Encoder:
        """The bank's encoder, loaded on first use (the shipped int8 ONNX export for the default
        encoder unless the runtime is "torch", else `load_encoder`: see `shipped_onnx_encoder`)."""
        if self._encoder is None:
            encoder = _load_encoder(self.settings.encoder)
            _check_encoder(encoder, self.settings, self.name)
            self._encoder = encoder
        return self._encoder

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Texts as the bank's unit vectors, float32 (len(texts), dim)."""
        if isinstance(texts, str):
            raise BankError("embed takes a sequence of texts, not one string")
        return unit_rows(self.encoder.encode(list(texts)), self.dim, "embeddings")

    def with_search(self, ef_search: int | None = None, nprobe: int | None = None) -> EmbeddingBank:
        """This version searched with other efSearch / nprobe (HNSW / IVF-PQ recall against
        speed); shares everything else, persists nothing."""
        clone = object.__new__(EmbeddingBank)
        clone.__dict__.update(self.__dict__)
        if self._positive_index is not None:
            clone._positive_index = self._positive_index.with_search(ef_search, nprobe)
        if self._negative_index is not None:
            clone._negative_index = self._negative_index.with_search(ef_search, nprobe)
        return clone

    # -- changes ---------------------------------------------------------------------------

    def validate_entry(self, entry: Entry) -> Entry:
        """`entry` if this bank can hold it (signal "embedding", a text to embed), else a
        BankError; what batch tools (`exchange`) check before `add` embeds the good ones."""
        if entry.signal != SIGNAL:
            raise BankError(f"a {KIND} bank holds {SIGNAL!r} entries, not {entry.signal!r}")
        if not entry.value.strip():
            raise BankError("has no text")
        return entry

    def add(self, entries: Iterable[Entry], vectors: np.ndarray | None = None) -> EmbeddingBank:
        """Commit a version with `entries` added; returns the bank opened at it.

        Each entry's `value` is its exemplar text, embedded with the bank's encoder unless
        `vectors` (one row per entry, the same encoder's) are given. `negative=True` entries
        are negative exemplars. Ids must be new to the bank. The texts are embedded before the
        bank's lock is taken; the change itself is built on whatever version is current by then.
        """
        new = list(entries)
        _check_new_entries(new, self.name)
        if not new:
            return self
        if vectors is None:
            empty = [e.id for e in new if not e.value.strip()]
            if empty:
                raise BankError(f"entries {format_ids(empty)} have no text to embed")
            embedded = self.embed([e.value for e in new])
        else:
            embedded = unit_rows(vectors, self.dim, "exemplar vectors")
            if len(embedded) != len(new):
                raise BankError(f"{len(new)} entries but {len(embedded)} vectors")
        flags = np.array([e.negative for e in new], dtype=bool)
        with locked(self.path):
            base = self._latest()
            base._check_new_ids(new)
            params = base.settings.index_params()
            positives = np.concatenate([base._positives, embedded[~flags]])
            negatives = np.concatenate([base._negatives, embedded[flags]])
            positive_index = _grow(base._positive_index, embedded[~flags], positives, params)
            negative_index = _grow(base._negative_index, embedded[flags], negatives, params)
            all_entries = [*base._entries, *new]
            with new_version(self.path, next_manifest(base.manifest, len(all_entries))) as (
                staging,
                _,
            ):
                _write_version(
                    staging, all_entries, positives, negatives, positive_index, negative_index
                )
        return EmbeddingBank.open(self.path, self._encoder)

    def remove(self, ids: Iterable[str]) -> EmbeddingBank:
        """Commit a version without the entries of `ids`; returns the bank opened at it.

        An id the bank does not have is an error (nothing is removed). The indexes are rebuilt
        over the remaining vectors (HNSW has no removal; a trained IVF-PQ is reused)."""
        gone = set(ids)
        if not gone:
            return self
        with locked(self.path):
            base = self._latest()
            base._check_known_ids(gone)
            keep = np.array([e.id not in gone for e in base._entries], dtype=bool)
            params = base.settings.index_params()
            positives = np.asarray(base._positives[keep[base._positive_rows]])
            negatives = np.asarray(base._negatives[keep[base._negative_rows]])
            positive_index = _rebuild(base._positive_index, positives, params)
            negative_index = _rebuild(base._negative_index, negatives, params)
            kept = [e for e, k in zip(base._entries, keep, strict=True) if k]
            with new_version(self.path, next_manifest(base.manifest, len(kept))) as (staging, _):
                _write_version(staging, kept, positives, negatives, positive_index, negative_index)
        return EmbeddingBank.open(self.path, self._encoder)

    def _reload(self, version: BankVersion) -> EmbeddingBank:
        return EmbeddingBank._load(self.path, version, self._encoder)

    # -- queries ---------------------------------------------------------------------------

    def score(self, X: np.ndarray, k: int | None = None) -> BankScores:
        """Contrastive scores and evidence for items given as vectors of the bank's encoder
        (float (n, dim); rows are normalised, NaN rows and wrong dimensions are refused)."""
        k = self.settings.k if k is None else k
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise BankError(f"k must be a positive integer, got {k!r}")
        queries = unit_rows(X, self.dim, "item vectors")
        n = len(queries)
        if self._positive_index is None:
            return BankScores(
                scores=np.full(n, np.nan),
                positive_ids=[[] for _ in range(n)],
                positive_similarities=np.full((n, k), np.nan, dtype=np.float32),
                positive_rows=np.full((n, k), -1, dtype=np.int64),
                negative_id=[None] * n,
                negative_similarity=np.full(n, np.nan, dtype=np.float32),
            )
        pos_sims, pos_ids = self._positive_index.search(queries, k)
        if self._negative_index is not None:
            neg_sims, neg_ids = self._negative_index.search(queries, k)
        else:
            neg_sims = np.zeros((n, 0), dtype=np.float32)
            neg_ids = np.zeros((n, 0), dtype=np.int64)
        scores = contrastive_scores(pos_sims, neg_sims, k, baseline=self.settings.baseline)
        rows = np.where(pos_ids >= 0, self._positive_rows[np.maximum(pos_ids, 0)], -1)
        ids = [[self._entries[r].id for r in row if r >= 0] for row in rows.tolist()]
        if neg_ids.shape[1]:
            nearest = neg_ids[:, 0]
            negative_id = [
                self._entries[self._negative_rows[i]].id if i >= 0 else None
                for i in nearest.tolist()
            ]
            negative_similarity = np.where(nearest >= 0, neg_sims[:, 0], np.nan)
        else:
            negative_id = [None] * n
            negative_similarity = np.full(n, np.nan)
        return BankScores(
            scores=scores,
            positive_ids=ids,
            positive_similarities=np.where(pos_ids >= 0, pos_sims, np.nan).astype(np.float32),
            positive_rows=rows.astype(np.int64),
            negative_id=negative_id,
            negative_similarity=negative_similarity.astype(np.float32),
        )

    def match(
        self, X: np.ndarray, min_similarity: float | None = None, limit: int = 10
    ) -> list[list[Match]]:
        """Per item, the positive entries (at most `limit`, nearest first) with cosine similarity
        at least `min_similarity` (default: the bank's setting), as `Match`es with distance
        1 - cosine. An item at least as near to a negative exemplar as to its nearest positive
        gets no matches: the allow-list entry wins (see `scoring.suppressed`)."""
        threshold = self.settings.min_similarity if min_similarity is None else min_similarity
        if not -1.0 <= float(threshold) <= 1.0:
            raise BankError(f"min_similarity must be a cosine in [-1, 1], got {threshold}")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise BankError(f"limit must be a positive integer, got {limit!r}")
        queries = unit_rows(X, self.dim, "item vectors")
        n = len(queries)
        if self._positive_index is None:
            return [[] for _ in range(n)]
        pos_sims, pos_ids = self._positive_index.search(queries, limit)
        if self._negative_index is not None:
            neg_sims, _ = self._negative_index.search(queries, 1)
            nearest_negative = np.where(np.isfinite(neg_sims[:, 0]), neg_sims[:, 0], np.nan)
        else:
            nearest_negative = np.full(n, np.nan)
        blocked = suppressed(pos_sims[:, 0], nearest_negative)
        out: list[list[Match]] = []
        for i in range(n):
            found: list[Match] = []
            if not blocked[i]:
                for sim, local in zip(pos_sims[i].tolist(), pos_ids[i].tolist(), strict=True):
                    if local < 0 or sim < threshold:
                        break  # results are nearest first
                    entry = self._entries[int(self._positive_rows[local])]
                    found.append(
                        Match(
                            bank=self.name,
                            bank_version=self.version,
                            entry_id=entry.id,
                            signal=SIGNAL,
                            distance=max(0.0, 1.0 - float(sim)),
                            label=entry.label,
                        )
                    )
            out.append(found)
        return out

    def score_texts(self, texts: Sequence[str], k: int | None = None) -> BankScores:
        """`score` for texts, embedded with the bank's encoder."""
        return self.score(self.embed(texts), k)

    def match_texts(
        self, texts: Sequence[str], min_similarity: float | None = None
    ) -> list[list[Match]]:
        """`match` for texts, embedded with the bank's encoder."""
        return self.match(self.embed(texts), min_similarity)

    def match_values(
        self, values: Sequence[str], *, include_negative: bool = False
    ) -> list[list[Match]]:
        """`match_texts` at the bank's `min_similarity`. An allow-list entry always suppresses
        here (the nearer negative exemplar wins, see `match`), so `include_negative` changes
        nothing."""
        return self.match_texts(values)

    def recall_scores(self, batch: RecallBatch) -> RecallScores:
        """Per item with text, its contrastive score (`score`) and 1 - the cosine of its
        nearest positive exemplar; the texts are embedded once per encoder per batch."""
        scores = np.full(len(batch), np.nan)
        distances = np.full(len(batch), np.nan)
        where = np.flatnonzero(batch.has_text)
        if not len(where):
            return RecallScores(scores, distances)
        result = self.score(batch.vectors(_encoder_key(self.settings.encoder), self.embed))
        sims = result.positive_similarities
        nearest = np.max(np.where(np.isfinite(sims), sims, -np.inf), axis=1).astype(np.float64)
        scores[where] = result.scores
        close = np.isfinite(nearest)
        distances[where[close]] = np.maximum(0.0, 1.0 - nearest[close])
        return RecallScores(scores, distances)

    def score_sources(
        self,
        X: np.ndarray,
        sources: Sequence[object] | np.ndarray,
        method: AggregateMethod = "topk_mean",
        k: int = 5,
    ) -> SourceScores:
        """Per source, the aggregate of its items' contrastive scores (one source per row of
        `X`, e.g. the author of each recent post); see `scoring.source_aggregate`."""
        return source_aggregate(self.score(X).scores, sources, method=method, k=k)


# -- helpers -------------------------------------------------------------------------------


def _encoder_key(name: str) -> str:
    """What identifies an encoder across spellings: the default's hub alias is the default,
    and a model directory is known by its last part (as `TextEncoder.name` reports it)."""
    return Path(_ENCODER_ALIASES.get(name, name)).name


def _check_encoder(encoder: Encoder, settings: EmbeddingBankSettings, bank: str) -> None:
    same = _encoder_key(encoder.name) == _encoder_key(settings.encoder)
    if not same or int(encoder.dim) != settings.dim:
        raise BankError(
            f"embedding bank {bank!r} was embedded with encoder {settings.encoder!r} "
            f"({settings.dim} dimensions), not {encoder.name!r} ({encoder.dim}): vectors of "
            "different encoders cannot be compared. Open it with its own encoder, or make a "
            "new bank and add the exemplars again"
        )


def _load_encoder(name: str) -> Encoder:
    """The encoder a bank names, on the runtime `shipped_onnx_encoder` picks for it."""
    return _open_encoder(name, shipped_onnx_encoder(name))


@lru_cache(maxsize=2)
def _open_encoder(name: str, onnx_dir: Path | None) -> Encoder:
    """The encoder, memoised per process and runtime (loading takes seconds)."""
    if onnx_dir is not None:
        from bastion.models.onnx_runtime import OnnxTextEncoder

        return OnnxTextEncoder(onnx_dir)
    return load_encoder(name)


def _check_new_entries(entries: list[Entry], bank: str) -> None:
    for e in entries:
        if not isinstance(e, Entry):
            raise BankError(f"bank {bank!r}: add takes Entry objects, got {type(e).__name__}")
        if e.signal != SIGNAL:
            raise BankError(
                f"entry {e.id!r} has signal {e.signal!r}; an embedding bank holds "
                f"{SIGNAL!r} entries (the value is the exemplar text)"
            )
        if not e.id:
            raise BankError("an entry needs a non-empty id")
    twice = sorted(i for i, n in Counter(e.id for e in entries).items() if n > 1)
    if twice:
        raise BankError(f"entries {format_ids(twice)} are given more than once")


def _grow(
    index: VectorIndex | None, new: np.ndarray, all_vectors: np.ndarray, params: IndexParams
) -> VectorIndex | None:
    if index is None:
        return build_index(all_vectors, params) if len(all_vectors) else None
    return extend_index(index, new, params) if len(new) else index


def _rebuild(
    index: VectorIndex | None, vectors: np.ndarray, params: IndexParams
) -> VectorIndex | None:
    return rebuild_index(index, vectors, params) if len(vectors) else None


def _write_version(
    staging: Path,
    entries: list[Entry],
    positives: np.ndarray,
    negatives: np.ndarray,
    positive_index: VectorIndex | None,
    negative_index: VectorIndex | None,
) -> None:
    write_jsonl(staging / ENTRIES, [e.to_json() for e in entries])
    for name, vectors, index in (
        (POSITIVES, positives, positive_index),
        (NEGATIVES, negatives, negative_index),
    ):
        np.save(staging / f"{name}.npy", np.ascontiguousarray(vectors, dtype=np.float32))
        if index is not None:
            index.save(staging, name)


def _read_vectors(version: BankVersion, name: str, dim: int) -> np.ndarray:
    path = version.file(f"{name}.npy")
    try:
        vectors: np.ndarray = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BankError(f"{path}: not a readable vector file ({exc})") from None
    if vectors.dtype != np.float32 or vectors.ndim != 2 or vectors.shape[1] != dim:
        raise BankError(
            f"{path} holds {vectors.dtype} {vectors.shape}, not float32 (n, {dim}) vectors"
        )
    return vectors


def _read_index(
    version: BankVersion, name: str, vectors: np.ndarray, params: IndexParams
) -> VectorIndex | None:
    if f"{name}.faiss" not in version.manifest.files:
        if len(vectors):
            raise BankError(f"bank {version.manifest.name!r}: {name}.faiss is missing")
        return None
    version.file(f"{name}.json")
    return load_index(version.path, name, vectors, params)
