"""Benchmark: threshold rules on left-out sets, from the scores `generalisation.py` saved.

Usage:
    python bench/generalisation.py ... --save-scores bench/out/lodo-scores
    python bench/thresholds.py --scores bench/out/lodo-scores

Each fold's model was calibrated on its own training sources' calibration split; the rules below
choose thresholds on that split only, exactly as `bastion train` would, and are then scored on the
left-out set (recall and F1 of the any-category flag) and on the held-out hard safe texts (share
flagged). Rules: per-category best F1 alone; then one common logit shift for the best F-beta of the
any-category flag (`threshold.binary_beta`); and either of them capped so that no wholly-safe
calibration source has more than a share flagged (`threshold.max_safe_flagged`). No training:
seconds. Writes bench/out/thresholds.json and .md.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bastion.models.calibration import (
    raise_for_flag_rate,
    shift_for_binary_fbeta,
    threshold_for_f1,
    wholly_safe_groups,
)
from common import run_meta, write_result  # bench/ is on sys.path when a benchmark runs
from generalisation import evaluate

RULES: list[tuple[float | None, float | None]] = [
    (None, None),
    (None, 0.08),
    (1.5, None),
    (1.5, 0.08),
    (2.0, None),
]


def choose(fold: Any, beta: float | None, cap: float | None) -> tuple[np.ndarray, float]:
    """Thresholds by a rule, from the fold's calibration scores; and the logit shift applied."""
    scores, labels = fold["cal_scores"], fold["cal_labels"]
    source, binary = fold["cal_source"], fold["cal_binary"]
    th = np.array(fold["thresholds"], float)
    # Categories the fold's model calibrated have their best-F1 threshold saved; the others kept
    # the policy's default, and no rule moves them.
    tuned = np.array(
        [
            (t := threshold_for_f1(labels[:, j], scores[:, j])) is not None
            and abs(t - th[j]) < 1e-9
            for j in range(len(th))
        ]
    )
    shift = 0.0
    if beta is not None:
        th, shift = shift_for_binary_fbeta(scores, th, binary, beta, adjustable=tuned)
    if cap is not None:
        th, up = raise_for_flag_rate(scores, th, wholly_safe_groups(source, binary), cap)
        shift += up
    return th, shift


def measure(fold: Any, th: np.ndarray) -> dict[str, float]:
    """Recall and F1 of the any-category flag on the left-out set and the share of hard safe
    texts flagged, as `generalisation.py` reports them."""
    labels = fold["test_labels"]
    ids = [str(j) for j in range(labels.shape[1])]  # per-category results are not reported here
    m = evaluate(fold["test_scores"], fold["hard_scores"], th, fold["test_binary"], labels, ids)
    return {k: float(m[k] or 0.0) for k in ("recall", "f1", "hard_safe_flagged")}


def label(beta: float | None, cap: float | None) -> str:
    # The base rule is the fold's saved thresholds: per-category F1, plus the recipe's own shift
    # where it has `binary_beta` (the shifts below then start from there).
    text = "the fold's thresholds" if beta is None else f"then binary F{beta:g} shift"
    return text + (f", safe sources capped at {cap:.0%}" if cap is not None else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scores", required=True, help="the --save-scores folder")
    parser.add_argument("--model", default="fine_tuned", choices=["fine_tuned", "frozen"])
    parser.add_argument("--out", default="bench/out/thresholds.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    files = sorted(Path(args.scores).glob(f"*.{args.model}.npz"))
    if not files:
        raise SystemExit(
            f"{args.scores}: no *.{args.model}.npz (run generalisation.py --save-scores)"
        )
    folds = {f.name.split(".")[0]: np.load(f) for f in files}
    rows: list[dict[str, Any]] = []
    for beta, cap in RULES:
        row: dict[str, Any] = {"rule": label(beta, cap), "binary_beta": beta, "cap": cap}
        for name, fold in folds.items():
            th, shift = choose(fold, beta, cap)
            row[name] = {**measure(fold, th), "shift": shift}
        rows.append(row)
    names = list(folds)
    lines = [
        f"Model: {args.model}; scores from {args.scores}. Per fold: recall / F1 of the any-category "
        "flag on the left-out set, share of held-out hard safe texts flagged, logit shift.",
        "",
        "| rule | " + " | ".join(names) + " | mean recall | mean F1 |",
        "|---|" + "---:|" * (len(names) + 2),
    ]
    table = Table("rule", *names, "mean recall", "mean F1", title="Threshold rules, left-out sets")
    for row in rows:
        cells = [
            f"{row[n]['recall']:.2f} / {row[n]['f1']:.2f} / {100 * row[n]['hard_safe_flagged']:.1f} % "
            f"({row[n]['shift']:+.2f})"
            for n in names
        ]
        means = [
            f"{np.mean([row[n]['recall'] for n in names]):.3f}",
            f"{np.mean([row[n]['f1'] for n in names]):.3f}",
        ]
        lines.append(f"| {row['rule']} | " + " | ".join(cells + means) + " |")
        table.add_row(row["rule"], *cells, *means)
    console = Console(width=200)
    console.print(table)
    meta = {**run_meta(load_before), "scores": args.scores, "model": args.model}
    json_path, md = write_result({"meta": meta, "rows": rows}, args.out, "\n".join(lines) + "\n")
    console.print(f"wrote {json_path} and {md}")


if __name__ == "__main__":
    main()
