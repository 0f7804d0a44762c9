"""Benchmark: mining by a bandit over strategies against each strategy alone, on two pools.

Usage:
    python bench/mining.py [--budget 2000] [--batch 100] [--seeds 5] [--small] [--root DIR]

Two pools from the shared sets, each a different mining problem (read with
`bastion.eval.datasets.load_dataset`; texts deduplicated by exact text, seeded):

* **hate-5pct**, violations about 5 %: Davidson et al.'s tweets (MIT, ship-ok). The violation is
  the dataset's *hate speech* class; its *offensive* and *neither* tweets are not violations. Hate
  tweets are subsampled to 5.0 % of the pool. The negatives are full of slurs and profanity
  (offensive but not hate), so a likely-looking item is often not one: precision is hard.
* **implicit-hate-0.8pct**, violations 0.8 %: ToxiGen's machine-written *implicit* hate statements
  (MIT + CDLA-Permissive-2.0, ship-ok) hidden among Davidson's non-hate tweets and ToxiGen's
  neutral statements about the same groups. Few slurs: the violations look polite. Recall is hard.

Each simulation (`bastion.mining.simulate`): 20 % of the pool held out (stratified) for AUPRC;
a seed set of 5 known violations and 45 random items; then every policy spends `--budget` labels
in batches of `--batch`, the gold labels answering, retraining a logistic-regression probe on the
all-MiniLM-L6-v2 embeddings after every batch. Policies: the bandit (discounted Thompson sampling
over all seven strategies, 5 % random floor, reward = violations found) and each strategy alone
(no floor), plus top score with the same 5 % random floor as the bandit ("top_score+floor"):
the floor is kept in production for the unbiased prevalence estimate, so that row is what a
fixed strategy costs under the same rule. The policy's zero-shot detector is the openai pack's
`hate` category.

Reported per pool, as the mean over `--seeds` seeds: violations found (beyond the seed set),
× random, final AUPRC on the held-out set, normalised area under the AUPRC learning curve
(AULC), and regret = violations found by the best single strategy in hindsight minus the
policy's. Goal: on both pools the bandit finds at least as many violations as the best single
strategy, at least 3× random on the rare pool, with final AUPRC no worse than uncertainty's.

Writes bench/out/mining.json (and .md) and the HTML report with learning curves under
bench/out/mining/. `--small` (what CI runs): 3,000-item pools, budget 300 in batches of 50,
2 seeds.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from bastion.detectors.zero_shot import ZeroShotDetector
from bastion.eval.datasets import load_dataset
from bastion.mining.simulate import (
    BANDIT,
    Simulation,
    SimulationConfig,
    rounds,
    simulate,
    write_report,
)
from bastion.mining.strategies import STRATEGIES
from bastion.models.embedding_cache import EmbeddingCache
from bastion.models.encoder import load_encoder
from bastion.policy.loader import load_policy
from common import run_meta, write_result  # bench/ is on sys.path when a benchmark runs

POLICY = "openai"
CATEGORY = "hate"
COMMON_SHARE = 0.05
RARE_SHARE = 0.008
SMALL_POOL = 3000


def build_pools(
    root: str | None, seed: int, small: bool
) -> dict[str, tuple[list[str], np.ndarray]]:
    """Both pools: name -> (texts, gold 0/1); see the module docstring."""
    rng = np.random.default_rng(seed)
    davidson = load_dataset("davidson", root=root)
    toxigen = load_dataset("toxigen", root=root)
    hate: list[str] = []
    other: list[str] = []
    seen: set[str] = set()
    for text, native in zip(davidson.texts, davidson.native, strict=True):
        if text.strip() and text not in seen:
            seen.add(text)
            (hate if native == "hate" else other).append(text)
    implicit = [t for t, n in zip(toxigen.texts, toxigen.native, strict=True) if n == "hate"]
    neutral = [t for t, n in zip(toxigen.texts, toxigen.native, strict=True) if n is None]
    pools = {
        "hate-5pct": _mix(other, hate, COMMON_SHARE, rng),
        "implicit-hate-0.8pct": _mix(other + neutral, implicit, RARE_SHARE, rng),
    }
    if small:
        pools = {name: _shrink(*pool, SMALL_POOL, rng) for name, pool in pools.items()}
    return pools


def _mix(
    negatives: list[str], positives: list[str], share: float, rng: np.random.Generator
) -> tuple[list[str], np.ndarray]:
    n_pos = min(len(positives), round(share * len(negatives) / (1 - share)))
    chosen = [positives[i] for i in rng.permutation(len(positives))[:n_pos]]
    texts = negatives + chosen
    gold = np.concatenate([np.zeros(len(negatives)), np.ones(n_pos)])
    order = rng.permutation(len(texts))
    return [texts[i] for i in order], gold[order]


def _shrink(
    texts: list[str], gold: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[list[str], np.ndarray]:
    """`size` items with the same share of violations (at least 10 of them)."""
    pos = np.flatnonzero(gold == 1)
    neg = np.flatnonzero(gold == 0)
    n_pos = max(10, round(size * gold.mean()))
    keep = np.concatenate(
        [rng.choice(pos, n_pos, replace=False), rng.choice(neg, size - n_pos, replace=False)]
    )
    keep = rng.permutation(keep)
    return [texts[i] for i in keep], gold[keep]


def table(name: str, summary: list[dict[str, Any]], facts: dict[str, Any]) -> Table:
    t = Table(
        title=f"{name}: {facts['items']:,} items, {100 * facts['prevalence']:.2f} % violating; "
        f"{facts['budget']:,} labels in batches of {facts['batch']}, {facts['seeds']} seeds"
    )
    for col in ("policy", "found", "± sd", "× random", "final AUPRC", "AULC", "regret"):
        t.add_column(col, justify="left" if col == "policy" else "right")
    for r in summary:
        t.add_row(
            r["policy"], f"{r['found']:.1f}", f"{r['found_sd']:.1f}", f"{r['vs_random']:.2f}",
            f"{r['final_auprc']:.3f}", f"{r['aulc']:.3f}", f"{r['regret_found']:+.1f}",
        )  # fmt: skip
    return t


def goals(sims: list[Simulation]) -> dict[str, dict[str, Any]]:
    """The issue's goal, checked per pool (True/False per clause, with the numbers)."""
    out = {}
    for sim in sims:
        rows = {r["policy"]: r for r in sim.summary()}
        bandit = rows[BANDIT]
        best = max((r for p, r in rows.items() if p in STRATEGIES), key=lambda r: r["found"])
        out[str(sim.facts["name"])] = {
            "bandit_found": bandit["found"],
            "best_single": best["policy"],
            "best_single_found": best["found"],
            "at_least_best_single": bandit["found"] >= best["found"],
            "vs_random": bandit["vs_random"],
            "at_least_3x_random": bandit["vs_random"] >= 3,
            "bandit_final_auprc": bandit["final_auprc"],
            "uncertainty_final_auprc": rows["uncertainty"]["final_auprc"],
            "auprc_no_worse_than_uncertainty": bandit["final_auprc"]
            >= rows["uncertainty"]["final_auprc"],
            "top_score_with_floor_found": rows["top_score+floor"]["found"],
        }
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = []
    for pool in result["pools"]:
        f = pool["facts"]
        lines += [
            f"**{f['name']}**: {f['items']:,} items, {f['positives']:,} violating "
            f"({100 * f['prevalence']:.2f} %); {f['budget']:,} labels in batches of {f['batch']}, "
            f"{f['seeds']} seeds",
            "",
            "| policy | found | ± sd | × random | final AUPRC | AULC | regret (found) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in pool["summary"]:
            lines.append(
                f"| {r['policy']} | {r['found']:.1f} | {r['found_sd']:.1f} | {r['vs_random']:.2f} "
                f"| {r['final_auprc']:.3f} | {r['aulc']:.3f} | {r['regret_found']:+.1f} |"
            )
        bandit = next(r for r in pool["summary"] if r["policy"] == BANDIT)
        if "prevalence_estimate" in bandit:
            lines.append(
                f"\nThe bandit's prevalence estimate from its random slots: "
                f"{100 * bandit['prevalence_estimate']:.2f} % on average (truth "
                f"{100 * f['prevalence']:.2f} %); its 95 % interval covered the truth in "
                f"{100 * bandit['prevalence_covered']:.0f} % of seeds."
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--small", action="store_true", help="the CI size (see the docstring)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pool construction")
    parser.add_argument("--root", default=None, help="shared datasets folder")
    parser.add_argument("--out", default="bench/out/mining.json")
    parser.add_argument("--cache", default="bench/out/cache/embeddings.sqlite")
    args = parser.parse_args()
    if args.small:
        args.budget, args.batch, args.seeds = (
            min(args.budget, 300),
            min(args.batch, 50),
            min(args.seeds, 2),
        )
    console = Console(width=160)
    load_before = os.getloadavg()
    pools = build_pools(args.root, args.seed, args.small)

    encoder = load_encoder()
    cache = EmbeddingCache(args.cache, encoder)
    detector = ZeroShotDetector(encoder).fit(load_policy(POLICY))
    column = list(detector.category_ids).index(CATEGORY)
    config = SimulationConfig(
        budget=args.budget, batch=args.batch, seeds=args.seeds,
        policies=(BANDIT, *STRATEGIES, "top_score+floor"),
    )  # fmt: skip
    sims: list[Simulation] = []
    start = time.perf_counter()
    with Progress(
        "{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        for name, (texts, gold) in pools.items():
            task = bar.add_task(f"embedding {name}", total=len(texts))
            X = cache.encode(texts, progress=lambda n, task=task: bar.advance(task, n))
            prior = detector.window_probs(X)[0][:, column]
            task = bar.add_task(f"mining {name}", total=rounds(config))
            sims.append(
                simulate(X, gold, prior, config, name=name,
                         progress=lambda n, task=task: bar.advance(task, n))
            )  # fmt: skip
    seconds = time.perf_counter() - start
    report = write_report(sims, Path(args.out).with_suffix(""))
    result: dict[str, Any] = {
        "meta": {
            **run_meta(load_before),
            "policy": POLICY,
            "zero_shot_category": CATEGORY,
            "encoder": encoder.name,
            "seconds": round(seconds, 1),
            "small": args.small,
            "licences": {"davidson": "MIT", "toxigen": "MIT + CDLA-Permissive-2.0"},
        },
        "goals": goals(sims),
        "pools": [{"facts": s.facts, "summary": s.summary()} for s in sims],
    }
    for sim in sims:
        console.print(table(str(sim.facts["name"]), sim.summary(), sim.facts))
    for name, g in result["goals"].items():
        console.print(
            f"{name}: bandit {g['bandit_found']:.1f} vs best single ({g['best_single']}) "
            f"{g['best_single_found']:.1f} -> {'met' if g['at_least_best_single'] else 'MISSED'}; "
            f"{g['vs_random']:.2f}× random; AUPRC {g['bandit_final_auprc']:.3f} vs uncertainty "
            f"{g['uncertainty_final_auprc']:.3f} -> "
            f"{'met' if g['auprc_no_worse_than_uncertainty'] else 'MISSED'}"
        )
    target, md = write_result(result, args.out, markdown(result))
    console.print(f"wrote {target}, {md} and {report} ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
