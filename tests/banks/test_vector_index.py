"""Vector indexes: recall against exact search, save/load, incremental adds, the auto choice, and
refusals of bad vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bastion.banks.files import BankError
from bastion.banks.vector_index import (
    IVFPQ_MIN_VECTORS,
    ExactIndex,
    HnswIndex,
    IndexParams,
    IvfPqIndex,
    VectorIndex,
    build_index,
    choose_kind,
    extend_index,
    load_index,
    rebuild_index,
    unit_rows,
)

DIM = 128
KINDS: dict[str, type[VectorIndex]] = {"exact": ExactIndex, "hnsw": HnswIndex, "ivfpq": IvfPqIndex}


def clustered(n: int, dim: int = DIM, seed: int = 0, clusters: int = 200) -> np.ndarray:
    """Unit vectors in `clusters` Gaussian clusters (noise as large as the centres' spread):
    neighbours are found inside a cluster but not trivially, as with sentence embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)]))


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """20,000 indexed vectors, 300 held-out queries, and the exact top 10 of each."""
    everything = clustered(20_300)
    x, q = everything[:20_000], everything[20_000:]
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
    return x, q, truth


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_recall_at_10_against_exact_with_default_parameters(
    data: tuple[np.ndarray, np.ndarray, np.ndarray], kind: str
) -> None:
    x, q, truth = data
    index = KINDS[kind].build(x, IndexParams())
    assert index.kind == kind and len(index) == len(x)
    found = index.search(q, 10)
    assert recall_at_10(found.ids, truth) >= 0.95
    # Similarities are the true cosines of the ids returned (IVF-PQ re-ranks exactly).
    expected = np.einsum("qkd,qd->qk", x[found.ids], q)
    np.testing.assert_allclose(found.similarities, expected, atol=1e-4)
    assert (np.diff(found.similarities, axis=1) <= 1e-6).all()  # best first
    # The search-time settings are really used: starving them loses recall.
    starved = index.with_search(ef_search=1, nprobe=1)
    assert recall_at_10(starved.search(q, 10).ids, truth) < recall_at_10(found.ids, truth)
    assert index.params.ef_search == IndexParams().ef_search  # with_search changed a copy


