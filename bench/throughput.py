"""Benchmark: text moderation throughput on 2 cores, short posts and 512-token texts, three paths.

Usage:
    python bench/throughput.py [--short 4000] [--long 200] [--rounds 3] [--threads 2] [--root DIR]

Paths, measured in one process and interleaved (plain, default, torch, plain, default, ... for
`--rounds` rounds; the median items/s of each path is reported), after one warm-up call each:

* **plain**: `SentenceTransformer(...).encode(texts, batch_size=64, normalize_embeddings=True)`,
  fp32 PyTorch, the bundled all-MiniLM-L6-v2; one truncated encode (256 tokens) per text and
  nothing else: no policy, no verdict.
* **default**: `Moderator("openai").moderate(texts)`, what Bastion runs by default: the int8
  ONNX encoder, the trained head in ONNX, zero-shot blend, calibration, policy thresholds and a
  Verdict per item.
* **torch**: `Moderator("openai", runtime="torch").moderate(texts)`: the same model on PyTorch.

Short texts are real tweets (Davidson et al., MIT, ship-ok), deduplicated after Bastion's text
normalisation. Long texts join other tweets of the same set (those of at most 64 tokens) until
the encoder's tokenizer counts 512 tokens (special tokens included), then drop words to fit. Bastion scores a text of more than 40 words as a whole *and*
in sentence windows (`bastion.models.windows`), so on long texts it encodes many windows per item
where plain encodes one truncated window: the table says how many.

Every measured Bastion run gets a fresh embedding LRU (same encoder, empty cache), so repeated
rounds cannot hit it; the hits of each run are recorded (they stay 0 unless two items share a
window). Accuracy: Davidson's binary label against the any-category score (the max of the
category scores, as `bastion eval` does) of the default and the torch path, from the last round's
verdicts, plus how far the two paths' scores and flags are apart. Each run also records the CPU
that *other* processes used meanwhile (machine-wide busy time minus this process's, in cores), so
a run spoiled by someone else's job shows in the table. Writes bench/out/throughput.json (and .md).
The whole run takes about 8 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence
from datetime import date
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bastion.detectors.trained import TrainedDetector
from bastion.eval.datasets import load_dataset
from bastion.eval.metrics import binary_metrics, format_metric
from bastion.items import Item
from bastion.models.encoder import SHIPPED_ONNX_ENCODER, default_encoder_path
from bastion.models.onnx_runtime import TOKENIZER_FILE, LruEmbeddings, OnnxTextEncoder
from bastion.models.scoring import any_category
from bastion.moderator import Moderator, Verdict
from common import (  # bench/ is on sys.path when a benchmark runs
    git,
    machine,
    versions,
    write_result,
)

DATASET = "davidson"
POLICY = "openai"
LONG_TOKENS = 512
LONG_PART_TOKENS = 64
PLAIN_BATCH = 64
WARM_UP = 64
GOAL_RATIO = {"short": 8.0, "long": 2.0}  # issue 22: the default path against plain, same run
GOAL_AUPRC_DIFF = 0.005
PATHS = ("plain", "default", "torch")
LABELS = {
    "plain": "plain sentence-transformers (fp32 torch)",
    "default": "Bastion default (ONNX int8)",
    "torch": "Bastion runtime=torch",
}


# --------------------------------------------------------------------------- text sets


def tokenizer() -> Any:
    """The encoder's tokenizer (the shipped export's), counting [CLS] and [SEP], no truncation."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(SHIPPED_ONNX_ENCODER / TOKENIZER_FILE))
    tok.no_truncation()
    tok.no_padding()
    return tok


