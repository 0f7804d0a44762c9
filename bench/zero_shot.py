"""Benchmark: binary AUPRC of the zero-shot detector on every shared dataset, per built-in policy.

Usage:
    python bench/zero_shot.py [--limit 2000] [--policies openai,mlcommons] [--root ../shared/datasets]
    python bench/zero_shot.py --model default --policies openai   # the shipped default model

Prints a table and writes bench/out/zero_shot.json. Sets that contain only violating rows
(AILuminate, HarmBench, AdvBench, StrongREJECT, SimpleSafetyTests) are paired with the safe rows of
WildGuard (benign prompts written to a chatbot), because AUPRC needs negatives to rank against; the
prevalence column says what a random ranking would score.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bastion.eval.datasets import ADAPTERS, label_map_for, load_dataset
from bastion.eval.metrics import format_metric
from bastion.eval.runner import evaluate
from bastion.moderator import Moderator
from common import machine  # bench/ is on sys.path when a benchmark runs

NEGATIVES = "wildguard"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=2000, help="rows per dataset (0 = all)")
    parser.add_argument("--policies", default="openai,mlcommons")
    parser.add_argument("--datasets", default=",".join(ADAPTERS))
    parser.add_argument("--root", default=None)
    parser.add_argument("--out", default="bench/out/zero_shot.json")
    parser.add_argument(
        "--model", default="zero-shot", help="'zero-shot', 'default' or a model directory"
    )
    args = parser.parse_args()
    console = Console(width=160)
    rows = []
    for policy in args.policies.split(","):
        start = time.perf_counter()
        moderator = Moderator(policy, model=args.model)
        build_s = time.perf_counter() - start
        with Progress(console=console, transient=True) as progress:
            for name in args.datasets.split(","):
                data = load_dataset(name, root=args.root, limit=args.limit or None)
                if data.all_positive:
                    data = data.with_negatives(
                        load_dataset(NEGATIVES, root=args.root, limit=args.limit or None)
                    )
                task = progress.add_task(f"{policy}: {data.name}", total=len(data))
                run = evaluate(
                    moderator,
                    data,
                    label_map_for(name, moderator.policy.policy.id),
                    progress=lambda n, t=task: progress.advance(t, n),
                )
                m = run.result.binary
                rows.append(
                    {
                        "policy": policy,
                        "dataset": data.name,
                        "use": data.use,
                        "rows": m.n,
                        "prevalence": m.prevalence,
                        "auprc": m.auprc,
                        "roc_auc": m.roc_auc,
                        "recall_at_5pct_fpr": m.recall_at_5pct_fpr,
                        "precision": m.precision,
                        "recall": m.recall,
                        "items_per_second": run.result.items_per_second,
                        "per_category_auprc": {
                            c: cm.auprc for c, cm in run.result.per_category.items()
                        },
                    }
                )
        console.print(f"{policy}: encoder load + fit {build_s:.1f} s ({moderator.model_version})")
    table = Table(
        "policy", "dataset", "rows", "prevalence", "AUPRC", "ROC-AUC", "R@5%FPR", "P", "R", "items/s",
        title=f"Binary (any category) on the shared datasets, model {args.model}",
    )  # fmt: skip
    for r in rows:
        table.add_row(
            r["policy"], r["dataset"], str(r["rows"]), format_metric(r["prevalence"]), format_metric(r["auprc"]),
            format_metric(r["roc_auc"]), format_metric(r["recall_at_5pct_fpr"]), format_metric(r["precision"]), format_metric(r["recall"]),
            f"{r['items_per_second']:.0f}",
        )  # fmt: skip
    console.print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": date.today().isoformat(),
        "limit_per_dataset": args.limit,
        "model": args.model,
        "machine": machine(),
        "negatives_for_all_positive_sets": NEGATIVES,
    }
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2), encoding="utf-8")
    md = out.with_suffix(".md")
    md.write_text(_markdown(rows, meta), encoding="utf-8")
    console.print(f"wrote {out} and {md}")


def _markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        f"Date {meta['date']}; {meta['machine']}; model {meta['model']}; at most {meta['limit_per_dataset']} rows per set "
        f"(stratified sample, seed 0); all-positive sets get the safe rows of "
        f"{meta['negatives_for_all_positive_sets']} as negatives.",
        "",
        "| policy | dataset | use | rows | prevalence | AUPRC | ROC-AUC | recall@5%FPR | precision | recall | items/s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['policy']} | {r['dataset']} | {r['use']} | {r['rows']} | {format_metric(r['prevalence'])} | "
            f"**{format_metric(r['auprc'])}** | {format_metric(r['roc_auc'])} | {format_metric(r['recall_at_5pct_fpr'])} | "
            f"{format_metric(r['precision'])} | {format_metric(r['recall'])} | {r['items_per_second']:.0f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
