"""Benchmark: banks at scale, a million PDQ hashes and a million embeddings, against the
reference tools in the same run.

Usage:
    python bench/bank_scale.py [--pdq 1000000] [--seeds 1000] [--lookups 10000]
                               [--vectors 1000000] [--queries 2000] [--skip-pdq]
                               [--skip-embeddings] [--root DIR] [--out bench/out/bank_scale.json]

**PDQ.** A hash bank of `--pdq` hashes: uniformly random 256-bit hashes plus planted
near-duplicates. For each of `--seeds` query hashes (not in the bank), one hash is planted at each
distance in `PLANTED` bits (flipping that many distinct random bits): 0 to 31 must all be found
(Meta's Hasher-Matcher-Actioner threshold), 32 and more must not. The lookups are the seeds plus
random hashes up to `--lookups` (a real stream is mostly misses). Side by side:
- Bastion: `HashBank.add` of every entry (validation, entries file, checksums, index), then
  `HashBank.open` (what a server does at start), then `match_pdq` in batches of 1,000 and one at
  a time. The multi-index hash alone (`BinaryIndex`, no entry objects) and the FAISS flat scan
  are measured too.
- ThreatExchange's `PdqSignal.get_index_cls()` (`PDQIndex`: FAISS IndexBinaryMultiHash, nflip =
  31 // 16), built from (hash, id) pairs and queried one hash at a time through `query`, as HMA
  does; and the same FAISS index batched, through the wrapped index's `search_with_distance_in_
  result`.
Memory is the process's resident-set growth while a structure is built or opened, after a
garbage collection, so it counts everything that structure keeps (entry objects included).

**Embeddings.** `--vectors` unit vectors of 384 dimensions, the encoder's. A million real
sentence embeddings do not exist in the shared sets (about 27,000 distinct texts), so the bank
is grown from real ones: every distinct text of the ship-ok sets (Davidson, ToxiGen, WildGuard,
AILuminate, HarmBench, AdvBench, StrongREJECT, SimpleSafetyTests) is embedded with the shipped
int8 encoder; `--queries` of them are held out as the queries, the rest are kept as they are,
and the remaining vectors are each a kept one plus Gaussian noise shaped like the real
embeddings' own spread (their covariance, scaled by a factor drawn from 0.3 to 0.8 per vector),
normalised. So neighbourhoods have the real data's shape and density varies as it does, and the
queries are real posts.
- Bastion: `vector_index.build` with the default `IndexParams` ("auto": HNSW above 50,000;
  M 32, efConstruction 200, efSearch 192), searched for 10 neighbours in batches of 1,000 and one
  at a time; recall@10 against exact search.
- `sentence_transformers.util.semantic_search` (torch, float32, brute force, top 10): its answer
  is the exact one recall is measured against. FAISS's exact `IndexFlatIP` too.

Writes bench/out/bank_scale.json (and .md). Time on 2 cores: PDQ about 5 minutes at 1 M; the
embedding side about 20 minutes at 1 M (the HNSW build is most of it).
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from common import machine, write_result

PLANTED = (0, 1, 4, 8, 16, 24, 28, 31, 32, 36, 48)
THRESHOLD = 31
BATCH = 1_000
SINGLE = 1_000  # lookups timed one at a time
EMBED_SETS = (
    "davidson",
    "toxigen",
    "wildguard",
    "ailuminate_en",
    "harmbench",
    "advbench",
    "strongreject",
    "simple_safety_tests",
)

console = Console(width=140)


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def settle() -> float:
    gc.collect()
    try:  # hand freed heap back, so growth measured next is what stays
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    return rss_mb()


def flip_bits(rng: np.random.Generator, code: np.ndarray, k: int) -> np.ndarray:
    out = code.copy()
    for b in rng.choice(256, k, replace=False):
        out[b // 8] ^= np.uint8(1 << (b % 8))
    return out


def to_hex(codes: np.ndarray) -> list[str]:
    raw = codes.tobytes().hex()
    return [raw[i : i + 64] for i in range(0, len(raw), 64)]


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


# -- PDQ --------------------------------------------------------------------------------------


def pdq_data(n: int, seeds: int, lookups: int, rng: np.random.Generator) -> dict[str, Any]:
    planted_n = seeds * len(PLANTED)
    if planted_n > n:
        raise SystemExit(f"--pdq {n} cannot hold {planted_n} planted hashes")
    seed_codes = rng.integers(0, 256, (seeds, 32), dtype=np.uint8)
    planted = np.stack([flip_bits(rng, s, d) for s in seed_codes for d in PLANTED])
    planted_ids = [f"p{s}-d{d}" for s in range(seeds) for d in PLANTED]
    random_codes = rng.integers(0, 256, (n - planted_n, 32), dtype=np.uint8)
    codes = np.concatenate([random_codes, planted])
    ids = [f"r{i}" for i in range(len(random_codes))] + planted_ids
    order = rng.permutation(n)
    codes = codes[order]
    ids = [ids[i] for i in order]
    others = rng.integers(0, 256, (max(0, lookups - seeds), 32), dtype=np.uint8)
    queries = np.concatenate([seed_codes, others])
    return {"codes": codes, "ids": ids, "queries": queries, "seeds": seeds}


def planted_recall(found: list[set[str]], seeds: int) -> dict[str, Any]:
    """Per planted distance, the share of seeds whose planted hash was returned; and how many
    hashes returned were neither planted within the threshold nor expected."""
    by_distance = {d: sum(f"p{s}-d{d}" in found[s] for s in range(seeds)) / seeds for d in PLANTED}
    wanted = {d for d in PLANTED if d <= THRESHOLD}
    within = [by_distance[d] for d in wanted]
    return {
        "by_distance": by_distance,
        "within_threshold": float(np.mean(within)),
        "beyond_threshold_returned": sum(by_distance[d] for d in PLANTED if d > THRESHOLD),
    }


def bench_pdq(args: argparse.Namespace, rng: np.random.Generator) -> dict[str, Any]:
    from threatexchange.signal_type.pdq.signal import PdqSignal

    from bastion.banks.entries import Entry, Label
    from bastion.banks.hashes import BinaryIndex, HashBank

    data = pdq_data(args.pdq, args.seeds, args.lookups, rng)
    codes, ids, queries, seeds = data["codes"], data["ids"], data["queries"], data["seeds"]
    hexes = to_hex(codes)
    query_hex = to_hex(queries)
    rows: list[dict[str, Any]] = []
    console.print(f"PDQ: {len(codes):,} hashes, {seeds:,} seeds, {len(queries):,} lookups")

    # Bastion, the whole bank
    home = Path(tempfile.mkdtemp(prefix="bank-scale-"))
    try:
        label = Label("bench", severity=3, source="bench/bank_scale.py")
        entries = [Entry(i, "pdq", h, label) for i, h in zip(ids, hexes, strict=True)]
        bank = HashBank.create(home / "pdq", "scale", {})
        t = time.perf_counter()
        bank.add(entries)
        add_s = time.perf_counter() - t
        del bank, entries
        before = settle()
        t = time.perf_counter()
        bank = HashBank.open(home / "pdq")
        open_s = time.perf_counter() - t
        bank_mb = settle() - before
        bank.match_pdq(query_hex[:10])  # compile / warm
        t = time.perf_counter()
        found: list[set[str]] = []
        for s in range(0, len(query_hex), BATCH):
            found += [{m.entry_id for m in ms} for ms in bank.match_pdq(query_hex[s : s + BATCH])]
        batched_s = time.perf_counter() - t
        t = time.perf_counter()
        for h in query_hex[:SINGLE]:
            bank.match_pdq([h])
        single_s = time.perf_counter() - t
        rows.append(
            {
                "tool": "Bastion HashBank (multi-index hash)",
                "index": bank.index_kinds["pdq"],
                "build_s": add_s,
                "build_what": "bank add: validate, write, checksum, index",
                "open_s": open_s,
                "memory_mb": bank_mb,
                "lookups_per_s_batched": rate(len(query_hex), batched_s),
                "lookups_per_s_single": rate(SINGLE, single_s),
                **planted_recall(found, seeds),
            }
        )
        del bank
    finally:
        shutil.rmtree(home, ignore_errors=True)

    # Bastion, the index alone (multi-index hash), and the flat scan for reference
    for kind in ("multihash", "flat"):
        before = settle()
        t = time.perf_counter()
        index = BinaryIndex.build(codes, kind)
        build_s = time.perf_counter() - t
        mem = settle() - before
        index.search(queries[:10], THRESHOLD)
        n_timed = len(queries) if kind == "multihash" else min(len(queries), 2 * BATCH)
        t = time.perf_counter()
        results = []
        for s in range(0, n_timed, BATCH):
            results += index.search(queries[s : s + BATCH], THRESHOLD)
        batched_s = time.perf_counter() - t
        t = time.perf_counter()
        for q in queries[: SINGLE // (1 if kind == "multihash" else 5)]:
            index.search(q[None], THRESHOLD)
        single_s = time.perf_counter() - t
        found = [{ids[r] for r in rows_.tolist()} for rows_, _ in results[:seeds]]
        rows.append(
            {
                "tool": f"Bastion BinaryIndex {kind} (index only)",
                "index": kind,
                "build_s": build_s,
                "build_what": "index from codes",
                "open_s": None,
                "memory_mb": mem,
                "lookups_per_s_batched": rate(n_timed, batched_s),
                "lookups_per_s_single": rate(SINGLE // (1 if kind == "multihash" else 5), single_s),
                **planted_recall(found, seeds),
            }
        )
        del index, results

    # ThreatExchange's PDQ index, as HMA uses it
    index_cls = PdqSignal.get_index_cls()
    before = settle()
    t = time.perf_counter()
    te = index_cls(entries=list(zip(hexes, ids, strict=True)))
    te_build = time.perf_counter() - t
    te_mb = settle() - before
    te.query(query_hex[0])
    t = time.perf_counter()
    te_found = [{m.metadata for m in te.query(h)} for h in query_hex[:SINGLE]]
    te_single = time.perf_counter() - t
    inner = te.index
    t = time.perf_counter()
    batched: list[set[str]] = []
    for s in range(0, len(query_hex), BATCH):
        chunk = query_hex[s : s + BATCH]
        res = inner.search_with_distance_in_result(chunk, THRESHOLD)
        batched += [{te.local_id_to_entry[i][1] for i, _, _ in res[h]} for h in chunk]
    te_batched = time.perf_counter() - t
    if seeds > SINGLE:  # recall over every seed from the batched answers
        te_found = batched
    rows.append(
        {
            "tool": f"ThreatExchange {index_cls.__name__} (FAISS IndexBinaryMultiHash)",
            "index": "faiss multihash",
            "build_s": te_build,
            "build_what": "index from (hash, id) pairs",
            "open_s": None,
            "memory_mb": te_mb,
            "lookups_per_s_batched": rate(len(query_hex), te_batched),
            "lookups_per_s_single": rate(SINGLE, te_single),
            **planted_recall(te_found, min(seeds, len(te_found))),
        }
    )
    del te, inner
    settle()
    return {
        "hashes": len(codes),
        "seeds": seeds,
        "lookups": len(queries),
        "planted_distances": list(PLANTED),
        "threshold": THRESHOLD,
        "rows": rows,
    }


# -- embeddings -------------------------------------------------------------------------------


def real_embeddings(root: str | None) -> tuple[np.ndarray, int]:
    from bastion.eval.datasets import load_dataset
    from bastion.models.encoder import SHIPPED_ONNX_ENCODER
    from bastion.models.onnx_runtime import OnnxTextEncoder

    seen: dict[str, None] = {}
    for name in EMBED_SETS:
        for text in load_dataset(name, root=root).texts:
            if text.strip():
                seen.setdefault(text, None)
    texts = list(seen)
    encoder = OnnxTextEncoder(SHIPPED_ONNX_ENCODER)
    t = time.perf_counter()
    vectors = np.asarray(encoder.encode(texts), dtype=np.float32)
    console.print(f"embedded {len(texts):,} distinct texts in {time.perf_counter() - t:.0f} s")
    return vectors, len(texts)


def grow(real: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` unit vectors: `real` itself, then real ones plus noise with their covariance."""
    centred = real - real.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    shape = (s / np.sqrt(len(real)))[:, None] * vt  # noise z @ shape has the real covariance
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    out[: len(real)] = real[:n]
    for start in range(len(real), n, 100_000):
        stop = min(n, start + 100_000)
        base = real[rng.integers(0, len(real), stop - start)]
        scale = rng.uniform(0.3, 0.8, (stop - start, 1)).astype(np.float32)
        noise = rng.standard_normal((stop - start, len(s))).astype(np.float32) @ shape
        out[start:stop] = base + scale * noise
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def build_in_steps(corpus: np.ndarray, params: Any) -> Any:
    """`build_index` over the corpus; an HNSW graph (built by adding vectors anyway) is fed
    50,000 vectors at a time so a progress bar can follow it."""
    from rich.progress import Progress

    from bastion.banks.vector_index import HnswIndex, build_index, choose_kind

    if choose_kind(len(corpus), params) != "hnsw":
        return build_index(corpus, params)
    step = 50_000
    with Progress(console=console) as progress:
        task = progress.add_task("building the HNSW graph", total=len(corpus))
        index = HnswIndex.build(corpus[:step], params)
        progress.update(task, completed=min(step, len(corpus)))
        for start in range(step, len(corpus), step):
            index.add(corpus[start : start + step])
            progress.update(task, completed=min(start + step, len(corpus)))
    return index


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f[:k]) & set(t)) / k for f, t in zip(found, truth, strict=True)]))


