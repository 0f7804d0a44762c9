"""Benchmark: ranking under a budget, the share of harm a review queue covers in its first K items.

Usage:
    python bench/ranking.py [--pool 10000] [--seed 0] [--root DIR]

Candidates come straight from the shared sets' gold labels, scored by the default
`Moderator("openai")` (not from a recall run: every item is a candidate, which is what the
queue sees after a generous recall). A seeded, stratified sample of `--pool` texts (default
10,000) from five sets, in fixed shares:

| set | share | labels | licence (use) |
|---|---:|---|---|
| davidson | 35 % | hate or offensive = violating | MIT (ship-ok) |
| toxigen | 6 % | hate = violating | MIT + CDLA-Permissive-2.0 (ship-ok) |
| wildguard | 15 % | harmful = violating | repack MIT, upstream ODC-By (ship-ok) |
| toxicchat | 28 % | toxic = violating | CC-BY-NC-4.0 (dev-only: benchmark only) |
| ailuminate_en | 12 % | all violating | CC-BY-4.0 (ship-ok) |
| harmbench | 4 % | all violating | MIT (ship-ok) |

Each candidate gets, seeded:

* **reach**: Pareto with shape 1.2 (heavy-tailed: the top 1 % of items hold a large share of
  all views), `10 × (1 + Pareto(1.2))` viewers, independent of the label;
* **severity** of a violating item: the largest policy severity (openai pack, 1-4) of the
  categories its dataset's native label maps to (`label_map_for`), else 2, Bastion's default
  for an unknown category;
* **reports**: Poisson with mean reach × 0.002, four times that for a violating item: the user
  reports a platform gets, a noisy signal the expected-harm formula does not use but the learned
  ranker may (`log_reports` is one of its features);
* **scores**: the default Moderator's calibrated category probabilities, and a classifier
  channel of strength P(violation).

The true harm of an item is label × severity × reach. The pool is split in half (seeded): the
first half becomes review decisions (`TrainingExample`, violating or not, the mapped
categories), on which `LearnedRanker().fit_decisions` trains lambdarank; the second half is
ranked by `rank()` three ways:

* **learned**: the fitted `LearnedRanker`;
* **expected harm**: `ExpectedHarm`, P(violation) × severity × reach of the most harmful
  category, no training (the cold-start ranker);
* **score only**: P(violation) alone (the largest category probability), ignoring severity,
  reach and reports: what sorting a moderation API's output gives;

plus **ideal**, the order by the true harm, as the ceiling.

How to read the numbers: "harm covered @K" is the share of the evaluated half's total true harm
found in the queue's first K items, for K = 1 %, 5 % and 10 % of the evaluated half (a review
budget); NDCG@K uses the true harm as the (linear) gain and the ideal order's DCG as the norm.
Both are 1.0 for the ideal order. Because reach is heavy-tailed, a few viral violations carry
much of the harm: a ranker that ignores reach (score only) covers little of it even when its
precision is high. The reports signal is simulated and makes the learned ranker's edge partly a
matter of what the simulation gives it; the score-only and expected-harm rows use no reports.

With reach this heavy-tailed, a handful of viral violations carry most of the harm (in a
2,000-item run even the ideal order covers about 60 % in its first 1 %), so the rows differ
most in whether they catch those few: compare each row with the ideal one, and rerun with
another `--seed` before reading much into a gap of a few points.

Writes bench/out/ranking.json (and .md). Seeds are fixed (`--seed`). Time on 2 cores is almost
all scoring the texts: 2,000-item smoke runs scored at 66-150 items/s (13-30 s, depending on
what else the machine ran), so the full 10,000 items take about 1.5-3 minutes.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bastion.eval.datasets import label_map_for, load_dataset
from bastion.moderator import Moderator
from bastion.triage import ReviewLabel, TrainingExample
from bastion.triage.rank import (
    Candidate,
    ExpectedHarm,
    LearnedRanker,
    Ranker,
    feature_dict,
    features,
    rank,
)
from common import run_meta, write_result  # bench/ is on sys.path when a benchmark runs

POLICY = "openai"
SHARES = {
    "davidson": 0.35,
    "toxigen": 0.06,
    "wildguard": 0.15,
    "toxicchat": 0.28,
    "ailuminate_en": 0.12,
    "harmbench": 0.04,
}
LICENCES = {
    "davidson": "MIT (ship-ok)",
    "toxigen": "MIT + CDLA-Permissive-2.0 (ship-ok)",
    "wildguard": "repack MIT; upstream ODC-By (ship-ok)",
    "toxicchat": "CC-BY-NC-4.0 (dev-only)",
    "ailuminate_en": "CC-BY-4.0 (ship-ok)",
    "harmbench": "MIT (ship-ok)",
}
BUDGETS = (0.01, 0.05, 0.10)
PARETO_SHAPE = 1.2
REACH_SCALE = 10.0
REPORT_RATE = 0.002
REPORT_LIFT = 4.0
DEFAULT_SEVERITY = 2
NOW = datetime(2026, 1, 1, tzinfo=UTC)


class ScoreOnly:
    """Order by P(violation) alone: the largest calibrated category probability."""

    name = "score-only"

    def score(self, candidates: Sequence[Candidate], X: np.ndarray) -> np.ndarray:
        return np.array([max(c.scores.values(), default=0.0) for c in candidates])


# --------------------------------------------------------------------------- candidates


def sample(root: str | None, size: int, seed: int) -> list[tuple[str, str, float, list[str]]]:
    """(set, text, gold label, mapped categories) per item, seeded and stratified per set."""
    rows = []
    for name, share in SHARES.items():
        data = load_dataset(name, root=root, limit=max(1, round(size * share)), seed=seed)
        mapping = label_map_for(name, POLICY)
        for text, label, native in zip(data.texts, data.binary, data.native, strict=True):
            if not np.isfinite(label):
                continue
            cats = mapping.mapping.get(native, []) if mapping is not None and native else []
            rows.append((name, text, float(label), list(cats)))
    return rows


def candidates(
    rows: list[tuple[str, str, float, list[str]]], moderator: Moderator, seed: int
) -> tuple[list[Candidate], np.ndarray, np.ndarray]:
    """Candidates (scores, reach, reports) and per item its true label and severity."""
    rng = np.random.default_rng(seed)
    severity = {c.id: int(c.severity) for c in moderator.policy.categories}
    verdicts = moderator.moderate([text for _, text, _, _ in rows])
    labels = np.array([label for _, _, label, _ in rows])
    sev = np.array(
        [max((severity.get(c, DEFAULT_SEVERITY) for c in cats), default=DEFAULT_SEVERITY)
         for _, _, _, cats in rows],
        dtype=float,
    )  # fmt: skip
    reach = REACH_SCALE * (1.0 + rng.pareto(PARETO_SHAPE, len(rows)))
    rate = reach * REPORT_RATE * np.where(labels == 1, REPORT_LIFT, 1.0)
    reports = rng.poisson(rate)
    out = []
    for i, ((name, text, _, _), v) in enumerate(zip(rows, verdicts, strict=True)):
        scores = dict(v.category_scores)
        p = max(scores.values(), default=0.0)
        out.append(
            Candidate(
                item_id=f"{name}-{i}",
                text=text,
                channels={"classifier": p},
                scores=scores,
                severity=severity,
                reach=float(round(reach[i], 1)),
                reports=float(reports[i]),
                metadata={"set": name},
            )
        )
    return out, labels, sev


def decisions(
    cands: Sequence[Candidate], labels: np.ndarray, cats: Sequence[list[str]]
) -> list[TrainingExample]:
    """The training half as a reviewer's decisions, with the features the queue stored."""
    X = features(cands, NOW)
    return [
        TrainingExample(
            queue="bench",
            item_id=c.item_id,
            label=ReviewLabel.violating if y == 1 else ReviewLabel.not_violating,
            categories=list(k) if y == 1 else [],
            priority=0.0,
            expected_harm=None,
            channels=list(c.channels),
            features=feature_dict(X[i]),
            metadata={},
            reviewer="gold",
            note="",
            decided_at=NOW,
        )
        for i, (c, y, k) in enumerate(zip(cands, labels, cats, strict=True))
    ]