def test_ivfpq_without_reranking_would_miss_the_target(
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    x, q, _ = data
    index = IvfPqIndex.build(x[:5000], IndexParams())
    small_truth = np.argsort(-(q @ x[:5000].T), axis=1)[:, :10]
    no_rerank = IvfPqIndex.build(x[:5000], IndexParams(rerank=1))
    assert recall_at_10(no_rerank.search(q, 10).ids, small_truth) < 0.9
    assert recall_at_10(index.search(q, 10).ids, small_truth) >= 0.95


def test_exact_index_is_brute_force() -> None:
    x = clustered(500, dim=16, seed=3)
    q = clustered(20, dim=16, seed=4)
    found = ExactIndex.build(x, IndexParams()).search(q, 7)
    sims = q @ x.T
    np.testing.assert_array_equal(found.ids, np.argsort(-sims, axis=1, kind="stable")[:, :7])
    np.testing.assert_allclose(found.similarities, np.sort(sims, axis=1)[:, ::-1][:, :7], atol=1e-5)


def test_fewer_vectors_than_k_are_padded() -> None:
    index = ExactIndex.build(clustered(3, dim=16), IndexParams())
    found = index.search(clustered(2, dim=16, seed=9), 5)
    assert (found.ids[:, 3:] == -1).all() and np.isneginf(found.similarities[:, 3:]).all()
    assert (found.ids[:, :3] >= 0).all()


@pytest.mark.parametrize("kind", ["exact", "hnsw", "ivfpq"])
def test_save_and_load_give_the_same_answers(tmp_path: Path, kind: str) -> None:
    x = clustered(2000, dim=32, seed=5)
    q = clustered(50, dim=32, seed=6)
    params = IndexParams(kind=kind)  # type: ignore[arg-type]
    index = build_index(x, params)
    assert index.kind == kind
    before = index.search(q, 10)
    written = index.save(tmp_path, "positives")
    assert sorted(p.name for p in written) == ["positives.faiss", "positives.json"]
    loaded = load_index(tmp_path, "positives", x, params)
    assert loaded.kind == kind and len(loaded) == len(x)
    after = loaded.search(q, 10)
    np.testing.assert_array_equal(before.ids, after.ids)
    np.testing.assert_allclose(before.similarities, after.similarities, atol=1e-6)


def test_load_refuses_vectors_that_do_not_belong(tmp_path: Path) -> None:
    x = clustered(100, dim=16)
    ExactIndex.build(x, IndexParams()).save(tmp_path, "positives")
    with pytest.raises(BankError, match="indexes 100 vectors"):
        load_index(tmp_path, "positives", x[:99], IndexParams())
    (tmp_path / "positives.faiss").write_bytes(b"not an index")
    with pytest.raises(BankError, match="FAISS cannot read it"):
        load_index(tmp_path, "positives", x, IndexParams())


def test_incremental_add_equals_a_rebuild() -> None:
    x = clustered(3000, dim=32, seed=7)
    q = clustered(100, dim=32, seed=8)
    first, more = x[:2000], x[2000:]

    exact = ExactIndex.build(first, IndexParams())
    grown = extend_index(exact, more, IndexParams())
    rebuilt = ExactIndex.build(x, IndexParams())
    np.testing.assert_array_equal(grown.search(q, 10).ids, rebuilt.search(q, 10).ids)
    assert len(exact) == 2000  # the original is left as it was

    # IVF-PQ: adding encodes with the trained codebooks, exactly as adding all at once would.
    params = IndexParams(kind="ivfpq")
    ivf = IvfPqIndex.build(first, params)
    grown_ivf = extend_index(ivf, more, params)
    assert isinstance(grown_ivf, IvfPqIndex) and grown_ivf.trained_on == 2000
    all_at_once = ivf.empty_copy()
    all_at_once.add(x)
    np.testing.assert_array_equal(grown_ivf.search(q, 10).ids, all_at_once.search(q, 10).ids)
    assert len(ivf) == 2000

    # HNSW: the graph depends on insertion order, so compare answers, not bytes.
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
    grown_hnsw = extend_index(HnswIndex.build(first, IndexParams()), more, IndexParams(kind="hnsw"))
    assert grown_hnsw.kind == "hnsw"
    assert recall_at_10(grown_hnsw.search(q, 10).ids, truth) >= 0.95
    rebuilt_hnsw = HnswIndex.build(x, IndexParams())
    assert recall_at_10(grown_hnsw.search(q, 10).ids, rebuilt_hnsw.search(q, 10).ids) >= 0.95


def test_added_vectors_get_the_next_ids() -> None:
    x = clustered(300, dim=16, seed=2)
    for kind in ("exact", "hnsw"):
        index = build_index(x[:200], IndexParams(kind=kind))  # type: ignore[arg-type]
        index.add(x[200:])
        found = index.search(x[200:], 1)
        assert found.ids[:, 0].tolist() == list(range(200, 300))
        np.testing.assert_allclose(found.similarities[:, 0], 1.0, atol=1e-5)


def test_auto_picks_by_size_and_switches_as_the_bank_grows() -> None:
    params = IndexParams(exact_max=100, hnsw_max=1000)
    assert [choose_kind(n, params) for n in (0, 100, 101, 1000, 1001)] == [
        "exact",
        "exact",
        "hnsw",
        "hnsw",
        "ivfpq",
    ]
    defaults = IndexParams()
    assert choose_kind(50_000, defaults) == "exact"
    assert choose_kind(1_000_000, defaults) == "hnsw"
    assert choose_kind(10_000_000, defaults) == "ivfpq"
    assert choose_kind(10**9, IndexParams(kind="exact")) == "exact"  # forced

    x = clustered(1500, dim=16, seed=11)
    index = build_index(x[:80], params)
    assert index.kind == "exact"
    index = extend_index(index, x[80:400], params)
    assert index.kind == "hnsw" and len(index) == 400
    index = extend_index(index, x[400:], params)
    assert index.kind == "ivfpq" and len(index) == 1500
    found = index.search(x, 1)
    assert (found.ids[:, 0] == np.arange(1500)).mean() > 0.99  # every vector finds itself


def test_ivfpq_needs_enough_vectors_and_retrains_when_grown() -> None:
    params = IndexParams(kind="ivfpq")
    x = clustered(3000, dim=16, seed=12)
    assert choose_kind(IVFPQ_MIN_VECTORS - 1, params) == "exact"
    assert build_index(x[: IVFPQ_MIN_VECTORS - 1], params).kind == "exact"
    with pytest.raises(BankError, match="needs at least"):
        IvfPqIndex.build(x[:100], params)

    index = IvfPqIndex.build(x[:1000], params)
    within = extend_index(index, x[1000:2000], params)
    assert isinstance(within, IvfPqIndex) and within.trained_on == 1000
    past = extend_index(within, x[2000:], params)  # 3000 > 2 x 1000: retrained
    assert isinstance(past, IvfPqIndex) and past.trained_on == 3000
    # After removing most vectors the old training no longer fits; within range it is reused.
    assert isinstance(shrunk := rebuild_index(past, x[:1000], params), IvfPqIndex)
    assert shrunk.trained_on == 1000
    kept = rebuild_index(past, x[:2500], params)
    assert isinstance(kept, IvfPqIndex) and kept.trained_on == 3000


def test_bad_vectors_are_refused_with_the_reason() -> None:
    index = ExactIndex.build(clustered(10, dim=16), IndexParams())
    with pytest.raises(BankError, match="8 dimensions; this bank's encoder makes 16"):
        index.search(np.ones((2, 8), np.float32), 3)
    with pytest.raises(BankError, match=r"NaN or infinity in row\(s\) 1"):
        index.add(np.array([np.ones(16), [np.nan] * 16]))
    with pytest.raises(BankError, match="all-zero"):
        index.search(np.zeros((1, 16)), 3)
    with pytest.raises(BankError, match="2-D"):
        index.search(np.ones((1, 2, 16)), 3)
    with pytest.raises(BankError, match="k must be a positive integer"):
        index.search(np.ones((1, 16)), 0)
    with pytest.raises(BankError, match="floating point"):
        unit_rows(np.ones((1, 16), dtype=np.int64), 16)
    with pytest.raises(BankError, match="index kind"):
        IndexParams(kind="lsh")  # type: ignore[arg-type]
    # Rows that are not unit length are normalised, not refused.
    assert np.linalg.norm(unit_rows(np.full((1, 16), 3.0), 16), axis=1) == pytest.approx(1.0)
