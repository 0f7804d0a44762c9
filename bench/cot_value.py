"""Benchmark: does training on decision paths help? Label-only vs label-plus-path, same items.

Usage:
    python bench/cot_value.py [--budgets 100 200 400 800] [--seeds 5] [--test 2000]
                              [--step-weight 0.5] [--hidden 128] [--small] [--root DIR]

The question (issue 9): an annotation records the path to each verdict, not only the label.
Does `head.step_targets` (one auxiliary output per decision step, see
`bastion.models.heads`) make better models from the same number of annotated items?

Pool: items from the shared sets whose paths are *known*, derived from their finer labels (read
with `bastion.eval.datasets.load_dataset`; exact duplicate texts dropped; ship-ok sets only):

* Davidson et al.'s tweets (MIT): *hate speech* -> hate, path abusive=yes, protected=yes;
  *offensive* -> not hate, abusive=yes, protected=no; *neither* -> not hate, abusive=no. So the
  path says what the label does not: which non-hate tweets are abusive. All 1,430 hate tweets,
  and 2,000 each of offensive and neither (seeded).
* ToxiGen's statements (MIT + CDLA-Permissive-2.0): *hate_GROUP* -> hate, abusive=yes,
  protected=yes, and group = the file's target group folded into four characteristics;
  *neutral_GROUP* -> not hate, abusive=no.
* HarmBench's behaviours (MIT) -> harmful request, path harmful=yes and domain = its
  SemanticCategory folded into eight domains. WildGuard's prompts (repack MIT): harmful ones the
  same, domain from their subcategory; safe ones -> not a harmful request, harmful=no.

Posts are not requests (harmful-request = 0, harmful=no). Prompts are not hate posts (hate = 0),
except harassment and hate-speech prompts, whose hate label is unknown (masked). The policy (two
categories with the decision steps above) is built here; its steps are what the path answers.

Protocol: a fixed held-out test split (`--test` items, seeded). For each budget and seed, that
many items are drawn from the rest at random (the same items for every variant) and three heads
are trained on their MiniLM embeddings: **label-only** (one hidden layer, `--hidden`),
**label+path** (the same head, plus the step outputs weighted by `--step-weight`, the recipe
default) and **label-only, linear** (no hidden layer, as the default recipe trains). Reported:
binary AUPRC (any category) and AUPRC per category on the test split, mean ± sd over seeds, and
the paired difference label+path - label-only with the number of seeds it wins.

Writes bench/out/cot_value.json (and .md). `--small` (what the test runs): 150 items per source
class, test 300, budgets 60 and 120, 2 seeds.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from bastion.eval.datasets import load_dataset
from bastion.eval.labels import binary_from_categories
from bastion.eval.metrics import binary_metrics
from bastion.models.embedding_cache import EmbeddingCache
from bastion.models.encoder import load_encoder
from bastion.models.heads import MultiLabelHead
from bastion.models.scoring import any_category
from bastion.models.steps import (
    UNKNOWN,
    DecisionPath,
    answer_accuracy,
    step_columns,
    step_targets,
)
from bastion.policy import LoadedPolicy, parse_policy
from common import run_meta, write_result  # bench/ is on sys.path when a benchmark runs

POLICY = """
id: cot-bench
version: 1.0.0
name: Decision-path benchmark
categories:
  - id: hate
    name: Hate
    severity: 3
    definition: Content that attacks or demeans people for a protected characteristic.
    decision_steps:
      - id: abusive
        question: Is the content insulting, demeaning or abusive?
        answers:
          - {answer: "yes", next: protected}
          - {answer: "no", verdict: not_violating}
      - id: protected
        question: Is it aimed at people for a protected characteristic?
        answers:
          - {answer: "yes", next: group}
          - {answer: "no", verdict: not_violating}
      - id: group
        question: Which characteristic?
        answers:
          - {answer: race-or-origin, verdict: violating}
          - {answer: religion, verdict: violating}
          - {answer: gender-or-sexuality, verdict: violating}
          - {answer: disability, verdict: violating}
  - id: harmful-request
    name: Harmful requests
    severity: 3
    definition: A request for help, instructions or content that would cause real-world harm.
    decision_steps:
      - id: harmful
        question: Does it ask for help, instructions or content that could cause real harm?
        answers:
          - {answer: "yes", next: domain}
          - {answer: "no", verdict: not_violating}
      - id: domain
        question: What kind of harm?
        answers:
          - {answer: weapons-violence, verdict: violating}
          - {answer: cyber, verdict: violating}
          - {answer: crime-fraud, verdict: violating}
          - {answer: deception, verdict: violating}
          - {answer: harassment-hate, verdict: violating}
          - {answer: privacy, verdict: violating}
          - {answer: copyright, verdict: violating}
          - {answer: other, verdict: violating}