# --------------------------------------------------------------------------- measures


def coverage_and_ndcg(order_harm: np.ndarray, harm: np.ndarray, k: int) -> tuple[float, float]:
    """Share of total harm in the first k, and NDCG@k with harm as linear gain."""
    total = float(harm.sum())
    covered = float(order_harm[:k].sum()) / total if total > 0 else math.nan
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = float((order_harm[:k] * discount[: len(order_harm[:k])]).sum())
    ideal = np.sort(harm)[::-1][:k]
    idcg = float((ideal * discount[: len(ideal)]).sum())
    return covered, (dcg / idcg if idcg > 0 else math.nan)


def evaluate(
    test: list[Candidate], harm: np.ndarray, rankers: dict[str, Ranker | None], ks: list[int]
) -> list[dict[str, Any]]:
    index = {c.item_id: i for i, c in enumerate(test)}
    rows = []
    for name, ranker in rankers.items():
        if ranker is None:  # the ideal order
            order_harm = np.sort(harm)[::-1]
        else:
            ranked = rank(test, ranker, now=NOW)
            order_harm = np.array([harm[index[r.candidate.item_id]] for r in ranked])
        row: dict[str, Any] = {"ranker": name, "harm_covered": {}, "ndcg": {}}
        for k in ks:
            covered, ndcg = coverage_and_ndcg(order_harm, harm, k)
            row["harm_covered"][str(k)] = round(covered, 4)
            row["ndcg"][str(k)] = round(ndcg, 4)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- output