def short_and_long(
    root: str | None, n_short: int, n_long: int, seed: int = 0
) -> tuple[list[str], np.ndarray, list[str], list[int]]:
    """Distinct short posts with their binary labels, and long texts built from *other* posts."""
    data = load_dataset(DATASET, root=root)
    seen: set[str] = set()
    keep = []
    for i, text in enumerate(data.texts):
        key = Item(text=text).scoring_text
        if key.strip() and key not in seen:
            seen.add(key)
            keep.append(i)
    order = np.random.default_rng(seed).permutation(keep)
    if len(order) < n_short:
        raise SystemExit(f"{DATASET} has only {len(order)} distinct texts, {n_short} asked for")
    short = [data.texts[i] for i in order[:n_short]]
    labels = data.binary[order[:n_short]]

    tok = tokenizer()

    def tokens(text: str) -> int:
        return len(tok.encode(text).ids)

    # Posts of more than LONG_PART_TOKENS tokens (runs of emoji entities, mostly) are left out, so
    # trimming the last post word by word lands close to LONG_TOKENS.
    rest = (t.strip() for t in (data.texts[i] for i in order[n_short:]))
    rest = (t for t in rest if tokens(t) <= LONG_PART_TOKENS)
    long, lengths = [], []
    for _ in range(n_long):
        parts: list[str] = []
        while tokens(" ".join(parts)) < LONG_TOKENS:
            try:
                parts.append(next(rest))
            except StopIteration:
                raise SystemExit(f"{DATASET} ran out of texts for {n_long} long texts") from None
        words = " ".join(parts).split()
        while tokens(" ".join(words)) > LONG_TOKENS:
            words.pop()
        long.append(" ".join(words))
        lengths.append(tokens(long[-1]))
    return short, labels, long, lengths


def encoder_tokens(texts: Sequence[str], moderator: Moderator, max_length: int) -> dict[str, float]:
    """Mean tokens per item the encoder reads: plain reads each text once, truncated; Bastion
    reads every window of the normalised text (`ZeroShotDetector.windows`), each truncated."""
    detector = moderator.detectors[0]
    assert isinstance(detector, TrainedDetector)
    tok = tokenizer()

    def read(batch: list[str]) -> int:
        return sum(min(len(e.ids), max_length) for e in tok.encode_batch(batch))

    bastion = [read(detector.zero_shot.windows(Item(text=t).scoring_text)[0]) for t in texts]
    return {
        "plain": round(read(list(texts)) / len(texts), 1),
        "bastion": round(float(np.mean(bastion)), 1),
    }


# --------------------------------------------------------------------------- timing


def fresh_cache(moderator: Moderator) -> LruEmbeddings:
    """Give the moderator's text detector an empty embedding LRU over the same encoder."""
    detector = moderator.detectors[0]
    if not isinstance(detector, TrainedDetector) or not isinstance(
        detector.zero_shot.encoder, LruEmbeddings
    ):
        raise SystemExit(
            f"expected the trained detector over an LRU, got {moderator.model_version}"
        )
    cache = LruEmbeddings(detector.zero_shot.encoder.encoder)
    detector.zero_shot.encoder = cache
    detector.encoder = cache
    return cache


def cpu_seconds() -> tuple[float, float, float]:
    """CPU seconds so far: busy on the whole machine, of this process, and stolen by the host."""
    import psutil

    every = psutil.cpu_times()
    own = psutil.Process().cpu_times()
    busy = every.user + every.nice + every.system + every.irq + every.softirq
    return busy, own.user + own.system, getattr(every, "steal", 0.0)


def measure(
    texts: Sequence[str],
    plain: Any,
    moderators: dict[str, Moderator],
    rounds: int,
    console: Console,
    label: str,
) -> tuple[dict[str, dict[str, Any]], dict[str, list[Verdict]]]:
    """Interleaved rounds of every path on `texts`; per path the runs and the last verdicts."""

    def plain_run(batch: Sequence[str]) -> Any:
        return plain.encode(list(batch), batch_size=PLAIN_BATCH, normalize_embeddings=True)

    for moderator in moderators.values():  # warm-up: first calls allocate and JIT
        fresh_cache(moderator)
        moderator.moderate(list(texts[:WARM_UP]))
    plain_run(texts[:WARM_UP])

    runs: dict[str, dict[str, Any]] = {
        p: {
            "seconds": [],
            "items_per_s": [],
            "cache_hits": [],
            "encodes": [],
            "other_cpu_cores": [],
            "steal_cores": [],
        }
        for p in PATHS
    }
    verdicts: dict[str, list[Verdict]] = {}
    for r in range(rounds):
        for path in PATHS:
            cache = fresh_cache(moderators[path]) if path != "plain" else None
            cpu_before = cpu_seconds()
            if path == "plain":
                start = time.perf_counter()
                plain_run(texts)
                seconds = time.perf_counter() - start
                hits, encodes = 0, len(texts)
            else:
                assert cache is not None
                start = time.perf_counter()
                verdicts[path] = moderators[path].moderate(texts)
                seconds = time.perf_counter() - start
                hits, encodes = cache.hits, cache.misses
            busy, own, steal = (b - a for a, b in zip(cpu_before, cpu_seconds(), strict=True))
            row = runs[path]
            row["other_cpu_cores"].append(round(max(0.0, busy - own) / seconds, 2))
            row["steal_cores"].append(round(steal / seconds, 2))
            row["seconds"].append(round(seconds, 3))
            row["items_per_s"].append(round(len(texts) / seconds, 1))
            row["cache_hits"].append(hits)
            row["encodes"].append(encodes)
            console.print(
                f"{label} round {r + 1}/{rounds} {path:8s} {len(texts) / seconds:8.1f} items/s "
                f"({seconds:.1f} s, {encodes / len(texts):.2f} encoder inputs/item, {hits} hits, "
                f"other processes {row['other_cpu_cores'][-1]:.2f} cores)"
            )
    return runs, verdicts