"""
HATE, REQUEST = 0, 1

TOXIGEN_GROUPS = {
    "asian": "race-or-origin", "black": "race-or-origin", "chinese": "race-or-origin",
    "immigrant": "race-or-origin", "latino": "race-or-origin", "mexican": "race-or-origin",
    "middle_east": "race-or-origin", "native_american": "race-or-origin",
    "jewish": "religion", "muslim": "religion",
    "lgbtq": "gender-or-sexuality", "bisexual": "gender-or-sexuality", "women": "gender-or-sexuality",
    "mental_disability": "disability", "physical_disability": "disability",
}  # fmt: skip
DOMAINS = {
    # HarmBench's SemanticCategory
    "chemical_biological": "weapons-violence", "cybercrime_intrusion": "cyber",
    "illegal": "crime-fraud", "misinformation_disinformation": "deception",
    "harassment_bullying": "harassment-hate", "copyright": "copyright", "harmful": "other",
    # WildGuard's subcategories of harmful prompts
    "violence_and_physical_harm": "weapons-violence", "cyberattack": "cyber",
    "fraud_assisting_illegal_activities": "crime-fraud",
    "causing_material_harm_by_disseminating_misinformation": "deception",
    "disseminating_false_or_misleading_information_encouraging_disinformation_campaigns":
        "deception",
    "toxic_language_hate_speech": "harassment-hate",
    "social_stereotypes_and_unfair_discrimination": "harassment-hate",
    "private_information_individual": "privacy",
    "sensitive_information_organization_government": "privacy",
    "copyright_violations": "copyright",
    "defamation_encouraging_unethical_or_unsafe_actions": "other",
    "mental_health_over-reliance_crisis": "other",
}  # fmt: skip
HATE_UNKNOWN = {"harassment-hate"}  # prompts of this domain may be hate: label unknown
DAVIDSON_CAP = 2000  # offensive and neither tweets each (all hate tweets are kept)
VARIANTS = ("label-only", "label+path", "label-only, linear")


@dataclass
class Pool:
    texts: list[str]
    labels: np.ndarray  # (n, 2) in {0, 1, NaN}: hate, harmful-request
    paths: list[DecisionPath]
    group: list[str]  # source and class, for the composition table


def bench_policy() -> LoadedPolicy:
    return parse_policy(POLICY, source="<bench/cot_value.py>")


def build_pool(root: str | None, seed: int, cap: int | None) -> Pool:
    """The pool with known paths (see the module docstring); `cap` items per source class."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list[tuple[str, tuple[float, float], DecisionPath]]] = {}

    def add(group: str, text: str, labels: tuple[float, float], path: DecisionPath) -> None:
        rows.setdefault(group, []).append((text, labels, path))

    not_request: DecisionPath = {"harmful-request": {"harmful": "no"}}
    davidson = load_dataset("davidson", root=root)
    for text, native in zip(davidson.texts, davidson.native, strict=True):
        if native == "hate":
            hate = {"abusive": "yes", "protected": "yes"}
            add("davidson hate", text, (1, 0), {"hate": hate, **not_request})
        elif native == "offensive":
            hate = {"abusive": "yes", "protected": "no"}
            add("davidson offensive", text, (0, 0), {"hate": hate, **not_request})
        else:
            add("davidson neither", text, (0, 0), {"hate": {"abusive": "no"}, **not_request})
    toxigen = load_dataset("toxigen", root=root)
    for text, native, row_id in zip(toxigen.texts, toxigen.native, toxigen.ids, strict=True):
        target = row_id.split(":")[0].partition("_")[2]
        if native == "hate":
            hate = {"abusive": "yes", "protected": "yes", "group": TOXIGEN_GROUPS[target]}
            add("toxigen hate", text, (1, 0), {"hate": hate, **not_request})
        else:
            add("toxigen neutral", text, (0, 0), {"hate": {"abusive": "no"}, **not_request})
    for name in ("harmbench", "wildguard"):
        data = load_dataset(name, root=root)
        for text, label, native in zip(data.texts, data.binary, data.native, strict=True):
            if label == 0:
                add(f"{name} safe", text, (0, 0), not_request)
                continue
            domain = DOMAINS.get(native or "")
            step = {"harmful": "yes", **({"domain": domain} if domain else {})}
            is_hate = np.nan if domain in HATE_UNKNOWN or domain is None else 0.0
            add(f"{name} harmful", text, (is_hate, 1), {"harmful-request": step})
    caps = {"davidson offensive": DAVIDSON_CAP, "davidson neither": DAVIDSON_CAP}
    texts: list[str] = []
    labels: list[tuple[float, float]] = []
    paths: list[DecisionPath] = []
    groups: list[str] = []
    seen: set[str] = set()
    for group, members in rows.items():
        limits = [x for x in (cap, caps.get(group)) if x is not None]
        limit = min(limits) if limits else None
        order = rng.permutation(len(members))
        taken = 0
        for i in order:
            text, label, path = members[i]
            if text in seen or not text.strip():
                continue
            if limit is not None and taken >= limit:
                break
            seen.add(text)
            texts.append(text)
            labels.append(label)
            paths.append(path)
            groups.append(group)
            taken += 1
    return Pool(texts, np.array(labels, dtype=np.float64), paths, groups)