def bench_embeddings(args: argparse.Namespace, rng: np.random.Generator) -> dict[str, Any]:
    import torch
    from sentence_transformers import util

    from bastion.banks.vector_index import IndexParams

    real, n_texts = real_embeddings(args.root)
    order = rng.permutation(len(real))
    queries = np.ascontiguousarray(real[order[: args.queries]])
    kept = real[order[args.queries :]]
    corpus = grow(kept, args.vectors, rng)
    console.print(f"embeddings: {len(corpus):,} x {corpus.shape[1]}, {len(queries):,} queries")
    k = 10
    rows: list[dict[str, Any]] = []

    # Build first (the long part), then time every search back to back.
    built: dict[str, tuple[Any, float, float]] = {}
    for kind in ("auto", "exact"):
        params = IndexParams(kind=kind)  # type: ignore[arg-type]
        before = settle()
        t = time.perf_counter()
        index = build_in_steps(corpus, params)
        build_s = time.perf_counter() - t
        built[kind] = (index, build_s, settle() - before)
    load_at_queries = list(os.getloadavg())

    # the exact answer, as sentence-transformers computes it
    corpus_t = torch.from_numpy(corpus)
    queries_t = torch.from_numpy(queries)
    t = time.perf_counter()
    hits = util.semantic_search(queries_t, corpus_t, top_k=k)
    st_s = time.perf_counter() - t
    truth = np.array([[h["corpus_id"] for h in q] for q in hits], dtype=np.int64)
    rows.append(
        {
            "tool": "sentence_transformers.util.semantic_search (brute force, torch fp32)",
            "build_s": 0.0,
            "memory_mb": corpus.nbytes / 2**20,
            "qps_batched": rate(len(queries), st_s),
            "qps_single": None,
            "recall_at_10": 1.0,
        }
    )
    del corpus_t, hits

    for kind, (index, build_s, mem) in built.items():
        approximate = kind == "auto"
        index.search(queries[:10], k)
        n_timed = len(queries) if approximate else min(len(queries), 500)
        t = time.perf_counter()
        found = np.concatenate(
            [
                index.search(queries[s : min(s + BATCH, n_timed)], k).ids
                for s in range(0, n_timed, BATCH)
            ]
        )
        batched_s = time.perf_counter() - t
        n_single = 500 if approximate else 50
        t = time.perf_counter()
        for q in queries[:n_single]:
            index.search(q[None], k)
        single_s = time.perf_counter() - t
        rows.append(
            {
                "tool": f"Bastion vector index: {index.kind}"
                + (" (auto, default IndexParams)" if approximate else " (FAISS IndexFlatIP)"),
                "build_s": build_s,
                "memory_mb": mem,
                "qps_batched": rate(n_timed, batched_s),
                "qps_single": rate(n_single, single_s),
                "recall_at_10": recall_at(found, truth[:n_timed]),
            }
        )
    del built
    return {
        "vectors": len(corpus),
        "dim": int(corpus.shape[1]),
        "real_texts": n_texts,
        "queries": len(queries),
        "k": k,
        "load_average_at_queries": load_at_queries,
        "rows": rows,
    }