def table(result: dict[str, Any]) -> Table:
    meta, ks = result["meta"], result["meta"]["ks"]
    table = Table(
        "ranker",
        *(f"harm @{k} ({b:.0%})" for k, b in zip(ks, BUDGETS, strict=True)),
        *(f"NDCG@{k}" for k in ks),
        title=(
            f"Harm covered by the first K of {meta['evaluated']:,} candidates "
            f"({meta['evaluated_violating']:,} violating); ranker trained on {meta['trained']:,}"
        ),
    )
    for r in result["rows"]:
        table.add_row(
            r["ranker"],
            *(f"{r['harm_covered'][str(k)]:.1%}" for k in ks),
            *(f"{r['ndcg'][str(k)]:.3f}" for k in ks),
        )
    return table


def markdown(result: dict[str, Any]) -> str:
    meta, ks = result["meta"], result["meta"]["ks"]
    lines = [
        f"Date {meta['date']}; {meta['machine']}; {meta['cpu_count']} CPUs; model "
        f"{meta['model_version']}; pool {meta['pool']:,} "
        f"({', '.join(f'{n} {c:,}' for n, c in meta['sets'].items())}); trained on "
        f"{meta['trained']:,} decisions, evaluated on {meta['evaluated']:,} "
        f"({meta['evaluated_violating']:,} violating); reach 10 × (1 + Pareto({PARETO_SHAPE})), "
        f"top 1 % of items hold {meta['reach_top1_share']:.0%} of reach; seed {meta['seed']}.",
        "",
        "| ranker | "
        + " | ".join(f"harm @{k} ({b:.0%})" for k, b in zip(ks, BUDGETS, strict=True))
        + " | "
        + " | ".join(f"NDCG@{k}" for k in ks)
        + " |",
        "|---|" + "---:|" * (2 * len(ks)),
    ]
    for r in result["rows"]:
        cells = [f"{r['harm_covered'][str(k)]:.1%}" for k in ks]
        cells += [f"{r['ndcg'][str(k)]:.3f}" for k in ks]
        lines.append(f"| {r['ranker']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", type=int, default=10_000, help="candidates (both halves)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=None, help="shared datasets folder")
    parser.add_argument("--out", default="bench/out/ranking.json")
    args = parser.parse_args()
    console = Console(width=160)
    load_before = os.getloadavg()

    rows = sample(args.root, args.pool, args.seed)
    moderator = Moderator(POLICY)
    console.print(f"scoring {len(rows):,} texts with {moderator.model_version}")
    start = time.perf_counter()
    cands, labels, sev = candidates(rows, moderator, args.seed)
    seconds = time.perf_counter() - start
    reach = np.array([c.reach or 0.0 for c in cands])
    harm = labels * sev * reach

    split = np.random.default_rng(args.seed + 1).permutation(len(cands))
    half = len(cands) // 2
    train, test = split[:half], split[half:]
    ranker = LearnedRanker(random_state=args.seed).fit_decisions(
        decisions([cands[i] for i in train], labels[train], [rows[i][3] for i in train]),
        {c.id: int(c.severity) for c in moderator.policy.categories},
    )
    ks = [max(1, round(b * len(test))) for b in BUDGETS]
    test_cands = [cands[i] for i in test]
    result_rows = evaluate(
        test_cands,
        harm[test],
        {"learned (lambdarank)": ranker, "expected harm": ExpectedHarm(),
         "score only (P(violation))": ScoreOnly(), "ideal (true harm)": None},
        ks,
    )  # fmt: skip
    top = np.sort(reach)[::-1]
    result = {
        "meta": {
            **run_meta(load_before),
            "policy": POLICY,
            "model_version": moderator.model_version,
            "seed": args.seed,
            "pool": len(cands),
            "sets": {n: sum(r[0] == n for r in rows) for n in SHARES},
            "licences": LICENCES,
            "violating": int(labels.sum()),
            "trained": len(train),
            "evaluated": len(test),
            "evaluated_violating": int(labels[test].sum()),
            "budgets": list(BUDGETS),
            "ks": ks,
            "reach": {"pareto_shape": PARETO_SHAPE, "scale": REACH_SCALE},
            "reach_top1_share": round(float(top[: max(1, len(top) // 100)].sum() / top.sum()), 4),
            "reports": {"rate_per_view": REPORT_RATE, "violating_lift": REPORT_LIFT},
            "scoring_seconds": round(seconds, 1),
        },
        "rows": result_rows,
    }
    console.print(table(result))
    console.print(f"scoring took {seconds:.0f} s ({len(cands) / seconds:.0f} items/s)")
    out, md = write_result(result, args.out, markdown(result))
    console.print(f"wrote {out} and {md}")


if __name__ == "__main__":
    main()