def fit_heads(
    X: np.ndarray,
    Y: np.ndarray,
    steps: np.ndarray,
    sizes: Sequence[int],
    seed: int,
    hidden: int,
    step_weight: float,
) -> dict[str, MultiLabelHead]:
    """The three variants on the same items (only what they are told differs)."""
    return {
        "label-only": MultiLabelHead(hidden=hidden, seed=seed).fit(X, Y),
        "label+path": MultiLabelHead(hidden=hidden, step_weight=step_weight, seed=seed).fit(
            X, Y, steps=steps, step_sizes=sizes
        ),
        "label-only, linear": MultiLabelHead(hidden=0, seed=seed).fit(X, Y),
    }


def scores(head: MultiLabelHead, X: np.ndarray, Y: np.ndarray, ids: list[str]) -> dict[str, float]:
    """Binary and per-category AUPRC of a head's (uncalibrated) probabilities."""
    probs = head.predict_proba(X)
    out = {"binary": _auprc(binary_from_categories(Y), any_category(probs))}
    for j, cid in enumerate(ids):
        out[cid] = _auprc(Y[:, j], probs[:, j])
    return out


def _auprc(y: np.ndarray, score: np.ndarray) -> float:
    value = binary_metrics(y, score, 0.5).auprc
    return float("nan") if value is None else float(value)


def step_accuracy(head: MultiLabelHead, X: np.ndarray, steps: np.ndarray) -> list[float | None]:
    """Per decision step, the share of known test-set answers the auxiliary outputs get right."""
    return answer_accuracy(head.predict_steps(X), steps)


def summarise(runs: list[dict[str, Any]], metrics: list[str]) -> list[dict[str, Any]]:
    """Per budget and variant: mean and sd over seeds; for label+path, the paired difference
    with label-only and the number of seeds where it is higher."""
    out = []
    for budget in sorted({r["budget"] for r in runs}):
        at = [r for r in runs if r["budget"] == budget]
        for variant in VARIANTS:
            row: dict[str, Any] = {"budget": budget, "variant": variant, "seeds": len(at)}
            for m in metrics:
                values = np.array([r["auprc"][variant][m] for r in at])
                row[m] = float(np.nanmean(values))
                row[f"{m}_sd"] = float(np.nanstd(values))
                if variant == "label+path":
                    base = np.array([r["auprc"]["label-only"][m] for r in at])
                    row[f"{m}_gain"] = float(np.nanmean(values - base))
                    row[f"{m}_wins"] = int((values > base).sum())
            if variant == "label+path":
                per_step = np.array([r["step_accuracy"] for r in at], dtype=float)
                row["step_accuracy"] = np.nanmean(per_step, axis=0).round(3).tolist()
            out.append(row)
    return out


def table(summary: list[dict[str, Any]], metrics: list[str], facts: dict[str, Any]) -> Table:
    t = Table(
        title=f"AUPRC on {facts['test']:,} held-out items; pool {facts['pool']:,} items; "
        f"mean ± sd over {facts['seeds']} seeds; gain = label+path - label-only (wins/seeds)"
    )
    t.add_column("budget", justify="right")
    t.add_column("variant")
    for m in metrics:
        t.add_column(m, justify="right")
    for r in summary:
        cells = [f"{r[m]:.3f} ± {r[f'{m}_sd']:.3f}" for m in metrics]
        if r["variant"] == "label+path":
            cells = [
                f"{c}  ({r[f'{m}_gain']:+.3f}, {r[f'{m}_wins']}/{r['seeds']})"
                for c, m in zip(cells, metrics, strict=True)
            ]
        t.add_row(str(r["budget"]), r["variant"], *cells)
    return t


