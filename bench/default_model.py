"""Benchmark: the shipped default model against another model on what users check first.

Usage:
    python bench/default_model.py --old DIR   # e.g. a model directory from an earlier release

Both run as they are served (int8 ONNX where their runtime check passed) on: the acceptance
threats, insults and look-alikes (`tests/threat_texts.py`); the held-out check split of the texts
written for Bastion (binary AUPRC, F1 / recall / precision at the shipped thresholds, AUPRC per
category); and the held-out hard safe texts the default recipe names (share flagged). An old
release's model: `git archive 797bad6 src/bastion/data/models/default | tar -x -C /tmp/old`.
Writes bench/out/default_model.json and .md.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bastion.eval.datasets import label_map_for, load_dataset
from bastion.eval.labels import category_labels
from bastion.eval.metrics import binary_metrics, format_metric
from bastion.models.scoring import any_category
from bastion.moderator import Moderator
from bastion.policy import load_policy
from bastion.training.data import hard_safe_texts
from bastion.training.recipe import Recipe
from common import run_meta, write_result  # bench/ is on sys.path when a benchmark runs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from threat_texts import INSULTS, LOOKALIKES, THREATS


def measure(mod: Moderator, ids: list[str], hard: list[str]) -> dict[str, Any]:
    check = load_dataset("bastion_written_check")
    y = category_labels(check, mod.policy, label_map_for("bastion_written_check", "openai"))
    verdicts = mod.moderate(check.texts)
    scores = np.array([[v.category_scores[c] for c in ids] for v in verdicts])
    flagged = np.array([v.flagged for v in verdicts])
    m = binary_metrics(check.binary, any_category(scores), 0.5, flagged=flagged)
    return {
        "threats_flagged": sum(v.flagged for v in mod.moderate(THREATS)),
        "insults_flagged": sum(v.flagged for v in mod.moderate(INSULTS)),
        "lookalikes_flagged": sum(v.flagged for v in mod.moderate(LOOKALIKES)),
        "check_auprc": m.auprc,
        "check_f1": m.f1,
        "check_recall": m.recall,
        "check_precision": m.precision,
        "check_auprc_per_category": {
            c: binary_metrics(y[:, j], scores[:, j], 0.5).auprc
            for j, c in enumerate(ids)
            if np.nansum(y[:, j] == 1) >= 5
        },
        "hard_safe_flagged": float(np.mean([v.flagged for v in mod.moderate(hard)])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", required=True, help="the model directory to compare with")
    parser.add_argument("--root", default=None, help="shared datasets (for CoCoNot's half)")
    parser.add_argument("--out", default="bench/out/default_model.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    ids = load_policy("openai").category_ids
    hard = hard_safe_texts(Recipe.from_file("recipes/default.yaml"), args.root)
    rows = {
        "old": measure(Moderator("openai", model=args.old), ids, hard),
        "default": measure(Moderator("openai"), ids, hard),
    }
    table = Table("measure", f"old ({args.old})", "default", title="Default model")
    lines = ["| measure | old | default |", "|---|---:|---:|"]
    for key in rows["default"]:
        if key == "check_auprc_per_category":
            continue
        a, b = rows["old"][key], rows["default"][key]
        cells = [str(x) if isinstance(x, int) else format_metric(x) for x in (a, b)]
        table.add_row(key, *cells)
        lines.append(f"| {key} | {cells[0]} | {cells[1]} |")
    for c, b in rows["default"]["check_auprc_per_category"].items():
        a = rows["old"]["check_auprc_per_category"].get(c)
        table.add_row(f"check AUPRC {c}", format_metric(a), format_metric(b))
        lines.append(f"| check AUPRC {c} | {format_metric(a)} | {format_metric(b)} |")
    Console().print(table)
    meta = {**run_meta(load_before), "old": args.old, "hard_safe_rows": len(hard)}
    write_result({"meta": meta, "rows": rows}, args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
