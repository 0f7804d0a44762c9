"""Benchmark: leave-one-dataset-out generalisation of the trained model, plus over-flagging.

Usage:
    python bench/generalisation.py [--recipe recipes/default.yaml] [--root ../shared/datasets]

For each shared dataset in the recipe, train on all the other sources (same recipe, same
hyper-parameters) and evaluate on the one left out: binary AUPRC of "any category". Left-out sets
that contain only violations are ranked against the held-out hard-negative check set
(`checksets/hard_negatives.jsonl`, never used for training), since every other safe set may be in
training. Each fold also reports the share of the check set it flags at its calibrated thresholds.
A zero-shot row (no training at all) is the baseline. Writes bench/out/generalisation.json.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bastion.detectors.zero_shot import ZeroShotDetector
from bastion.eval.datasets import ADAPTERS, load_dataset
from bastion.eval.metrics import binary_metrics, format_metric
from bastion.items import Item
from bastion.models.artifact import ModelArtifact
from bastion.models.embedding_cache import EmbeddingCache
from bastion.models.encoder import load_encoder
from bastion.models.scoring import any_category
from bastion.models.training import Recipe, assemble, fit_model
from bastion.moderator import Moderator
from bastion.policy import load_policy
from common import machine  # bench/ is on sys.path when a benchmark runs

CHECKSET = Path("checksets/hard_negatives.jsonl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="recipes/default.yaml")
    parser.add_argument("--root", default=None)
    parser.add_argument("--cache", default="bastion-data/cache/embeddings.sqlite")
    parser.add_argument("--out", default="bench/out/generalisation.json")
    args = parser.parse_args()
    console = Console(width=160)
    recipe = Recipe.from_file(args.recipe)
    policy = load_policy(recipe.policy)
    data = assemble(recipe, policy, args.root)
    hard = [json.loads(line)["text"] for line in CHECKSET.read_text("utf-8").splitlines() if line]
    encoder = load_encoder(recipe.encoder)
    cache = EmbeddingCache(args.cache, encoder)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("embedding", total=len(data.texts) + len(hard))
        X = cache.encode(data.texts, progress=lambda n: progress.advance(task, n))
        X_hard = cache.encode(hard, progress=lambda n: progress.advance(task, n))
    cache.close()
    zero_shot = ZeroShotDetector(encoder).fit(policy)
    Z = zero_shot.window_probs(X)[0]

    # Baseline: zero-shot, on the same left-out sets.
    zero = Moderator(policy, model="zero-shot")
    rows = []
    names = [s.name for s in data.sources]
    for k, name in enumerate(names):
        if name not in ADAPTERS:
            continue  # only shared datasets are left out; written-for-Bastion sources always train
        start = time.perf_counter()
        test = data.source == k
        train_rows = np.flatnonzero(~test)
        fold = data.subset(train_rows)
        model = fit_model(
            recipe, policy, fold, X[train_rows], Z[train_rows], encoder.name, encoder.dim
        )
        thresholds = np.array([model.manifest.thresholds[c] for c in policy.category_ids])

        def score(emb: np.ndarray, m: ModelArtifact = model) -> np.ndarray:
            return m.predict_proba(emb, zero_shot.window_probs(emb)[0])

        y = data.binary()[test]
        s_test = score(X[test])
        texts = [data.texts[i] for i in np.flatnonzero(test)]
        if np.nansum(y) == 0:
            # Its violations carry no category (binary-only set, e.g. DICES): score the whole set
            # against its own binary labels instead.
            own = load_dataset(name, root=args.root)
            known = np.isfinite(own.binary)
            texts = [t for t, k in zip(own.texts, known, strict=True) if k]
            y = own.binary[known]
            enc_cache = EmbeddingCache(args.cache, encoder)
            s_test = score(enc_cache.encode(texts))
            enc_cache.close()
        s_hard = score(X_hard)
        if np.nanmin(y) == 1:  # only violations: rank them against the check set
            y = np.r_[y, np.zeros(len(hard))]
            s_all = np.vstack([s_test, s_hard])
            texts = texts + hard
        else:
            s_all = s_test
        m = binary_metrics(y, any_category(s_all), 0.5, flagged=(s_all >= thresholds).any(axis=1))
        zs = np.array(
            [
                [v.category_scores[c] for c in policy.category_ids]
                for v in zero.moderate([Item(t) for t in texts])
            ]
        )
        mz = binary_metrics(y, any_category(zs), 0.5)
        rows.append(
            {
                "left_out": name,
                "rows": m.n,
                "prevalence": m.prevalence,
                "auprc": m.auprc,
                "roc_auc": m.roc_auc,
                "recall_at_5pct_fpr": m.recall_at_5pct_fpr,
                "zero_shot_auprc": mz.auprc,
                "checkset_flag_rate": float((s_hard >= thresholds).any(axis=1).mean()),
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
        console.print(f"left out {name}: AUPRC {m.auprc} (zero-shot {mz.auprc})")
    table = Table(
        "left out", "rows", "prevalence", "AUPRC", "zero-shot AUPRC", "ROC-AUC", "R@5%FPR",
        "check-set flagged", title="Leave-one-dataset-out (train on the others)",
    )  # fmt: skip
    for r in rows:
        table.add_row(
            r["left_out"], str(r["rows"]), format_metric(r["prevalence"]), format_metric(r["auprc"]),
            format_metric(r["zero_shot_auprc"]), format_metric(r["roc_auc"]), format_metric(r["recall_at_5pct_fpr"]),
            f"{100 * r['checkset_flag_rate']:.1f} %",
        )  # fmt: skip
    console.print(table)
    meta = {
        "date": date.today().isoformat(),
        "recipe": args.recipe,
        "machine": machine(),
        "checkset_rows": len(hard),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2), encoding="utf-8")
    md = out.with_suffix(".md")
    lines = [
        f"Date {meta['date']}; {meta['machine']}; recipe {args.recipe}; check set "
        f"{len(hard)} held-out safe texts.",
        "",
        "| left out | rows | prevalence | AUPRC | zero-shot AUPRC | ROC-AUC | recall@5%FPR | check set flagged |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['left_out']} | {r['rows']} | {format_metric(r['prevalence'])} | **{format_metric(r['auprc'])}** | "
            f"{format_metric(r['zero_shot_auprc'])} | {format_metric(r['roc_auc'])} | {format_metric(r['recall_at_5pct_fpr'])} | "
            f"{100 * r['checkset_flag_rate']:.1f} % |"
        )
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    console.print(f"wrote {out} and {md}")


if __name__ == "__main__":
    main()