def markdown(result: dict[str, Any]) -> str:
    metrics = result["metrics"]
    f = result["facts"]
    lines = [
        f"Pool {f['pool']:,} items, test {f['test']:,}; hidden {f['hidden']}, step weight "
        f"{f['step_weight']}; {f['seeds']} seeds. AUPRC mean ± sd; for label+path, the paired "
        "gain over label-only and the seeds it wins.",
        "",
        "| budget | variant | " + " | ".join(metrics) + " |",
        "|---:|---|" + "---:|" * len(metrics),
    ]
    for r in result["summary"]:
        cells = []
        for m in metrics:
            cell = f"{r[m]:.3f} ± {r[f'{m}_sd']:.3f}"
            if r["variant"] == "label+path":
                cell += f" ({r[f'{m}_gain']:+.3f}, {r[f'{m}_wins']}/{r['seeds']})"
            cells.append(cell)
        lines.append(f"| {r['budget']} | {r['variant']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=None, help="100 200 400 800")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--step-weight", type=float, default=0.5, help="the recipe default")
    parser.add_argument("--cap", type=int, default=None, help="items per source class")
    parser.add_argument("--small", action="store_true", help="the test's size (see docstring)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pool and test split")
    parser.add_argument("--root", default=None, help="shared datasets folder")
    parser.add_argument("--out", default="bench/out/cot_value.json")
    parser.add_argument("--cache", default="bench/out/cache/embeddings.sqlite")
    args = parser.parse_args(argv)
    if args.small:
        args.cap, args.test, args.seeds = args.cap or 150, min(args.test, 300), min(args.seeds, 2)
        args.budgets = args.budgets or [60, 120]
    args.budgets = args.budgets or [100, 200, 400, 800]
    console = Console(width=180)
    load_before = os.getloadavg()
    start = time.perf_counter()
    policy = bench_policy()
    ids = policy.category_ids
    columns = step_columns(policy)
    sizes = [len(c.answers) for c in columns]
    pool = build_pool(args.root, args.seed, args.cap)
    steps = step_targets(columns, pool.paths)
    encoder = load_encoder()
    cache = EmbeddingCache(args.cache, encoder)
    with Progress(
        "{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console,
    ) as bar:  # fmt: skip
        task = bar.add_task("embedding the pool", total=len(pool.texts))
        X = cache.encode(pool.texts, progress=lambda n: bar.advance(task, n))
        cache.close()
        rng = np.random.default_rng(args.seed)
        order = rng.permutation(len(pool.texts))
        test, rest = order[: args.test], order[args.test :]
        budgets = [b for b in args.budgets if b <= len(rest)]
        runs: list[dict[str, Any]] = []
        task = bar.add_task("training", total=len(budgets) * args.seeds)
        for budget in budgets:
            for seed in range(args.seeds):
                chosen = np.random.default_rng([args.seed, budget, seed]).choice(
                    rest, budget, replace=False
                )
                heads = fit_heads(
                    X[chosen], pool.labels[chosen], steps[chosen], sizes, seed, args.hidden,
                    args.step_weight,
                )  # fmt: skip
                runs.append(
                    {
                        "budget": budget,
                        "seed": seed,
                        "positives": np.nansum(pool.labels[chosen], axis=0).astype(int).tolist(),
                        "auprc": {
                            v: scores(h, X[test], pool.labels[test], ids) for v, h in heads.items()
                        },
                        "step_accuracy": step_accuracy(heads["label+path"], X[test], steps[test]),
                    }
                )
                bar.advance(task)
    seconds = time.perf_counter() - start
    metrics = ["binary", *ids]
    groups, counts = np.unique(pool.group, return_counts=True)
    facts = {
        "pool": len(pool.texts),
        "test": len(test),
        "seeds": args.seeds,
        "budgets": budgets,
        "hidden": args.hidden,
        "step_weight": args.step_weight,
        "test_positives": dict(
            zip(ids, np.nansum(pool.labels[test], axis=0).astype(int).tolist(), strict=True)
        ),
        "composition": dict(zip(groups.tolist(), counts.tolist(), strict=True)),
        "steps": [c.name for c in columns],
        "steps_known_share": dict(
            zip(
                [c.name for c in columns],
                (steps != UNKNOWN).mean(axis=0).round(3).tolist(),
                strict=True,
            )
        ),
    }
    summary = summarise(runs, metrics)
    result: dict[str, Any] = {
        "meta": {
            **run_meta(load_before),
            "encoder": encoder.name,
            "seconds": round(seconds, 1),
            "small": args.small,
            "licences": {
                "davidson": "MIT",
                "toxigen": "MIT + CDLA-Permissive-2.0",
                "harmbench": "MIT",
                "wildguard": "repack MIT; upstream ODC-By",
            },
        },
        "facts": facts,
        "metrics": metrics,
        "summary": summary,
        "runs": runs,
    }
    console.print(table(summary, metrics, facts))
    target, md = write_result(result, args.out, markdown(result))
    console.print(f"wrote {target} and {md} ({seconds:.0f} s)")
    return result


if __name__ == "__main__":
    main()
