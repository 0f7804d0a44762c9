"""The multi-index hash finds exactly the codes a brute-force popcount finds, at every
threshold it accepts, however the index was grown."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from bastion.banks import mih
from bastion.banks.mih import MAX_THRESHOLD, MultiIndexHash, flip_masks
from subprocesses import python_prints


def flipped(rng: np.random.Generator, code: np.ndarray, k: int) -> np.ndarray:
    out = code.copy()
    for b in rng.choice(256, k, replace=False):
        out[b // 8] ^= np.uint8(1 << (b % 8))
    return out


def brute(codes: np.ndarray, query: np.ndarray, threshold: int) -> tuple[list[int], np.ndarray]:
    dist = np.unpackbits(codes ^ query, axis=1).sum(axis=1)
    rows = np.flatnonzero(dist <= threshold)
    return rows.tolist(), dist


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 256, (20_000, 32), dtype=np.uint8)
    # near-duplicates of one code at every distance 0..60, and 80 exact copies of another
    # (more matches for one query than the first pass has room for)
    near = np.stack([flipped(rng, codes[1], k) for k in range(61)])
    codes = np.concatenate([codes, near, np.repeat(codes[2:3], 80, axis=0)])
    queries = np.stack(
        [codes[1], codes[2]] + [flipped(rng, codes[i], int(rng.integers(0, 48))) for i in range(60)]
    )
    return codes, queries


@pytest.mark.parametrize("threshold", [0, 1, 15, 16, 31, 32, 47])
def test_search_equals_brute_force(data: tuple[np.ndarray, np.ndarray], threshold: int) -> None:
    codes, queries = data
    lims, rows, dists = MultiIndexHash.build(codes).search(queries, threshold)
    assert lims[-1] == len(rows) == len(dists)
    for q, query in enumerate(queries):
        truth, dist = brute(codes, query, threshold)
        got = rows[lims[q] : lims[q + 1]]
        assert sorted(got.tolist()) == truth  # each row once, none missing
        assert dists[lims[q] : lims[q + 1]].tolist() == dist[got].tolist()
    # the planted near-duplicates of code 1 (row 20,000 + k is k bits away) up to the threshold
    planted = {1} | {20_000 + k for k in range(threshold + 1)}
    assert set(rows[lims[0] : lims[1]].tolist()) == planted


def test_extended_index_equals_one_built_at_once(data: tuple[np.ndarray, np.ndarray]) -> None:
    codes, queries = data
    grown = (
        MultiIndexHash.build(codes[:7_000]).extended(codes[7_000:15_000]).extended(codes[15_000:])
    )
    whole = MultiIndexHash.build(codes)
    assert np.array_equal(grown.orders, whole.orders)
    assert np.array_equal(grown.starts, whole.starts)
    a, b = grown.search(queries, 31), whole.search(queries, 31)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_empty_index_and_empty_queries() -> None:
    empty = MultiIndexHash.build(np.zeros((0, 32), dtype=np.uint8))
    lims, rows, _ = empty.search(np.zeros((3, 32), dtype=np.uint8), 31)
    assert lims.tolist() == [0, 0, 0, 0] and len(rows) == 0
    one = MultiIndexHash.build(np.zeros((1, 32), dtype=np.uint8))
    lims, rows, _ = one.search(np.zeros((0, 32), dtype=np.uint8), 31)
    assert lims.tolist() == [0] and len(rows) == 0


def test_thresholds_past_what_it_answers_exactly_are_refused() -> None:
    index = MultiIndexHash.build(np.zeros((2, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match="exact up to 47 bits"):
        index.search(np.zeros((1, 32), dtype=np.uint8), MAX_THRESHOLD + 1)


def test_flip_masks_cover_every_key_within_nflip_bits_once() -> None:
    for nflip, size in [(0, 1), (1, 17), (2, 137)]:
        masks = flip_masks(nflip)
        assert len(masks) == len(set(masks.tolist())) == size
        assert max(bin(int(m)).count("1") for m in masks) == nflip


@pytest.mark.parametrize("threads", [1, 3])
def test_queries_split_over_threads_give_the_same_answer(
    data: tuple[np.ndarray, np.ndarray], threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    codes, queries = data
    index = MultiIndexHash.build(codes)
    expected = index.search(queries, 31)
    monkeypatch.setattr(mih, "_threads", lambda: threads)
    with ThreadPoolExecutor(4) as callers:  # and from several threads at once
        answers = list(callers.map(lambda _: index.search(queries, 31), range(8)))
    for answer in answers:
        assert all(np.array_equal(x, y) for x, y in zip(answer, expected, strict=True))


def test_a_search_leaves_pytorch_threading_alone() -> None:
    """Numba's parallel loops run on its OpenMP layer, whose start calls omp_set_nested(1) and
    omp_set_num_threads(all CPUs) on the calling thread, in the libgomp PyTorch uses: PyTorch then
    ran nested parallel regions there and ignored torch.set_num_threads (a fine-tuning test took
    minutes instead of seconds after a hash lookup in the same process). A fresh process, since
    numba starts its threading layer once per process."""
    pytest.importorskip("torch")
    script = (
        "import numpy as np, torch\n"
        "from bastion.banks.mih import MultiIndexHash\n"
        "torch.set_num_threads(1)\n"
        "assert torch.get_num_threads() == 1\n"
        "codes = np.random.default_rng(0).integers(0, 256, (2000, 32), dtype=np.uint8)\n"
        "MultiIndexHash.build(codes).search(codes[:64], 31)\n"
        "print(torch.get_num_threads())\n"
    )
    assert python_prints(script, timeout=120) == ["1"]
