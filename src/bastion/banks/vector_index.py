"""Nearest-neighbour indexes for embedding banks: exact, HNSW and IVF-PQ behind one small interface.

Every index holds L2-normalised float32 vectors and answers by inner product, which for unit
vectors is the cosine similarity. Ids are row positions: the i-th vector added has id i, so a
bank maps an id straight to its i-th entry. The interface is as small as threatexchange's
signal indexes: `build`, `add`, `search`, `save`, `load` (and `copy`, because a bank version
never changes once written: an `add` copies the index and extends the copy).

Three kinds, and why each:

- `exact` (FAISS `IndexFlatIP`): a brute-force scan (BLAS), recall 1 by definition. Measured
  while developing on the 2-core machine: 844 queries/s over 200,000 x 384 vectors when idle,
  about 2,000 over 20,000 and 850 over 50,000 when other jobs shared the cores. So up to
  50,000 vectors exact search keeps near the 1,000 queries/s target with perfect recall, and
  curated banks (hundreds to a few thousand exemplars) never need anything else.
- `hnsw` (FAISS `IndexHNSWFlat`, inner product): a navigable small-world graph over the full
  vectors. A query visits a few thousand vectors instead of all of them, so it stays fast into the
  millions; it supports adding vectors one batch at a time but not removing them (removal
  rebuilds the graph). See `IndexParams` for M, efConstruction and efSearch.
- `ivfpq` (FAISS `IndexIVFPQ` plus an exact re-ranking of a shortlist): vectors are assigned to
  one of `nlist` k-means cells and stored as 8-bit product-quantisation codes (dim/8 bytes, 48
  for 384 dims, 32 times smaller than the floats). A query scans the `nprobe` nearest cells with
  the coarse codes, keeps `rerank * k` candidates and re-scores them exactly against the float
  vectors, which it reads from the bank's `.npy` file (memory-mapped, so the floats need not sit
  in the process's memory). PQ distances alone lose recall; the shortlist re-ranking wins it back,
  which `IndexRefineFlat` also does, but that keeps a second in-memory copy of every float vector
  inside the index file. IVF-PQ is for banks too big to hold as an HNSW graph over floats.

`auto` (the default) picks by the number of vectors: exact up to `exact_max` (50,000), HNSW up
to `hnsw_max` (5,000,000: 7.7 GB of floats plus 1.3 GB of graph, about what one serving machine
should hold in memory), IVF-PQ above. Both thresholds are parameters, so a test (or a user) can
force them. A bank that grows past a threshold gets the new kind of index, built once, on the
add that crosses it.

IVF-PQ must be trained (k-means for the cells and the PQ codebooks) before vectors can be added.
It trains on first build and records how many vectors it was trained on; adding encodes new
vectors with the same codebooks, until the index holds more than `retrain_growth` (2) times its
training size, when it is rebuilt and retrained: the cells were sized for the old count
(nlist ~ 4 sqrt(n)), so a query would scan ever longer lists, and newer exemplars may lie where
the old codebooks fit badly. Retraining at each doubling keeps the amortised cost per added
vector constant. Below 624 vectors (39 training points for each of 16 PQ centroids) IVF-PQ
cannot be trained and an exact index stands in for it.

Search-time settings (efSearch, nprobe, the re-ranking factor) are passed to FAISS per call as
search parameters, never written into the shared index object, so concurrent readers of one
index cannot disturb each other.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple, Self, cast, get_args

import faiss
import numpy as np

from bastion.banks.files import BankError

IndexKind = Literal["exact", "hnsw", "ivfpq"]
IndexChoice = Literal["auto", "exact", "hnsw", "ivfpq"]
INDEX_KINDS: tuple[str, ...] = get_args(IndexChoice)

#: FAISS k-means wants at least 39 training points per centroid; with 16 PQ centroids
#: (4-bit codes, the fewest we use) that is the smallest set IVF-PQ can be trained on.
IVFPQ_MIN_VECTORS = 39 * 16
_MISSING = -1
_NORM_TOLERANCE = 1e-3
_RERANK_BLOCK = 256  # queries re-ranked at a time: bounds the (block, shortlist, dim) gather


class Neighbours(NamedTuple):
    """Search results, one row per query, best first: cosine similarities (float32, -inf where
    fewer than k vectors exist) and ids (int64 row positions, -1 there)."""

    similarities: np.ndarray
    ids: np.ndarray


@dataclass(frozen=True)
class IndexParams:
    """How to index and search. Build-time fields are recorded in the index file when it is
    built; search-time fields (`ef_search`, `nprobe`, `rerank`) apply to every search and can
    change without a rebuild.

    Defaults and why. They are sized for the 1,000,000 x 384 target (>= 1,000 queries/s on 2
    cores, recall@10 >= 0.95 against exact search), from measurements on the 2-core
    development machine with 2,000 queries a batch, over 25,451 real all-MiniLM-L6-v2
    embeddings (tweets and ToxiGen statements) and over synthetic embedding-like vectors made
    to match them at that size (same recall-against-efSearch curve) but whose recall falls
    about four times faster than the real ones' as the bank grows, so a pessimistic stand-in:
    - `hnsw_m` 32: 64 links per vector in the bottom layer, the usual choice for 100-1000
      dimensions (256 bytes of graph per vector). M=48 was no better per query at equal recall.
    - `ef_construction` 200: a better graph than with 80 or 120 for 30-60 % more build time
      (200,000 vectors: 128 s on 2 cores, so about 12 minutes for 1 M), and the graph's quality
      is what lets a query stop early: at efSearch 160 on the synthetic 200,000, recall@10 was
      0.964 with it against 0.946 with 120.
    - `ef_search` 192: the candidate list of a query. On the synthetic 200,000: recall@10 0.972
      at 1,665 queries/s (2 threads; 756 on 1); 128 gave 0.947 at 2,306/s, 256 gave 0.981 at
      1,164/s. On the real 25,000 (efConstruction 80) 64 already gave 0.950 and 128 0.976;
      with these defaults 0.996 at 2,967 queries/s.
      The synthetic set loses about 0.01-0.03 per doubling of the bank, the real one about
      0.01 at efSearch 64, so 192 leaves a margin on both recall and speed at 1 M. It is a bank
      setting: raise it if a bank's measured recall falls short, lower it for speed.
    - `nlist` None: 4 sqrt(n) cells at training time (4,000 at 1 M), capped so each cell has
      39 training points.
    - `nprobe` 128, `rerank` 20: on the real 25,000 (625 cells) recall@10 was 0.93 at nprobe 64
      and 0.97 at 128 (1,600 queries/s at 64) with IVF-PQ + re-ranking, the same as an
      uncompressed IVF index at those nprobe: the coarse cells, not the PQ codes, limit recall
      once the 20 k best PQ candidates are re-ranked (10 k gave 0.918 at nprobe 64). Sentence
      embeddings spread over many cells, so nprobe is the setting to raise if recall falls
      short and to lower for speed; IVF-PQ's speed and recall above 5 M vectors, where `auto`
      picks it, were not measured.
    - `pq_m` None: dim/8 sub-quantisers of 8 bits, one byte per 8 dimensions.
    """

    kind: IndexChoice = "auto"
    exact_max: int = 50_000
    hnsw_max: int = 5_000_000
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 192
    nlist: int | None = None
    nprobe: int = 128
    pq_m: int | None = None
    rerank: int = 20
    retrain_growth: float = 2.0
    seed: int = 1234

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise BankError(f"index kind {self.kind!r} is not one of {', '.join(INDEX_KINDS)}")
        for name in ("hnsw_m", "ef_construction", "ef_search", "nprobe", "rerank"):
            if int(getattr(self, name)) < 1:
                raise BankError(f"index setting {name} must be at least 1")
        if self.exact_max < 0 or self.hnsw_max < self.exact_max:
            raise BankError("index settings need 0 <= exact_max <= hnsw_max")
        if self.nlist is not None and self.nlist < 1:
            raise BankError("index setting nlist must be at least 1 (or unset)")
        if self.pq_m is not None and self.pq_m < 1:
            raise BankError("index setting pq_m must be at least 1 (or unset)")
        if not self.retrain_growth > 1.0:
            raise BankError("index setting retrain_growth must be above 1")

    def with_search(self, ef_search: int | None = None, nprobe: int | None = None) -> IndexParams:
        """These parameters with other search-time settings (build-time ones unchanged)."""
        return replace(
            self,
            ef_search=self.ef_search if ef_search is None else ef_search,
            nprobe=self.nprobe if nprobe is None else nprobe,
        )


def choose_kind(n: int, params: IndexParams) -> IndexKind:
    """The kind of index for `n` vectors: the forced kind, or by size under `auto`.

    An IVF-PQ index cannot be trained on fewer than `IVFPQ_MIN_VECTORS` vectors; an exact index
    answers instead (at that size it is also the fastest).
    """
    if params.kind == "auto":
        if n <= params.exact_max:
            return "exact"
        return "hnsw" if n <= params.hnsw_max else "ivfpq"
    if params.kind == "ivfpq" and n < IVFPQ_MIN_VECTORS:
        return "exact"
    return params.kind


def unit_rows(x: np.ndarray, dim: int, what: str = "vectors") -> np.ndarray:
    """`x` as a C-contiguous float32 (n, dim) array of unit-length rows, or a BankError.

    Rows that are not unit length are normalised (cosine similarity is the contract); a row
    with NaN or infinity, or of length zero, has no direction and is refused by position.
    """
    arr = np.asarray(x)
    if arr.ndim == 1 and arr.shape[0] == dim:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise BankError(f"{what} must be a 2-D array (n, {dim}), got shape {arr.shape}")
    if arr.shape[1] != dim:
        raise BankError(
            f"{what} have {arr.shape[1]} dimensions; this bank's encoder makes {dim}: "
            "embed with the bank's encoder"
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise BankError(f"{what} must be floating point, got {arr.dtype}")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if out.shape[0] == 0:
        return out
    finite = np.isfinite(out).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise BankError(f"{what} hold NaN or infinity in row(s) {_rows(bad)}")
    norms = np.linalg.norm(out, axis=1)
    if (norms == 0).any():
        raise BankError(f"{what} hold all-zero row(s) {_rows(np.flatnonzero(norms == 0))}")
    if np.abs(norms - 1.0).max() > _NORM_TOLERANCE:
        out = out / norms[:, None]
    return out


def _rows(bad: np.ndarray) -> str:
    shown = ", ".join(str(int(i)) for i in bad[:5])
    return shown + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")


class VectorIndex(ABC):
    """Unit vectors with row-position ids, searched by cosine similarity."""

    kind: ClassVar[IndexKind]

    def __init__(self, dim: int, params: IndexParams) -> None:
        self.dim = dim
        self.params = params

    def __len__(self) -> int:
        return int(self._faiss_index().ntotal)

    @classmethod
    def build(cls, vectors: np.ndarray, params: IndexParams) -> Self:
        """A new index over `vectors` (unit rows, checked by `unit_rows`)."""
        vectors = np.asarray(vectors)
        index = cls(vectors.shape[1] if vectors.ndim == 2 else 0, params)
        index.add(vectors)
        return index

    def add(self, vectors: np.ndarray) -> None:
        """Append `vectors` in place; their ids continue from `len(self)`."""
        x = unit_rows(vectors, self.dim)
        if len(x):
            self._faiss_index().add(x)

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> Neighbours:
        """The k most similar vectors to each query (unit rows)."""

    @abstractmethod
    def vectors(self) -> np.ndarray:
        """The float vectors indexed, in id order (for a rebuild)."""

    @abstractmethod
    def copy(self) -> VectorIndex:
        """An independent copy, so a new bank version can extend it and the old one stays."""

    @abstractmethod
    def _faiss_index(self) -> faiss.Index: ...

    def _meta(self) -> dict[str, Any]:
        return {"kind": self.kind, "dim": self.dim, "count": len(self)}

    def save(self, directory: Path, name: str) -> list[Path]:
        """Write `NAME.faiss` (FAISS's own format) and `NAME.json` (what was built, how)."""
        index_file = directory / f"{name}.faiss"
        meta_file = directory / f"{name}.json"
        faiss.write_index(self._faiss_index(), str(index_file))
        meta_file.write_text(json.dumps(self._meta(), indent=2, sort_keys=True), "utf-8")
        return [index_file, meta_file]

    def with_search(self, ef_search: int | None = None, nprobe: int | None = None) -> VectorIndex:
        """This index searched with other search-time settings; shares the FAISS index."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.params = self.params.with_search(ef_search, nprobe)
        return clone

    def _check_queries(self, queries: np.ndarray, k: int) -> np.ndarray:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise BankError(f"k must be a positive integer, got {k!r}")
        return unit_rows(queries, self.dim, "queries")


def _clean(sims: np.ndarray, ids: np.ndarray) -> Neighbours:
    """FAISS pads missing results with id -1 and a huge negative score; make those -inf."""
    sims = np.where(ids == _MISSING, -np.inf, sims).astype(np.float32, copy=False)
    return Neighbours(sims, ids.astype(np.int64, copy=False))


def _empty(n: int, k: int) -> Neighbours:
    return Neighbours(
        np.full((n, k), -np.inf, dtype=np.float32), np.full((n, k), _MISSING, dtype=np.int64)
    )


class ExactIndex(VectorIndex):
    """Brute-force inner product (`IndexFlatIP`): recall 1, cost linear in the bank's size."""

    kind: ClassVar[IndexKind] = "exact"

    def __init__(self, dim: int, params: IndexParams, index: faiss.IndexFlatIP | None = None):
        super().__init__(dim, params)
        self._index = index if index is not None else faiss.IndexFlatIP(dim)

    def search(self, queries: np.ndarray, k: int) -> Neighbours:
        q = self._check_queries(queries, k)
        if len(self) == 0 or len(q) == 0:
            return _empty(len(q), k)
        sims, ids = self._index.search(q, k)
        return _clean(sims, ids)

    def vectors(self) -> np.ndarray:
        return _flat_vectors(self._index, len(self), self.dim)

    def copy(self) -> ExactIndex:
        return ExactIndex(self.dim, self.params, cast(faiss.IndexFlatIP, _clone(self._index)))

    def _faiss_index(self) -> faiss.Index:
        return self._index


class HnswIndex(VectorIndex):
    """A navigable small-world graph over the full vectors (`IndexHNSWFlat`, inner product).

    Adds extend the graph in place; there is no removal (the bank rebuilds after a removal).
    """

    kind: ClassVar[IndexKind] = "hnsw"

    def __init__(self, dim: int, params: IndexParams, index: faiss.IndexHNSWFlat | None = None):
        super().__init__(dim, params)
        if index is None:
            index = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = params.ef_construction
        self._index = index

    def search(self, queries: np.ndarray, k: int) -> Neighbours:
        q = self._check_queries(queries, k)
        if len(self) == 0 or len(q) == 0:
            return _empty(len(q), k)
        # efSearch below k would return fewer than k results; FAISS needs efSearch >= k.
        search_params = cast(Any, faiss).SearchParametersHNSW(
            efSearch=max(self.params.ef_search, k)
        )
        sims, ids = self._index.search(q, k, params=search_params)
        return _clean(sims, ids)

    def vectors(self) -> np.ndarray:
        return _flat_vectors(self._index.storage, len(self), self.dim)

    def copy(self) -> HnswIndex:
        return HnswIndex(self.dim, self.params, cast(faiss.IndexHNSWFlat, _clone(self._index)))

    def _faiss_index(self) -> faiss.Index:
        return self._index

    def _meta(self) -> dict[str, Any]:
        return {
            **super()._meta(),
            "hnsw_m": self.params.hnsw_m,
            "ef_construction": int(self._index.hnsw.efConstruction),
        }


class IvfPqIndex(VectorIndex):
    """Inverted lists of product-quantised codes, with the shortlist re-ranked exactly.

    The coarse search runs in L2 on unit vectors, which orders exactly as inner product does
    (|q - x|^2 = 2 - 2 q.x) and lets FAISS precompute the residual tables. The `rerank * k` best
    candidates are then re-scored with the float vectors (`vectors`, which may be a read-only
    memory map of the bank's .npy file) and the k best kept, so the similarities returned are
    exact cosines even though the shortlist came from codes.
    """

    kind: ClassVar[IndexKind] = "ivfpq"

    def __init__(
        self,
        dim: int,
        params: IndexParams,
        index: faiss.IndexIVFPQ,
        vectors: np.ndarray,
        trained_on: int,
    ) -> None:
        super().__init__(dim, params)
        self._index = index
        self._vectors = vectors
        self.trained_on = trained_on

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @classmethod
    def build(cls, vectors: np.ndarray, params: IndexParams) -> IvfPqIndex:
        vectors = np.asarray(vectors)
        dim = vectors.shape[1] if vectors.ndim == 2 else 0
        x = unit_rows(vectors, dim)
        n = len(x)
        if n < IVFPQ_MIN_VECTORS:
            raise BankError(
                f"an IVF-PQ index needs at least {IVFPQ_MIN_VECTORS} vectors to train, got {n}; "
                "use an exact index"
            )
        nlist, pq_m, nbits = ivfpq_shape(n, dim, params)
        quantizer = faiss.IndexFlatL2(dim)
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, pq_m, nbits, faiss.METRIC_L2)
        cast(Any, index).cp.seed = params.seed  # the FAISS wrapper keeps `quantizer` alive
        cast(Any, index).pq.cp.seed = params.seed
        rng = np.random.default_rng(params.seed)
        sample = x if n <= 64 * nlist else x[np.sort(rng.choice(n, 64 * nlist, replace=False))]
        index.train(sample)
        index.add(x)
        return cls(dim, params, index, x, trained_on=n)

    def add(self, vectors: np.ndarray) -> None:
        x = unit_rows(vectors, self.dim)
        if len(x):
            self._index.add(x)
            self._vectors = np.concatenate([np.asarray(self._vectors), x])

    def search(self, queries: np.ndarray, k: int) -> Neighbours:
        q = self._check_queries(queries, k)
        if len(self) == 0 or len(q) == 0:
            return _empty(len(q), k)
        shortlist = min(len(self), self.params.rerank * k)
        search_params = cast(Any, faiss).SearchParametersIVF(
            nprobe=min(self.params.nprobe, int(self._index.nlist))
        )
        _, candidates = self._index.search(q, shortlist, params=search_params)
        out = _empty(len(q), k)
        for start in range(0, len(q), _RERANK_BLOCK):
            block = slice(start, start + _RERANK_BLOCK)
            cand = candidates[block]
            rows = np.asarray(self._vectors[np.maximum(cand, 0)], dtype=np.float32)
            sims = np.einsum("qcd,qd->qc", rows, q[block])
            sims[cand == _MISSING] = -np.inf
            top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
            top_sims = np.take_along_axis(sims, top, axis=1)
            top_ids = np.take_along_axis(cand, top, axis=1)
            width = top.shape[1]
            out.similarities[block, :width] = top_sims
            out.ids[block, :width] = np.where(np.isfinite(top_sims), top_ids, _MISSING)
        return out

    def vectors(self) -> np.ndarray:
        return np.asarray(self._vectors)

    def copy(self) -> IvfPqIndex:
        return IvfPqIndex(
            self.dim,
            self.params,
            cast(faiss.IndexIVFPQ, _clone(self._index)),
            self._vectors,
            self.trained_on,
        )

    def empty_copy(self) -> IvfPqIndex:
        """The trained index with no vectors: for re-adding after a removal without retraining."""
        index = cast(faiss.IndexIVFPQ, _clone(self._index))
        index.reset()
        return IvfPqIndex(
            self.dim, self.params, index, np.zeros((0, self.dim), np.float32), self.trained_on
        )

    def needs_retraining(self, n: int) -> bool:
        """Whether `n` vectors are too many (or too few) for the cells this index was trained
        for: more than `retrain_growth` times its training size, or less than 1/that."""
        growth = self.params.retrain_growth
        return n > growth * self.trained_on or n * growth < self.trained_on

    def _faiss_index(self) -> faiss.Index:
        return self._index

    def _meta(self) -> dict[str, Any]:
        return {
            **super()._meta(),
            "trained_on": self.trained_on,
            "nlist": int(self._index.nlist),
            "pq_m": int(self._index.pq.M),
            "pq_nbits": int(self._index.pq.nbits),
        }


