"""Benchmark: how few-shot examples improve the zero-shot detector (0, 8, 32, 128, 512 per category).

Usage:
    python bench/few_shot.py [--policy openai] [--root ../shared/datasets] [--dev 1500]

Examples and the dev set come from ship-ok shared sets whose labels map onto the policy's
categories (positives), plus their safe rows (negatives). The dev set is fixed and disjoint from
the pool the examples are drawn from. For each n, n violating and n safe examples per category
are added to the policy (as `--examples FILE` does) and the detector is refitted; the table
reports binary AUPRC on the dev set and the refit time. Writes bench/out/few_shot.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from rich.console import Console
from rich.table import Table

from bastion.detectors.zero_shot import ZeroShotDetector
from bastion.eval.datasets import label_map_for, load_dataset
from bastion.eval.labels import binary_from_categories, category_labels
from bastion.eval.metrics import binary_metrics
from bastion.items import Item
from bastion.models.embedding_cache import EmbeddingCache
from bastion.models.encoder import load_encoder
from bastion.models.scoring import any_category
from bastion.policy import load_policy
from bastion.policy.examples import LabelledExample, with_examples
from common import machine  # bench/ is on sys.path when a benchmark runs

SOURCES = [
    "davidson",
    "toxigen",
    "ailuminate_en",
    "harmbench",
    "strongreject",
    "wildguard",
    "dices_990",
]
SIZES = [0, 8, 32, 128, 512]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policy", default="openai")
    parser.add_argument("--root", default=None)
    parser.add_argument("--dev", type=int, default=1500)
    parser.add_argument("--cache", default="bastion-data/cache/embeddings.sqlite")
    parser.add_argument("--out", default="bench/out/few_shot.json")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    console = Console(width=140)
    policy = load_policy(args.policy)
    texts: list[str] = []
    labels: list[np.ndarray] = []
    for name in SOURCES:
        data = load_dataset(name, root=args.root, limit=3000, seed=args.seed)
        y = category_labels(data, policy, label_map_for(name, policy.policy.id))
        keep = np.isfinite(binary_from_categories(y))
        texts += [t for t, k in zip(data.texts, keep, strict=True) if k]
        labels.append(y[keep])
    Y = np.vstack(labels)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(texts))
    dev, pool = order[: args.dev], order[args.dev :]
    y_dev = binary_from_categories(Y[dev])
    cache = EmbeddingCache(args.cache, load_encoder())
    dev_items = [Item(texts[i]) for i in dev]
    ids = policy.category_ids
    rows = []
    for n in SIZES:
        examples: list[LabelledExample] = []
        for j, cid in enumerate(ids):
            pos = pool[Y[pool, j] == 1]
            if len(pos) == 0 or n == 0:
                continue
            neg = pool[(Y[pool] == 0).all(axis=1)]
            for i in rng.choice(pos, size=min(n, len(pos)), replace=False):
                examples.append(LabelledExample(texts[i], cid, True))
            for i in rng.choice(neg, size=min(n, len(neg)), replace=False):
                examples.append(LabelledExample(texts[i], cid, False))
        extended = with_examples(policy, examples, f"{n} per category") if examples else policy
        start = time.perf_counter()
        detector = ZeroShotDetector(cache).fit(extended)  # type: ignore[arg-type]
        fit_s = time.perf_counter() - start
        scores = detector.score(dev_items).scores
        m = binary_metrics(y_dev, any_category(scores), 0.5)
        rows.append(
            {"per_category": n, "examples_added": len(examples), "auprc": m.auprc,
             "roc_auc": m.roc_auc, "fit_seconds": round(fit_s, 1)}
        )  # fmt: skip
        console.print(f"{n:4d} per category: AUPRC {m.auprc} (fit {fit_s:.1f} s)")
    cache.close()
    table = Table("examples per category", "added", "AUPRC", "ROC-AUC", "refit s",
                  title=f"Few-shot on a {len(dev)}-row dev set (prevalence {np.nanmean(y_dev):.3f})")  # fmt: skip
    for r in rows:
        table.add_row(str(r["per_category"]), str(r["examples_added"]), f"{r['auprc']:.3f}",
                      f"{r['roc_auc']:.3f}", f"{r['fit_seconds']:.1f}")  # fmt: skip
    console.print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": date.today().isoformat(),
        "policy": policy.version,
        "dev_rows": len(dev),
        "dev_prevalence": round(float(np.nanmean(y_dev)), 4),
        "machine": machine(),
    }
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2), encoding="utf-8")
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [max(r["per_category"], 1) for r in rows]
    ax.plot(xs, [r["auprc"] for r in rows], marker="o")
    ax.axhline(meta["dev_prevalence"], ls="--", color="grey", label="prevalence (random)")
    ax.set(xscale="log", xlabel="examples per category (0 shown at 1)", ylabel="binary AUPRC",
           title="Few-shot: examples added to the policy")  # fmt: skip
    ax.set_xticks(xs, [str(r["per_category"]) for r in rows])
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)
    md = [
        f"Date {meta['date']}; {meta['machine']}; policy {meta['policy']}; dev set {len(dev)} rows "
        f"(prevalence {meta['dev_prevalence']}), disjoint from the example pool.",
        "",
        "| examples per category | examples added | AUPRC | ROC-AUC | refit seconds |",
        "|---:|---:|---:|---:|---:|",
    ]
    md += [
        f"| {r['per_category']} | {r['examples_added']} | **{r['auprc']:.3f}** | {r['roc_auc']:.3f} | "
        f"{r['fit_seconds']:.1f} |"
        for r in rows
    ]
    out.with_suffix(".md").write_text("\n".join(md) + "\n", encoding="utf-8")
    console.print(f"wrote {out} (+ .md, .png)")


if __name__ == "__main__":
    main()