# -- report -----------------------------------------------------------------------------------


def fmt(value: Any, spec: str = ",.0f") -> str:
    return "n/a" if value is None else format(value, spec)


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    out = [
        f"Date {meta['date']}; {meta['machine']}; {meta['cpu_count']} CPUs; load average "
        f"{' '.join(f'{x:.2f}' for x in meta['load_average_before'])} before; seed {meta['seed']}."
    ]
    pdq = result.get("pdq")
    if pdq:
        out += [
            "",
            f"PDQ bank of {pdq['hashes']:,} hashes ({pdq['seeds']:,} seeds with hashes planted "
            f"at {', '.join(map(str, pdq['planted_distances']))} bits); {pdq['lookups']:,} "
            f"lookups; threshold {pdq['threshold']}.",
            "",
            "| tool | build s | open s | memory MB | lookups/s batched | lookups/s one at a time "
            "| planted found within 31 | planted beyond 31 returned |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in pdq["rows"]:
            out.append(
                f"| {r['tool']} | {r['build_s']:.1f} | {fmt(r['open_s'], '.1f')} | "
                f"{r['memory_mb']:,.0f} | {r['lookups_per_s_batched']:,.0f} | "
                f"{r['lookups_per_s_single']:,.0f} | {r['within_threshold']:.1%} | "
                f"{r['beyond_threshold_returned']:.1%} |"
            )
        out += ["", "Planted hashes found, by distance:", ""]
        dists = pdq["planted_distances"]
        out.append("| tool | " + " | ".join(f"d={d}" for d in dists) + " |")
        out.append("|---|" + "---:|" * len(dists))
        for r in pdq["rows"]:
            cells = " | ".join(f"{r['by_distance'][d]:.0%}" for d in dists)
            out.append(f"| {r['tool']} | {cells} |")
        out += ["", "Ratios:", ""]
        bastion, te = pdq["rows"][0], pdq["rows"][-1]
        out.append(
            f"- Bastion bank vs ThreatExchange, batched: "
            f"{bastion['lookups_per_s_batched'] / te['lookups_per_s_batched']:.1f}x; one at a "
            f"time: {bastion['lookups_per_s_single'] / te['lookups_per_s_single']:.1f}x."
        )
    emb = result.get("embeddings")
    if emb:
        out += [
            "",
            f"Embedding bank of {emb['vectors']:,} x {emb['dim']} (grown from {emb['real_texts']:,} "
            f"real embeddings); {emb['queries']:,} real held-out queries; top {emb['k']}.",
            "",
            "| tool | build s | memory MB | queries/s batched | queries/s one at a time "
            "| recall@10 vs exact |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in emb["rows"]:
            out.append(
                f"| {r['tool']} | {r['build_s']:.0f} | {r['memory_mb']:,.0f} | "
                f"{r['qps_batched']:,.0f} | {fmt(r['qps_single'])} | {r['recall_at_10']:.3f} |"
            )
        st, hnsw = emb["rows"][0], emb["rows"][1]
        out += [
            "",
            f"- HNSW vs semantic_search, batched: {hnsw['qps_batched'] / st['qps_batched']:.1f}x.",
        ]
    return "\n".join(out) + "\n"


def print_tables(result: dict[str, Any]) -> None:
    pdq = result.get("pdq")
    if pdq:
        table = Table(title=f"PDQ bank, {pdq['hashes']:,} hashes")
        for col in ("tool", "build s", "memory MB", "batched/s", "single/s", "found ≤31", ">31"):
            table.add_column(col, justify="left" if col == "tool" else "right")
        for r in pdq["rows"]:
            table.add_row(
                r["tool"],
                f"{r['build_s']:.1f}",
                f"{r['memory_mb']:,.0f}",
                f"{r['lookups_per_s_batched']:,.0f}",
                f"{r['lookups_per_s_single']:,.0f}",
                f"{r['within_threshold']:.1%}",
                f"{r['beyond_threshold_returned']:.1%}",
            )
        console.print(table)
    emb = result.get("embeddings")
    if emb:
        table = Table(title=f"Embedding bank, {emb['vectors']:,} x {emb['dim']}")
        for col in ("tool", "build s", "memory MB", "batched q/s", "single q/s", "recall@10"):
            table.add_column(col, justify="left" if col == "tool" else "right")
        for r in emb["rows"]:
            table.add_row(
                r["tool"],
                f"{r['build_s']:.0f}",
                f"{r['memory_mb']:,.0f}",
                f"{r['qps_batched']:,.0f}",
                fmt(r["qps_single"]),
                f"{r['recall_at_10']:.3f}",
            )
        console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pdq", type=int, default=1_000_000)
    parser.add_argument("--seeds", type=int, default=1_000)
    parser.add_argument("--lookups", type=int, default=10_000)
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--skip-pdq", action="store_true")
    parser.add_argument("--skip-embeddings", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--root", default=None, help="the shared datasets (default: $BASTION_DATASETS)"
    )
    parser.add_argument("--out", default="bench/out/bank_scale.json")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    result: dict[str, Any] = {
        "meta": {
            "date": time.strftime("%Y-%m-%d"),
            "machine": machine(),
            "cpu_count": os.cpu_count(),
            "load_average_before": list(os.getloadavg()),
            "seed": args.seed,
        }
    }
    if not args.skip_pdq:
        result["pdq"] = bench_pdq(args, rng)
        print_tables({"pdq": result["pdq"]})
    if not args.skip_embeddings:
        result["embeddings"] = bench_embeddings(args, rng)
        print_tables({"embeddings": result["embeddings"]})
    result["meta"]["load_average_after"] = list(os.getloadavg())
    json_path, md_path = write_result(result, args.out, markdown(result))
    console.print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
