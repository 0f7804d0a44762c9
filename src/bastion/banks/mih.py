"""Multi-index hashing over 256-bit codes (PDQ hashes): every code within t bits of a query,
exactly, in well under a millisecond at a million codes.

How it finds every match: split the 256 bits into 16 chunks of 16 bits. If two codes differ in
d bits, some chunk holds at most floor(d / 16) of them (pigeonhole). So for each chunk, look up
the codes whose chunk equals the query's chunk with up to nflip = t // 16 bits flipped (17 keys a
chunk at t = 31, 137 at t = 47), and check each candidate's full Hamming distance. A code found
through several chunks is reported once, by the first chunk that reaches it (a candidate of chunk
j is skipped when an earlier chunk is also within nflip bits of the query, since that chunk's
probe finds it too), so no set of seen rows is needed.

Layout: per chunk, the rows sorted by that chunk's key (`orders`, int32) and where each key's
rows start (`starts`, a 65,537-entry offset table), so a probe is two reads and a run of rows.
At a million codes that is 64 MB of orders and 8 MB of offsets beside the 32 MB of codes; it
builds in about half a second (a radix argsort per chunk).

Why not FAISS's IndexBinaryMultiHash, which implements the same idea (and is what
ThreatExchange's PDQ index uses): its per-probe hash-table lookups and candidate set dominate. In
`bench/bank_scale.py` at a million hashes on 2 cores, in batches of 1,000 lookups, it answered
2,724 lookups/s against 11,832 for this loop (compiled with Numba, parallel over queries) and
1,866 for a FAISS flat scan; one lookup at a time, 1,065/s against 4,918.

Parallel over queries by threads of our own rather than Numba's `parallel=True`: the loop runs
without the GIL, each thread on its own slice of the queries, and a batch too small to share runs
in the calling thread. Numba's parallel loops run on its OpenMP layer where TBB is not installed,
and starting that layer calls `omp_set_nested(1)` and `omp_set_num_threads(all CPUs)` on the
calling thread, in the libgomp that PyTorch uses too. From then on PyTorch on that thread ignored
`torch.set_num_threads`, and MKL opened a nested team of new threads inside each of PyTorch's
parallel regions: in one pytest process, training from the policy's examples took 377 s after the
hash-index tests instead of 61 s. Against that loop, at a million codes on 2 busy cores: the same
~5,500 lookups/s in batches of 1,000, and 5,000/s instead of 125/s one lookup at a time.

Thresholds above 47 bits (nflip 3: 697 probes a chunk) are refused: a flat scan is the better
tool there, and `HashBank` uses one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from itertools import combinations, pairwise

import numba
import numpy as np

from bastion.cpus import model_threads

CHUNKS = 16
CHUNK_BITS = 16
CODE_BYTES = 32
MAX_THRESHOLD = 47
#: Room for matches per query; a batch with a query over it is searched again with room for all.
_FIRST_CAP = 64
#: Fewest queries worth handing to another thread (a lookup takes tens of microseconds).
_MIN_QUERIES_PER_THREAD = 8


def flip_masks(nflip: int) -> np.ndarray:
    """Every 16-bit mask with at most `nflip` bits set, fewest bits first."""
    masks = [0]
    for k in range(1, nflip + 1):
        masks += [sum(1 << b for b in bits) for bits in combinations(range(CHUNK_BITS), k)]
    return np.array(masks, dtype=np.int64)


def chunk_keys(words: np.ndarray) -> np.ndarray:
    """(n, 16) int64 chunk keys from (n, 4) uint64 code words: chunk j is bits 16*(j%4) and up
    of word j//4, the same arithmetic the search loop uses, so keys agree on any byte order."""
    shifts = (np.arange(CHUNKS) % 4 * CHUNK_BITS).astype(np.uint64)
    picked = words[:, np.arange(CHUNKS) // 4] >> shifts
    return (picked & np.uint64(0xFFFF)).astype(np.int64)


def as_words(codes: np.ndarray) -> np.ndarray:
    """(n, 32) uint8 codes as a contiguous (n, 4) uint64 array (the same bits)."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1, CODE_BYTES)
    return codes.view(np.uint64).reshape(-1, 4)


class MultiIndexHash:
    """Immutable once built: `extended` returns a new index. Row i is the i-th code added."""

    def __init__(self, words: np.ndarray, orders: np.ndarray, starts: np.ndarray) -> None:
        self.words = words
        self.orders = orders
        self.starts = starts

    def __len__(self) -> int:
        return len(self.words)

    @property
    def nbytes(self) -> int:
        return int(self.words.nbytes + self.orders.nbytes + self.starts.nbytes)

    @classmethod
    def build(cls, codes: np.ndarray) -> MultiIndexHash:
        words = as_words(codes)
        n = len(words)
        if n >= np.iinfo(np.int32).max:
            raise ValueError(f"{n:,} codes is more than a multi-index hash holds (2**31 - 1)")
        keys = chunk_keys(words)
        orders = np.empty((CHUNKS, n), dtype=np.int32)
        starts = np.zeros((CHUNKS, 1 << CHUNK_BITS | 1), dtype=np.int64)
        for j in range(CHUNKS):
            orders[j] = np.argsort(keys[:, j], kind="stable")
            np.cumsum(np.bincount(keys[:, j], minlength=1 << CHUNK_BITS), out=starts[j, 1:])
        return cls(words, orders, starts)

    def extended(self, codes: np.ndarray) -> MultiIndexHash:
        """A new index with `codes` after the existing ones. The existing orders stay sorted,
        so each chunk's new rows are merged in rather than everything sorted again."""
        new = as_words(codes)
        if not len(new):
            return self
        n = len(self.words)
        words = np.concatenate([self.words, new])
        keys = chunk_keys(new)
        orders = np.empty((CHUNKS, len(words)), dtype=np.int32)
        starts = np.zeros_like(self.starts)
        for j in range(CHUNKS):
            order = np.argsort(keys[:, j], kind="stable")
            # each new row goes after every old row with a key <= its own (stable: old first)
            at = self.starts[j, keys[order, j] + 1]
            orders[j] = np.insert(self.orders[j], at, (n + order).astype(np.int32))
            counts = np.bincount(keys[:, j], minlength=1 << CHUNK_BITS)
            starts[j, 1:] = self.starts[j, 1:] + np.cumsum(counts)
        return MultiIndexHash(words, orders, starts)

    def search(
        self, queries: np.ndarray, threshold: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every code within `threshold` bits of each query, as CSR: query q's rows are
        rows[lims[q]:lims[q+1]] at distances dists[...], in no particular order."""
        if not 0 <= threshold <= MAX_THRESHOLD:
            raise ValueError(
                f"multi-index hashing is exact up to {MAX_THRESHOLD} bits here, not {threshold}"
            )
        q = as_words(queries)
        nq = len(q)
        if not nq or not len(self.words):
            empty = np.zeros(0, dtype=np.int64)
            return np.zeros(nq + 1, dtype=np.int64), empty, empty
        nflip = threshold // CHUNK_BITS
        masks = flip_masks(nflip)
        cap = _FIRST_CAP
        while True:  # again with room for all, in the rare case a query is near many codes
            rows = np.empty((nq, cap), dtype=np.int64)
            dists = np.empty((nq, cap), dtype=np.int64)
            counts = np.zeros(nq, dtype=np.int64)
            search = partial(_search, q, self.words, self.orders, self.starts, masks, threshold,
                             nflip, rows, dists, counts)  # fmt: skip
            _in_slices(nq, search)
            if counts.max() <= cap:
                break
            cap = int(counts.max())
        lims = np.zeros(nq + 1, dtype=np.int64)
        np.cumsum(counts, out=lims[1:])
        keep = np.arange(cap)[None, :] < counts[:, None]
        return lims, rows[keep], dists[keep]


@numba.njit(inline="always")  # type: ignore[misc]
def _popcount(x: np.uint64) -> int:
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return int((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@numba.njit(inline="always")  # type: ignore[misc]
def _chunk(w: np.ndarray, j: int) -> int:
    return int((w[j // 4] >> np.uint64(16 * (j % 4))) & np.uint64(0xFFFF))


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _threads() -> int:
    """Threads a batch of lookups may use: $BASTION_THREADS, else every CPU (see bastion.cpus)."""
    return model_threads()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_threads() - 1, thread_name_prefix="mih")
        return _pool


def _forget_pool() -> None:
    """In a forked child the pool's threads do not exist; the child starts its own."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def _in_slices(n: int, run: Callable[[int, int], None]) -> None:
    """`run(lo, hi)` over slices of range(n): the first slice in this thread, the others in the
    pool, each slice at least _MIN_QUERIES_PER_THREAD long."""
    parts = min(_threads(), n // _MIN_QUERIES_PER_THREAD)
    if parts <= 1:
        run(0, n)
        return
    first, *rest = pairwise(n * k // parts for k in range(parts + 1))
    pool = _executor()
    others = [pool.submit(run, lo, hi) for lo, hi in rest]
    run(*first)
    for future in others:
        future.result()


@numba.njit(cache=True, nogil=True)  # type: ignore[misc]
def _search(
    q: np.ndarray,
    words: np.ndarray,
    orders: np.ndarray,
    starts: np.ndarray,
    masks: np.ndarray,
    threshold: int,
    nflip: int,
    out_rows: np.ndarray,
    out_dists: np.ndarray,
    counts: np.ndarray,
    lo: int,
    hi: int,
) -> None:
    """For each query in [lo, hi), every row within `threshold` bits, reported by the first
    chunk that reaches it; at most out_rows.shape[1] are written, counts[i] is the true count."""
    cap = out_rows.shape[1]
    for i in range(lo, hi):
        qi = q[i]
        found = 0
        for j in range(16):
            key = _chunk(qi, j)
            for m in range(masks.shape[0]):
                probe = key ^ masks[m]
                for p in range(starts[j, probe], starts[j, probe + 1]):
                    r = orders[j, p]
                    c = words[r]
                    dist = (
                        _popcount(qi[0] ^ c[0])
                        + _popcount(qi[1] ^ c[1])
                        + _popcount(qi[2] ^ c[2])
                        + _popcount(qi[3] ^ c[3])
                    )
                    if dist > threshold:
                        continue
                    earlier = False
                    for jj in range(j):
                        if _popcount(np.uint64(_chunk(qi, jj) ^ _chunk(c, jj))) <= nflip:
                            earlier = True
                            break
                    if earlier:
                        continue
                    if found < cap:
                        out_rows[i, found] = r
                        out_dists[i, found] = dist
                    found += 1
        counts[i] = found