def ivfpq_shape(n: int, dim: int, params: IndexParams) -> tuple[int, int, int]:
    """(nlist, PQ sub-quantisers, bits per code) for training IVF-PQ on `n` vectors.

    nlist ~ 4 sqrt(n) is FAISS's usual starting point (more cells: shorter lists to scan but a
    costlier coarse step); both it and the PQ codebooks (2^bits centroids) are capped so k-means
    has its 39 points per centroid. Sub-quantisers: one per 8 dimensions (a divisor of dim).
    """
    nlist = params.nlist if params.nlist is not None else round(4 * math.sqrt(n))
    nlist = max(1, min(nlist, n // 39))
    nbits = max(4, min(8, int(math.log2(n / 39))))
    target = params.pq_m if params.pq_m is not None else max(1, dim // 8)
    pq_m = max(m for m in range(1, min(target, dim) + 1) if dim % m == 0)
    return nlist, pq_m, nbits


_KINDS: dict[str, type[VectorIndex]] = {
    "exact": ExactIndex,
    "hnsw": HnswIndex,
    "ivfpq": IvfPqIndex,
}


def build_index(vectors: np.ndarray, params: IndexParams) -> VectorIndex:
    """A new index over `vectors`, of the kind `choose_kind` picks for their number."""
    return _KINDS[choose_kind(len(vectors), params)].build(vectors, params)


def extend_index(index: VectorIndex, vectors: np.ndarray, params: IndexParams) -> VectorIndex:
    """A new index holding `index`'s vectors and then `vectors`; `index` is left as it was.

    Incremental (a copy plus an add) when the kind for the new size is the same and an IVF-PQ
    index needs no retraining; otherwise a rebuild over all the vectors.
    """
    new = unit_rows(vectors, index.dim)
    total = len(index) + len(new)
    kind = choose_kind(total, params)
    if kind != index.kind or (isinstance(index, IvfPqIndex) and index.needs_retraining(total)):
        return _KINDS[kind].build(np.concatenate([index.vectors(), new]), params)
    grown = index.copy()
    grown.params = params
    grown.add(new)
    return grown


def rebuild_index(
    previous: VectorIndex | None, vectors: np.ndarray, params: IndexParams
) -> VectorIndex:
    """An index over `vectors` (what is left after a removal). A trained IVF-PQ index is
    reused without retraining when the remaining count is still within its training range."""
    kind = choose_kind(len(vectors), params)
    if (
        isinstance(previous, IvfPqIndex)
        and kind == "ivfpq"
        and not previous.needs_retraining(len(vectors))
    ):
        index = previous.empty_copy()
        index.params = params
        index.add(vectors)
        return index
    return _KINDS[kind].build(vectors, params)


def load_index(directory: Path, name: str, vectors: np.ndarray, params: IndexParams) -> VectorIndex:
    """Read `NAME.faiss` and `NAME.json` from `directory`; `vectors` are the rows it indexes
    (IVF-PQ re-ranks with them; the others check that the counts agree)."""
    meta_file = directory / f"{name}.json"
    try:
        meta = json.loads(meta_file.read_text("utf-8"))
        kind = str(meta["kind"])
        dim = int(meta["dim"])
        count = int(meta["count"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BankError(f"{meta_file}: not a readable index description ({exc})") from None
    if kind not in _KINDS:
        raise BankError(f"{meta_file}: unknown index kind {kind!r}")
    if count != len(vectors) or (len(vectors) and np.asarray(vectors).shape[1] != dim):
        raise BankError(
            f"{directory / name}.faiss indexes {count} vectors of {dim} dimensions but the bank "
            f"holds {len(vectors)}; rebuild the bank's index"
        )
    try:
        raw = faiss.read_index(str(directory / f"{name}.faiss"))
    except RuntimeError as exc:
        raise BankError(f"{directory / name}.faiss: FAISS cannot read it ({exc})") from None
    # `read_index` already returns the concrete class (and owns it: no `downcast_index`,
    # whose wrapper would not keep the index alive).
    expected = {"exact": faiss.IndexFlatIP, "hnsw": faiss.IndexHNSWFlat, "ivfpq": faiss.IndexIVFPQ}
    if not isinstance(raw, expected[kind]) or int(raw.ntotal) != count or int(raw.d) != dim:
        raise BankError(f"{directory / name}.faiss does not match {meta_file}")
    if kind == "exact":
        return ExactIndex(dim, params, cast(faiss.IndexFlatIP, raw))
    if kind == "hnsw":
        return HnswIndex(dim, params, cast(faiss.IndexHNSWFlat, raw))
    return IvfPqIndex(
        dim,
        params,
        cast(faiss.IndexIVFPQ, raw),
        vectors,
        int(meta.get("trained_on", count)),
    )


def _clone(index: faiss.Index) -> faiss.Index:
    return faiss.clone_index(index)


def _flat_vectors(index: faiss.Index, n: int, dim: int) -> np.ndarray:
    """The float vectors of a flat storage index, copied out in id order."""
    if n == 0:
        return np.zeros((0, dim), dtype=np.float32)
    return np.asarray(index.reconstruct_n(0, n), dtype=np.float32).reshape(n, dim)
