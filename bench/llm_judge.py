"""Benchmark: the LLM policy judge alone and as the Moderator's cascade stage, on a shared dev set.

Usage:
    python bench/llm_judge.py [--backend local] [--n 300] [--top-k 2] [--band 0.2,0.8]
    python bench/llm_judge.py --backend http://localhost:8000/v1 --llm-model MODEL   # vLLM etc.

Dev set: ToxicChat (user prompts to a chatbot, human toxicity labels; CC-BY-NC-4.0, dev-only:
used here for evaluation only). It is the one shared set the shipped default model was *not*
trained on, so the cheap stage is measured on data new to it. `--n` prompts are drawn
(seeded) with `--positive-share` of them toxic, so that AUPRC rests on enough positives.

The cheap stage is the shipped default model on the openai pack (`Moderator("openai")`). For
each item the judge reads the `--top-k` categories the cheap stage scores highest (asking about
all 13 would cost 13 calls per item); the judge's binary score is its highest P(violating) over
those. The cascade sends only the cells whose cheap score is inside the uncertain band, fuses
the judge's answer in log-odds (weight 1, and the weight fitted on one half and measured on the
other), and leaves every other cell as it was: exactly what `Moderator(cascade=...)` does,
computed from the same judgements so nothing is paid for twice.

Reported: AUPRC and F1 of the cheap stage, the judge alone and the cascade; the share of items
(and cells) the cascade sends to the LLM; failures; latency and tokens per item and per
judgement. `--generate-sample K` also asks the judge for K free JSON judgements (generate mode)
and reports how many were schema-valid, repaired, or failed.

Writes bench/out/llm_judge.json (and .md).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bastion.eval.datasets import load_dataset
from bastion.eval.metrics import binary_metrics, format_metric
from bastion.items import Item
from bastion.judge import JudgeResult, LLMJudge, backend_from_spec
from bastion.judge.cascade import LLMCascade
from bastion.moderator import Moderator
from common import run_meta, write_result  # bench/ is on sys.path when a benchmark runs

BATCH = 16


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="local", help="'local', 'local:DIR' or a base URL")
    parser.add_argument("--llm-model", default=None)
    parser.add_argument("--mode", default="auto", choices=["auto", "generate", "score"])
    parser.add_argument("--dataset", default="toxicchat")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--positive-share", type=float, default=1 / 3)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--band", default="0.2,0.8")
    parser.add_argument("--generate-sample", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--model", default="default", help="the cheap stage's model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=None)
    parser.add_argument("--out", default="bench/out/llm_judge.json")
    args = parser.parse_args(argv)
    console = Console(width=140)
    load_before = os.getloadavg()
    band = tuple(float(x) for x in args.band.split(","))
    assert len(band) == 2

    data = load_dataset(args.dataset, root=args.root)
    texts, labels = _sample(data.texts, data.binary, args.n, args.positive_share, args.seed)
    console.print(f"{args.dataset}: {len(texts)} items, {int(labels.sum())} violating")

    start = time.perf_counter()
    moderator = Moderator("openai", model=args.model)
    verdicts = moderator.moderate(texts)
    cheap_s = time.perf_counter() - start
    ids = moderator.policy.category_ids
    cheap = np.array([[v.category_scores[c] for c in ids] for v in verdicts])
    top = np.argsort(-cheap, axis=1)[:, : args.top_k]
    cells = np.zeros_like(cheap, dtype=bool)
    np.put_along_axis(cells, top, True, axis=1)

    backend = backend_from_spec(
        args.backend, model=args.llm_model, timeout_s=args.timeout, concurrency=args.concurrency
    )
    judge = LLMJudge(moderator.policy, backend, mode=args.mode)
    pairs = [(i, c) for i, c in zip(*np.nonzero(cells), strict=True)]
    results: list[JudgeResult] = []
    start = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"judging ({backend.name}, {judge.mode})", total=len(pairs))
        for k in range(0, len(pairs), BATCH):
            chunk = pairs[k : k + BATCH]
            results += judge.judge_pairs([(Item(text=texts[i]), ids[c]) for i, c in chunk])
            progress.advance(task, len(chunk))
    judge_s = time.perf_counter() - start
    judged = np.full(cheap.shape, np.nan)
    for (i, c), r in zip(pairs, results, strict=True):
        judged[i, c] = r.probability

    result = {
        "benchmark": "llm_judge",
        **run_meta(load_before),
        "backend": backend.name,
        "mode": judge.mode,
        "dataset": args.dataset,
        "n_items": len(texts),
        "positives": int(labels.sum()),
        "top_k": args.top_k,
        "band": list(band),
        "cheap_model": moderator.model_version,
        "cheap_seconds": round(cheap_s, 2),
        "judge_seconds": round(judge_s, 2),
        **_judge_costs(results, len(texts)),
        **_quality(cheap, judged, cells, labels, moderator.thresholds, band, judge, args.seed),
    }
    if args.generate_sample:
        result["generate"] = _generate_sample(moderator, backend, texts, top, args)
    _print(console, result)
    path, _ = write_result(result, args.out, _markdown(result))
    console.print(f"wrote {path}")
    return result


def _sample(
    texts: list[str], binary: np.ndarray, n: int, positive_share: float, seed: int
) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    unique = [i for i, t in enumerate(texts) if t.strip() and not (t in seen or seen.add(t))]  # type: ignore[func-returns-value]
    pos = [i for i in unique if binary[i] == 1]
    neg = [i for i in unique if binary[i] == 0]
    n_pos = min(len(pos), round(n * positive_share))
    chosen = list(rng.choice(pos, n_pos, replace=False)) + list(
        rng.choice(neg, min(len(neg), n - n_pos), replace=False)
    )
    rng.shuffle(chosen)
    return [texts[i] for i in chosen], np.array([binary[i] for i in chosen], dtype=float)


def _judge_costs(results: list[JudgeResult], n_items: int) -> dict[str, Any]:
    failed = [r for r in results if r.judgement is None]
    prompt = sum(r.usage.prompt_tokens for r in results)
    completion = sum(r.usage.completion_tokens for r in results)
    latency = sum(r.usage.latency_s for r in results)
    return {
        "judgements": len(results),
        "failed": len(failed),
        "failure_examples": sorted({(r.error or "")[:160] for r in failed})[:5],
        "latency_s_per_item": round(latency / n_items, 4),
        "latency_s_per_judgement": round(latency / max(1, len(results)), 4),
        "prompt_tokens_per_item": round(prompt / n_items, 1),
        "completion_tokens_per_item": round(completion / n_items, 2),
        "calls": sum(r.usage.calls for r in results),
        "retries": sum(r.usage.retries for r in results),
    }


def _quality(
    cheap: np.ndarray,
    judged: np.ndarray,
    cells: np.ndarray,
    labels: np.ndarray,
    thresholds: np.ndarray,
    band: tuple[float, ...],
    judge: LLMJudge,
    seed: int,
) -> dict[str, Any]:
    cascade = LLMCascade(judge, band=(band[0], band[1]))
    routed = cascade.route(cheap) & cells & np.isfinite(judged)

    def fused_with(weight: float) -> np.ndarray:
        cascade.weight = weight
        return np.where(routed, cascade.fuse(cheap, judged), cheap)

    def metrics(scores: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
        flagged = (scores[rows] >= thresholds).any(axis=1)
        m = binary_metrics(labels[rows], scores[rows].max(axis=1), 0.5, flagged=flagged)
        return {
            "n": m.n,
            "auprc": m.auprc,
            "f1": m.f1,
            "precision": m.precision,
            "recall": m.recall,
        }

    judge_binary = np.where(cells, judged, np.nan)
    has_judgement = np.isfinite(judge_binary).any(axis=1)
    judge_scores = np.nanmax(np.where(np.isfinite(judge_binary), judge_binary, -1.0), axis=1)
    everything = np.ones(len(labels), dtype=bool)
    jm = binary_metrics(labels[has_judgement], judge_scores[has_judgement], 0.5)
    # The weight is fitted on one half's routed cells (each cell takes its item's label: a
    # category the cheap stage suspected, on an item people called toxic) and measured on the other.
    half = np.random.default_rng(seed + 1).permutation(len(labels)) < len(labels) // 2
    rows, cols = np.nonzero(routed & half[:, None])
    weight = 1.0
    if len(rows):
        fit = LLMCascade(judge, band=(band[0], band[1]))
        weight = fit.fit_weight(cheap[rows, cols], judged[rows, cols], labels[rows]).weight
    return {
        "cheap": metrics(cheap, everything),
        "judge_alone": {
            "n": jm.n,
            "auprc": jm.auprc,
            "f1": jm.f1,
            "precision": jm.precision,
            "recall": jm.recall,
        },
        "cascade_share_items": round(float(routed.any(axis=1).mean()), 4),
        "cascade_share_cells": round(float(routed.sum() / routed.size), 4),
        "cascade_weight_1": metrics(fused_with(1.0), everything),
        "fitted_weight": weight,
        "cheap_heldout_half": metrics(cheap, ~half),
        "cascade_fitted_heldout_half": metrics(fused_with(weight), ~half),
    }


def _generate_sample(
    moderator: Moderator, backend: Any, texts: list[str], top: np.ndarray, args: Any
) -> dict[str, Any]:
    judge = LLMJudge(moderator.policy, backend, mode="generate", max_tokens=160)
    ids = moderator.policy.category_ids
    k = min(args.generate_sample, len(texts))
    results = judge.judge_pairs([(Item(text=texts[i]), ids[top[i, 0]]) for i in range(k)])
    return {
        "asked": k,
        "valid_first_time": sum(r.judgement is not None and not r.repaired for r in results),
        "valid_after_repair": sum(r.judgement is not None and r.repaired for r in results),
        "failed": sum(r.judgement is None for r in results),
        "latency_s_per_judgement": round(sum(r.usage.latency_s for r in results) / max(1, k), 3),
        "failure_examples": sorted({(r.error or "")[:160] for r in results if r.error})[:3],
    }


def _rows(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("cheap stage alone", result["cheap"]),
        (f"judge alone (top-{result['top_k']} categories)", result["judge_alone"]),
        ("cascade, weight 1", result["cascade_weight_1"]),
        ("cheap stage, held-out half", result["cheap_heldout_half"]),
        (f"cascade, fitted weight {result['fitted_weight']:g}, held-out half",
         result["cascade_fitted_heldout_half"]),
    ]  # fmt: skip


def _print(console: Console, result: dict[str, Any]) -> None:
    table = Table("", "n", "AUPRC", "F1", "precision", "recall", title="LLM judge")
    for name, m in _rows(result):
        table.add_row(
            name,
            str(m["n"]),
            *(format_metric(m[k]) for k in ("auprc", "f1", "precision", "recall")),
        )
    console.print(table)
    console.print(
        f"backend {result['backend']} ({result['mode']}): {result['judgements']} judgements, "
        f"{result['failed']} failed; {result['latency_s_per_item']} s and "
        f"{result['prompt_tokens_per_item']} + {result['completion_tokens_per_item']} tokens "
        f"per item; cascade sends {result['cascade_share_items']:.1%} of items "
        f"({result['cascade_share_cells']:.1%} of cells) to the LLM"
    )


def _markdown(result: dict[str, Any]) -> str:
    lines = [
        f"backend `{result['backend']}` ({result['mode']}), {result['dataset']}: "
        f"{result['n_items']} items ({result['positives']} violating), band {result['band']}",
        "",
        "| | n | AUPRC | F1 | precision | recall |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, m in _rows(result):
        values = " | ".join(format_metric(m[k]) for k in ("auprc", "f1", "precision", "recall"))
        lines.append(f"| {name} | {m['n']} | {values} |")
    lines += [
        "",
        f"- judgements {result['judgements']}, failed {result['failed']}",
        f"- latency per item {result['latency_s_per_item']} s "
        f"(per judgement {result['latency_s_per_judgement']} s)",
        f"- tokens per item: {result['prompt_tokens_per_item']} prompt, "
        f"{result['completion_tokens_per_item']} completion",
        f"- cascade sends {result['cascade_share_items']:.1%} of items "
        f"({result['cascade_share_cells']:.1%} of cells) to the LLM",
    ]
    if "generate" in result:
        g = result["generate"]
        lines.append(
            f"- generate mode on {g['asked']} items: {g['valid_first_time']} valid, "
            f"{g['valid_after_repair']} valid after repair, {g['failed']} failed"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