# --------------------------------------------------------------------------- accuracy


def score_matrix(verdicts: Sequence[Verdict], ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    scores = np.full((len(verdicts), len(ids)), np.nan)
    flagged = np.zeros(len(verdicts), dtype=bool)
    for i, v in enumerate(verdicts):
        if v.error:
            continue
        scores[i] = [v.category_scores[c] for c in ids]
        flagged[i] = v.flagged
    return scores, flagged


def agreement(a: list[Verdict], b: list[Verdict], ids: Sequence[str]) -> dict[str, float]:
    sa, fa = score_matrix(a, ids)
    sb, fb = score_matrix(b, ids)
    diff = np.abs(sa - sb)
    return {
        "max_abs_category_score_diff": round(float(np.nanmax(diff)), 4),
        "mean_abs_category_score_diff": round(float(np.nanmean(diff)), 5),
        "flagged_agreement": round(float((fa == fb).mean()), 4),
        "flagged_default": int(fa.sum()),
        "flagged_torch": int(fb.sum()),
    }


def accuracy(
    verdicts: dict[str, list[Verdict]], labels: np.ndarray, moderator: Moderator
) -> dict[str, Any]:
    ids = moderator.policy.category_ids
    out: dict[str, Any] = {}
    for path in ("default", "torch"):
        scores, flagged = score_matrix(verdicts[path], ids)
        m = binary_metrics(
            labels, any_category(scores), float(moderator.thresholds.min()), flagged=flagged
        )
        out[path] = m.model_dump()
    auprc = (out["default"]["auprc"], out["torch"]["auprc"])
    out["auprc_diff"] = round(auprc[0] - auprc[1], 4) if None not in auprc else None
    out.update(agreement(verdicts["default"], verdicts["torch"], ids))
    return out


# --------------------------------------------------------------------------- facts


def ort_threads(moderator: Moderator) -> int:
    detector = moderator.detectors[0]
    encoder = getattr(getattr(detector, "encoder", None), "encoder", None)
    if not isinstance(encoder, OnnxTextEncoder):
        raise SystemExit(f"the default path does not run ONNX: {moderator.model_version}")
    return int(encoder._session.get_session_options().intra_op_num_threads)


# --------------------------------------------------------------------------- report


def summarise(
    runs: dict[str, dict[str, Any]], n: int, short: bool, tokens: dict[str, float]
) -> list[dict[str, Any]]:
    plain = statistics.median(runs["plain"]["items_per_s"])
    rows = []
    goal_ratio = GOAL_RATIO["short" if short else "long"]
    for path in PATHS:
        ips = statistics.median(runs[path]["items_per_s"])
        ratio = ips / plain
        goal = ratio >= goal_ratio if path == "default" else None
        per_item = tokens["plain" if path == "plain" else "bastion"]
        rows.append(
            {
                "path": path,
                "items_per_s": round(ips, 1),
                "x_vs_plain": round(ratio, 2),
                "encoder_inputs_per_item": round(statistics.median(runs[path]["encodes"]) / n, 2),
                "encoder_tokens_per_item": per_item,
                "encoder_tokens_per_s": round(ips * per_item),
                "cache_hits": max(runs[path]["cache_hits"]),
                "other_cpu_cores_max": max(runs[path]["other_cpu_cores"]),
                "goal_met": goal,
                "goal_ratio": goal_ratio,
                "runs": runs[path],
            }
        )
    return rows


def goal_text(row: dict[str, Any]) -> str:
    if row["goal_met"] is None:
        return "–"
    if row["goal_met"]:
        return "yes"
    return f"no ({row['goal_ratio']:.0f}x)"


def speed_table(sets: dict[str, dict[str, Any]]) -> Table:
    table = Table(
        "text set", "path", "items/s", "x vs plain", "encoder inputs/item", "tokens/item",
        "k tokens/s", "cache hits", "other CPU", "goal met?",
        title="Text moderation throughput (median of interleaved rounds)",
    )  # fmt: skip
    for name, s in sets.items():
        for r in s["rows"]:
            table.add_row(
                name, LABELS[r["path"]], f"{r['items_per_s']:.1f}", f"{r['x_vs_plain']:.2f}",
                f"{r['encoder_inputs_per_item']:.2f}", f"{r['encoder_tokens_per_item']:.0f}",
                f"{r['encoder_tokens_per_s'] / 1000:.1f}", str(r["cache_hits"]),
                f"{r['other_cpu_cores_max']:.2f}", goal_text(r),
            )  # fmt: skip
    return table


def accuracy_table(acc: dict[str, Any], long_agreement: dict[str, Any]) -> Table:
    table = Table(
        "text set", "rows", "prevalence", "AUPRC default", "AUPRC torch", "diff",
        "max |Δ score|", "flag agreement", "goal met?",
        title=f"Default (ONNX int8) vs torch: binary any-category on {DATASET}",
    )  # fmt: skip
    d, t = acc["default"], acc["torch"]
    diff = acc["auprc_diff"]
    table.add_row(
        "short", str(d["n"]), format_metric(d["prevalence"]), format_metric(d["auprc"]),
        format_metric(t["auprc"]), f"{diff:+.4f}" if diff is not None else "–",
        f"{acc['max_abs_category_score_diff']:.4f}", f"{acc['flagged_agreement']:.2%}",
        "yes" if diff is not None and abs(diff) <= GOAL_AUPRC_DIFF else "no",
    )  # fmt: skip
    table.add_row(
        "long (no labels)", "–", "–", "–", "–", "–",
        f"{long_agreement['max_abs_category_score_diff']:.4f}",
        f"{long_agreement['flagged_agreement']:.2%}", "–",
    )  # fmt: skip
    return table


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    lines = [
        f"Date {meta['date']}; {meta['machine']}; {meta['cpu_count']} CPUs; torch threads "
        f"{meta['torch_threads']}, ONNX Runtime intra-op threads {meta['ort_threads']}; load "
        f"average {' '.join(f'{x:.2f}' for x in meta['load_average_before'])} before, "
        f"{' '.join(f'{x:.2f}' for x in meta['load_average_after'])} after; git {meta['git']}; "
        f"model {meta['model_version']}; {meta['rounds']} interleaved rounds, median.",
        "",
        "| text set | path | items/s | x vs plain | encoder inputs/item | tokens/item | k tokens/s "
        "| cache hits | other CPU (max) | goal met? |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, s in result["sets"].items():
        for r in s["rows"]:
            lines.append(
                f"| {name} | {LABELS[r['path']]} | {r['items_per_s']:.1f} | "
                f"{r['x_vs_plain']:.2f} | {r['encoder_inputs_per_item']:.2f} | "
                f"{r['encoder_tokens_per_item']:.0f} | {r['encoder_tokens_per_s'] / 1000:.1f} | "
                f"{r['cache_hits']} | {r['other_cpu_cores_max']:.2f} | {goal_text(r)} |"
            )
    acc, long_acc = result["accuracy"], result["sets"]["long"]["agreement"]
    d, t = acc["default"], acc["torch"]
    diff = acc["auprc_diff"]
    ok = "yes" if diff is not None and abs(diff) <= GOAL_AUPRC_DIFF else "no"
    lines += [
        "",
        "| text set | rows | prevalence | AUPRC default | AUPRC torch | diff | max abs score diff "
        "| mean abs score diff | flag agreement | goal met? |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| short ({DATASET}) | {d['n']} | {format_metric(d['prevalence'])} | "
        f"{format_metric(d['auprc'])} | {format_metric(t['auprc'])} | "
        f"{diff:+.4f} | {acc['max_abs_category_score_diff']:.4f} | "
        f"{acc['mean_abs_category_score_diff']:.5f} | {acc['flagged_agreement']:.2%} | {ok} |",
        f"| long (no labels) | {result['sets']['long']['texts']} | – | – | – | – | "
        f"{long_acc['max_abs_category_score_diff']:.4f} | "
        f"{long_acc['mean_abs_category_score_diff']:.5f} | {long_acc['flagged_agreement']:.2%} "
        "| – |",
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--short", type=int, default=4000, help="distinct short posts")
    parser.add_argument("--long", type=int, default=200, help=f"texts of ~{LONG_TOKENS} tokens")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime threads")
    parser.add_argument("--root", default=None, help="shared datasets folder")
    parser.add_argument("--out", default="bench/out/throughput.json")
    args = parser.parse_args()
    console = Console(width=160)
    load_before = os.getloadavg()

    import torch
    from sentence_transformers import SentenceTransformer

    short, labels, long, long_tokens = short_and_long(args.root, args.short, args.long)
    console.print(
        f"{len(short)} distinct short posts from {DATASET}; {len(long)} long texts of "
        f"{min(long_tokens)}-{max(long_tokens)} tokens (mean {np.mean(long_tokens):.0f})"
    )
    plain = SentenceTransformer(str(default_encoder_path()), device="cpu", local_files_only=True)
    moderators = {"default": Moderator(POLICY), "torch": Moderator(POLICY, runtime="torch")}
    torch.set_num_threads(args.threads)  # after loading: loading sets it to os.cpu_count()
    threads = {"torch": torch.get_num_threads(), "ort": ort_threads(moderators["default"])}
    if threads["ort"] != args.threads:
        console.print(
            f"[yellow]ONNX Runtime runs {threads['ort']} intra-op threads (os.cpu_count()), "
            f"not {args.threads}[/yellow]"
        )
    console.print(
        f"default: {moderators['default'].model_version}; torch: "
        f"{moderators['torch'].model_version}; plain max_seq_length {plain.max_seq_length}; "
        f"threads {threads}"
    )

    max_length = int(plain.max_seq_length or 512)  # 256: both paths truncate there
    sets: dict[str, dict[str, Any]] = {}
    all_verdicts = {}
    for name, texts in (("short", short), ("long", long)):
        tokens = encoder_tokens(texts, moderators["default"], max_length)
        runs, verdicts = measure(texts, plain, moderators, args.rounds, console, name)
        all_verdicts[name] = verdicts
        sets[name] = {
            "texts": len(texts),
            "rows": summarise(runs, len(texts), name == "short", tokens),
        }
    sets["short"]["chars_mean"] = round(float(np.mean([len(t) for t in short])), 1)
    sets["long"]["tokens"] = {
        "min": min(long_tokens),
        "mean": round(float(np.mean(long_tokens)), 1),
        "max": max(long_tokens),
    }
    ids = moderators["default"].policy.category_ids
    sets["long"]["agreement"] = agreement(
        all_verdicts["long"]["default"], all_verdicts["long"]["torch"], ids
    )
    acc = accuracy(all_verdicts["short"], labels, moderators["default"])
    load_after = os.getloadavg()

    console.print(speed_table(sets))
    console.print(accuracy_table(acc, sets["long"]["agreement"]))
    result = {
        "meta": {
            "date": date.today().isoformat(),
            "machine": machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": threads["torch"],
            "ort_threads": threads["ort"],
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
            "git": git(),
            "versions": versions(
                "bastion", "torch", "sentence-transformers", "onnxruntime", "tokenizers"
            ),
            "dataset": DATASET,
            "policy": POLICY,
            "model_version": moderators["default"].model_version,
            "torch_model_version": moderators["torch"].model_version,
            "rounds": args.rounds,
            "plain_batch_size": PLAIN_BATCH,
            "plain_max_seq_length": plain.max_seq_length,
            "goals": {
                "x_vs_plain_short": GOAL_RATIO["short"],
                "x_vs_plain_long": GOAL_RATIO["long"],
                "auprc_diff": GOAL_AUPRC_DIFF,
            },
        },
        "sets": sets,
        "accuracy": acc,
    }
    out, md = write_result(result, args.out, markdown(result))
    console.print(f"wrote {out} and {md}")


if __name__ == "__main__":
    main()
