"""The evaluation report: metrics.json plus an HTML page with PR curves and reliability diagrams."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from bastion.eval.metrics import BinaryMetrics, format_metric, pr_curve, reliability
from bastion.eval.runner import EvalRun

_MAX_CATEGORY_CURVES = 8


def write_report(run: EvalRun, out_dir: Path | str) -> Path:
    """Write metrics.json, PNG plots and index.html into `out_dir`; return the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(run.result.model_dump_json(indent=2), encoding="utf-8")
    images = []
    if _plot_pr(run, out / "pr_curves.png"):
        images.append(("Precision-recall", "pr_curves.png"))
    if _plot_reliability(run, out / "reliability.png"):
        images.append(("Reliability (calibration)", "reliability.png"))
    _plot_histogram(run, out / "score_histogram.png")
    images.append(("Score distribution", "score_histogram.png"))
    path = out / "index.html"
    path.write_text(_html(run, images), encoding="utf-8")
    return path


def _plot_pr(run: EvalRun, path: Path) -> bool:
    fig, ax = plt.subplots(figsize=(6.5, 5))
    drew = False
    curve = pr_curve(run.y_binary, run.binary_score)
    if curve is not None:
        ax.plot(
            curve[0],
            curve[1],
            lw=2.5,
            color="black",
            label=f"any category (AUPRC {run.result.binary.auprc})",
        )
        drew = True
    ranked = sorted(run.result.per_category.items(), key=lambda kv: -kv[1].positives)
    for cid, m in ranked[:_MAX_CATEGORY_CURVES]:
        j = run.category_ids.index(cid)
        c = pr_curve(run.y_categories[:, j], run.scores[:, j])
        if c is not None:
            ax.plot(c[0], c[1], lw=1.2, label=f"{cid} ({m.auprc:.3f})")
            drew = True
    if drew:
        ax.set(
            xlabel="recall",
            ylabel="precision",
            xlim=(0, 1),
            ylim=(0, 1.02),
            title=run.result.dataset,
        )
        _finish(fig, ax, path, legend="lower left", fontsize=7)
    plt.close(fig)
    return drew


def _finish(fig: Any, ax: Any, path: Path, legend: str, fontsize: int) -> None:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=fontsize, loc=legend)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _plot_reliability(run: EvalRun, path: Path) -> bool:
    pred, obs, cnt = reliability(run.y_binary, run.binary_score)
    if cnt.sum() == 0 or run.result.binary.note:
        return False
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="perfectly calibrated")
    ok = cnt > 0
    ax.plot(
        pred[ok],
        obs[ok],
        marker="o",
        color="C0",
        label=f"any category (ECE {run.result.binary.ece})",
    )
    for x, yv, n in zip(pred[ok], obs[ok], cnt[ok], strict=True):
        ax.annotate(str(n), (x, yv), fontsize=6, textcoords="offset points", xytext=(3, 3))
    ax.set(
        xlabel="predicted probability", ylabel="observed violation rate", xlim=(0, 1), ylim=(0, 1)
    )
    _finish(fig, ax, path, legend="upper left", fontsize=8)
    plt.close(fig)
    return True


def _plot_histogram(run: EvalRun, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    bins = [i / 40 for i in range(41)]
    for value, name, color in (
        (0, "safe", "C2"),
        (1, "violating", "C3"),
        (np.nan, "unlabelled", "grey"),
    ):
        m = np.isnan(run.y_binary) if np.isnan(value) else run.y_binary == value
        s = run.binary_score[m & np.isfinite(run.binary_score)]
        if len(s):
            ax.hist(s, bins=bins, alpha=0.55, color=color, label=f"{name} ({len(s)})")
    ax.set(xlabel="score (any category)", ylabel="items")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _row(name: str, m: BinaryMetrics) -> str:
    f = format_metric
    cells = [
        html.escape(name), str(m.n), str(m.positives), f(m.auprc), f(m.roc_auc), f(m.threshold),
        f(m.precision), f(m.recall), f(m.f1), f(m.recall_at_5pct_fpr), f(m.ece),
        html.escape(m.note or ""),
    ]  # fmt: skip
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _html(run: EvalRun, images: list[tuple[str, str]]) -> str:
    r = run.result
    head = (
        "<tr><th>scope</th><th>n</th><th>positives</th><th>AUPRC</th><th>ROC-AUC</th>"
        "<th>threshold</th><th>precision</th><th>recall</th><th>F1</th><th>recall@5%FPR</th>"
        "<th>ECE</th><th>note</th></tr>"
    )
    rows = [_row("any category (flagged)", r.binary)]
    rows += [_row(cid, m) for cid, m in r.per_category.items()]
    figs = "".join(
        f'<figure><img src="{src}" alt="{html.escape(t)}"><figcaption>{html.escape(t)}</figcaption></figure>'
        for t, src in images
    )
    label_map = (
        "<p>Label map: "
        + html.escape(", ".join(f"{k} → {'/'.join(v) or '∅'}" for k, v in r.label_map.items()))
        + "</p>"
        if r.label_map
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Bastion eval: {html.escape(r.dataset)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 1100px; }}
table {{ border-collapse: collapse; font-size: 0.85rem; }}
td, th {{ border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }}
td:first-child, th:first-child, td:last-child {{ text-align: left; }}
figure {{ display: inline-block; margin: 1rem 1rem 0 0; }}
.meta {{ color: #555; font-size: 0.9rem; }}
</style></head><body>
<h1>Evaluation: {html.escape(r.dataset)}</h1>
<p class="meta">{r.rows} rows ({r.unscored} not scored) · policy {html.escape(r.policy_version)} ·
model {html.escape(r.model_version)} · licence {html.escape(r.licence)} ({html.escape(r.use)}) ·
{r.items_per_second} items/s</p>
<p>{html.escape(r.description)}</p>
{label_map}
<table>{head}{"".join(rows)}</table>
{figs}
</body></html>
"""
