"""`bastion mine`: choose what to label next, learn from the labels, report, and simulate."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from bastion.cli.output import PolicyOption, err_console, make_console
from bastion.cli.triage import HomeOption
from bastion.errors import InputError

if TYPE_CHECKING:
    import numpy as np

    from bastion.mining.project import Batch, LabelRecord, MiningProject

mine_app = typer.Typer(
    help="Choose what to label next with a bandit over strategies; learn; report; simulate.",
    no_args_is_help=True,
)

ProjectOption = Annotated[
    str, typer.Option("--project", help="The mining project's name (a folder under home/mining).")
]


class _Scoring:
    """Embeddings (cached in the project) and the policy's zero-shot P(violation)."""

    def __init__(self, root: Path, policy: str, categories: Sequence[str]) -> None:
        self.root = root
        self.policy_name = policy
        self.categories = list(categories)

    @cached_property
    def cache(self) -> Any:
        from bastion.mining.project import EMBEDDINGS
        from bastion.models.embedding_cache import EmbeddingCache
        from bastion.models.encoder import load_encoder

        with err_console.status("loading the text encoder"):
            return EmbeddingCache(self.root / EMBEDDINGS, load_encoder())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        from bastion.cli.score import progress_bar

        with progress_bar("embedding") as advance:
            done = 0

            def step(n: int) -> None:
                nonlocal done
                done += n
                advance(done, len(texts))

            X: np.ndarray = self.cache.encode(list(texts), progress=step)
        return X

    def zero_shot(self, X: np.ndarray) -> np.ndarray:
        detector = _zero_shot_detector(self.policy_name, self.cache)
        probs, _ = detector.window_probs(X)
        ids = list(detector.category_ids)
        unknown = [c for c in self.categories if c not in ids]
        if unknown:
            raise InputError(f"policy {self.policy_name!r} has no category {unknown[0]!r}")
        columns = [ids.index(c) for c in self.categories] or list(range(len(ids)))
        best: np.ndarray = probs[:, columns].max(axis=1)
        return best

    def severity(self) -> Any:
        from bastion.policy.loader import load_policy

        levels = {c.id: int(c.severity) for c in load_policy(self.policy_name).categories}
        top = max(levels.values())

        def weight(categories: Sequence[str]) -> float:
            known = [levels[c] for c in categories if c in levels]
            return max(known) / top if known else 1.0

        return weight


#: Fitted zero-shot detectors by policy name, so one process fits each policy once.
_DETECTORS: dict[str, Any] = {}


def _zero_shot_detector(policy: str, cache: Any) -> Any:
    """The policy's zero-shot detector, fitted once per process; the first fit goes through
    the project's embedding cache, so the policy's examples are embedded once per project."""
    if policy not in _DETECTORS:
        from bastion.detectors.zero_shot import ZeroShotDetector
        from bastion.policy.loader import load_policy

        _DETECTORS[policy] = ZeroShotDetector(cache).fit(load_policy(policy))
    return _DETECTORS[policy]


def _root(home: Path | None, project: str) -> Path:
    from bastion.store.paths import bastion_home

    return (home or bastion_home()) / "mining" / project


def _report_problems(problems: Sequence[str], what: str) -> None:
    if not problems:
        return
    err_console.print(f"[yellow]{len(problems)} {what} skipped:[/]")
    for line in problems[:20]:
        err_console.print(f"  {escape(line)}", highlight=False)
    if len(problems) > 20:
        err_console.print(f"  ... and {len(problems) - 20} more")


@mine_app.command("next")
def next_command(
    pool: Annotated[Path, typer.Option("--pool", help="JSONL or Parquet file of items to mine.")],
    budget: Annotated[int, typer.Option("--budget", "-n", help="How many items to choose.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the batch here (JSONL).")
    ] = None,
    queue: Annotated[
        str | None, typer.Option("--queue", "-q", help="Put the batch in this review queue.")
    ] = None,
    project: ProjectOption = "default",
    policy: PolicyOption = "openai",
    category: Annotated[
        list[str] | None,
        typer.Option("--category", help="Only these categories count as a violation (repeatable)."),
    ] = None,
    bandit: Annotated[
        str,
        typer.Option(help="thompson (default), linucb, or one strategy's name to use it alone."),
    ] = "thompson",
    reward: Annotated[
        str, typer.Option(help="positives (severity-weighted), auprc, or blend.")
    ] = "positives",
    floor: Annotated[
        float, typer.Option(min=0.0, max=0.99, help="Share of every batch kept uniform random.")
    ] = 0.05,
    validation: Annotated[
        Path | None,
        typer.Option(help="Labelled JSONL (text, label) for the auprc and blend rewards."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed of a new project.")] = 0,
    home: HomeOption = None,
) -> None:
    """Choose the next batch to label: deduplicated, diverse, each pick logged with its propensity.

    The first call creates the project with the options given (policy, categories, bandit,
    reward, floor); later calls reuse them. Example:

        bastion mine next --pool posts.jsonl --budget 100 --out batch.jsonl
    """
    from bastion.mining.loop import MiningSettings
    from bastion.mining.project import STATE, MiningProject, read_pool

    if (out is None) == (queue is None):
        raise InputError("give exactly one of --out FILE and --queue NAME for the batch")
    root = _root(home, project)
    items, problems = read_pool(pool)
    _report_problems(problems, "pool lines")
    if (root / STATE).exists():
        mp = MiningProject.open(root)  # an unreadable state is an error, never started over
    else:
        settings = MiningSettings(policy=bandit, reward=reward, floor=floor)
        mp = MiningProject.create(
            root, items, pool.resolve(), policy=policy, categories=category or [],
            settings=settings, validation=validation, seed=seed,
        )  # fmt: skip
    scoring = _Scoring(root, mp.state.policy, mp.state.categories)
    batch = mp.next(items, budget, scoring.embed, scoring.zero_shot)
    if batch.available < budget:
        err_console.print(
            f"[yellow]the pool has only {batch.available} items left to label (budget "
            f"{budget}): the batch holds them all[/]"
        )
    if out is not None:
        _write_batch(batch, out)
        where = str(out)
    else:
        assert queue is not None
        _enqueue(batch, queue, home)
        where = f"queue {queue!r}"
    shares = ", ".join(f"{a} {p:.0%}" for a, p in batch.allocation.items() if p >= 0.005)
    make_console().print(
        f"round {batch.round}: {len(batch.items)} items -> {escape(where)} (split: {shares})",
        highlight=False,
    )


def _write_batch(batch: Batch, out: Path) -> None:
    from bastion.atomic import write_atomic

    rows = (
        json.dumps(
            {
                "id": item.item_id,
                "text": item.text,
                "round": batch.round,
                "slot": d.slot,
                "strategy": d.strategy,
                "propensity": d.propensity,
            },
            ensure_ascii=False,
        ).encode()
        + b"\n"
        for item, d in batch.items
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, rows)


def _enqueue(batch: Batch, queue: str, home: Path | None) -> None:
    from bastion.store import Store
    from bastion.triage import ReviewQueue
    from bastion.triage.queue import QueueItem

    n = len(batch.items)
    items = [
        QueueItem(
            item_id=item.item_id,
            priority=float(n - d.slot),
            text=item.text,
            metadata={
                "mining_round": batch.round,
                "strategy": d.strategy,
                "propensity": d.propensity,
            },
            channels=[f"mining:{d.strategy}"],
        )
        for item, d in batch.items
    ]
    with Store.open(home) as store:
        ReviewQueue(store, queue).enqueue(items)


@mine_app.command("learn")
def learn_command(
    labels: Annotated[
        Path | None, typer.Option("--labels", help="JSONL of {id, label, categories?}.")
    ] = None,
    queue: Annotated[
        str | None, typer.Option("--queue", "-q", help="Read the decisions from this queue.")
    ] = None,
    pool: Annotated[
        Path | None, typer.Option("--pool", help="The pool (default: the project's).")
    ] = None,
    project: ProjectOption = "default",
    home: HomeOption = None,
) -> None:
    """Take labels back: retrain the model and pay the bandit for the picks they answer.

    Labels for items not in the pool are refused and listed; an item labelled more than once
    with different labels keeps every label, is flagged, and the majority counts.
    """
    from bastion.mining.project import MiningProject, read_labels, read_pool

    if (labels is None) == (queue is None):
        raise InputError("give exactly one of --labels FILE and --queue NAME")
    root = _root(home, project)
    mp = MiningProject.open(root)
    items, _pool_problems = read_pool(pool or Path(mp.state.pool.path))
    if labels is not None:
        records, problems = read_labels(labels, str(labels))
    else:
        assert queue is not None
        records, problems = _queue_labels(queue, home)
    _report_problems(problems, "label lines")
    scoring = _Scoring(root, mp.state.policy, mp.state.categories)
    validation = _validation(mp, scoring)
    result = mp.learn(
        records, items, scoring.embed, severity=scoring.severity(),
        validation=validation, problems=problems,
    )  # fmt: skip
    console = make_console()
    if result.unknown:
        shown = ", ".join(map(repr, result.unknown[:10]))
        err_console.print(
            f"[yellow]{len(result.unknown)} labels name items not in the pool, refused:[/] {escape(shown)}"
        )
    for item_id, votes in list(result.conflicts.items())[:20]:
        verdict = "tied, left out" if item_id in result.unresolved else "majority used"
        err_console.print(
            f"[yellow]conflicting labels[/] for {escape(item_id)!r}: "
            f"{votes.get('1', 0)} violating, {votes.get('0', 0)} not ({verdict})",
            highlight=False,
        )
    paid = ", ".join(f"{a} {t:.0f}/{n}" for a, (t, n) in result.rewarded.items())
    console.print(
        f"accepted {result.accepted} labels; {result.labelled} items labelled, "
        f"{result.positives} violating; bandit paid: {paid or 'nothing new'}",
        highlight=False,
    )


def _queue_labels(queue: str, home: Path | None) -> tuple[list[LabelRecord], list[str]]:
    from datetime import UTC, datetime

    from bastion.mining.project import LabelRecord
    from bastion.store import Store
    from bastion.triage import ReviewQueue
    from bastion.triage.queue import ReviewLabel

    values = {ReviewLabel.violating: 1, ReviewLabel.not_violating: 0, ReviewLabel.unsure: None}
    with Store.open(home) as store:
        decided = ReviewQueue(store, queue).decisions()
    records = [
        LabelRecord(
            item_id=d.item_id,
            label=values[d.label],
            categories=list(d.categories),
            source=f"queue:{queue}:{d.reviewer}",
            received_at=datetime.now(UTC),
        )
        for d in decided
    ]
    return records, []


def _validation(mp: MiningProject, scoring: _Scoring) -> tuple[np.ndarray, np.ndarray] | None:
    from bastion.mining.project import read_gold

    if mp.state.validation is None:
        return None
    texts, labels, problems = read_gold(Path(mp.state.validation))
    _report_problems(problems, "validation lines")
    return scoring.embed(texts), labels


@mine_app.command("report")
def report_command(
    project: ProjectOption = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    home: HomeOption = None,
) -> None:
    """The pool's prevalence with a 95 % interval, and what each strategy found.

    Prevalence comes from the random slots (unbiased), "alone" estimates each strategy's
    violations per label with the same random floor, from the propensity log.
    """
    from bastion.mining.project import MiningProject
    from bastion.mining.strategies import STRATEGIES

    report = MiningProject.open(_root(home, project)).report()
    p = report.prevalence
    if as_json:
        payload = {
            "prevalence": asdict(p), "slots_used": report.slots_used,
            "labelled": report.labelled, "positives": report.positives, "rounds": report.rounds,
            "per_strategy": report.per_strategy,
            "alone": {a: asdict(v) for a, v in report.alone.items()},
            "bandit": report.bandit,
        }  # fmt: skip
        typer.echo(json.dumps(payload, indent=1, default=float))
        return
    console = make_console()
    console.print(
        f"prevalence {100 * p.estimate:.2f} % (95 % interval {100 * p.low:.2f}-"
        f"{100 * p.high:.2f} %) of {p.pool:,} items; {p.known} violations known, "
        f"{p.random_hits} of {p.random_draws} random picks violating; {report.rounds} rounds, "
        f"{report.slots_used} of {report.draws} picks usable (the rest wait on labels)",
        highlight=False,
    )
    table = Table("strategy", "picked", "violating", "rate", "alone (est.)", "± se")
    for arm in STRATEGIES:
        got = report.per_strategy.get(arm, {"picked": 0, "violations": 0})
        alone = report.alone.get(arm)
        rate = got["violations"] / got["picked"] if got["picked"] else float("nan")
        table.add_row(
            arm, f"{got['picked']:.0f}", f"{got['violations']:.0f}", _pct(rate),
            _pct(alone.value if alone else float("nan")),
            _pct(alone.stderr if alone else float("nan")),
        )  # fmt: skip
    console.print(table)


def _pct(x: float) -> str:
    import numpy as np

    return "-" if not np.isfinite(x) else f"{100 * x:.1f} %"


@mine_app.command("simulate")
def simulate_command(
    pool: Annotated[
        Path, typer.Option("--pool", help="JSONL of items with text and a gold 'label' (0/1).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the report.")],
    budget: Annotated[int, typer.Option(help="Labels to spend per run.")] = 2000,
    batch: Annotated[int, typer.Option(help="Labels per batch.")] = 100,
    seeds: Annotated[int, typer.Option(help="Random seeds (runs per policy).")] = 5,
    seed_positives: Annotated[int, typer.Option(help="Known violations to start from.")] = 5,
    seed_random: Annotated[int, typer.Option(help="Random items labelled at the start.")] = 45,
    policy: PolicyOption = "openai",
    bandit: Annotated[str, typer.Option(help="thompson or linucb.")] = "thompson",
    reward: Annotated[str, typer.Option(help="positives, auprc or blend.")] = "positives",
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Simulate only these policies (repeatable).")
    ] = None,
) -> None:
    """Replay mining with the pool's gold labels as annotators: the bandit against each strategy.

    Writes index.html (learning curves as PNGs and the table) and simulation.json into --out.
    """
    from bastion.mining.loop import MiningSettings
    from bastion.mining.project import read_gold
    from bastion.mining.simulate import BANDIT, SimulationConfig, rounds, simulate, write_report
    from bastion.mining.strategies import STRATEGIES

    texts, gold, problems = read_gold(pool)
    _report_problems(problems, "pool lines")
    root = out / ".cache"
    scoring = _Scoring(root, policy, [])
    X = scoring.embed(texts)
    prior = scoring.zero_shot(X)
    config = SimulationConfig(
        budget=budget, batch=batch, seeds=seeds, seed_positives=seed_positives,
        seed_random=seed_random, policies=tuple(only or (BANDIT, *STRATEGIES)),
        settings=MiningSettings(policy=bandit, reward=reward),
    )  # fmt: skip
    from bastion.cli.score import progress_bar

    with progress_bar("simulating batches") as advance:
        done = 0
        total = rounds(config)

        def step(n: int) -> None:
            nonlocal done
            done += n
            advance(done, total)

        sim = simulate(X, gold, prior, config, name=pool.stem, progress=step)
    page = write_report([sim], out)
    table = Table("policy", "found", "× random", "final AUPRC", "AULC", "regret")
    for row in sim.summary():
        table.add_row(
            row["policy"], f"{row['found']:.1f}", f"{row['vs_random']:.2f}",
            f"{row['final_auprc']:.3f}", f"{row['aulc']:.3f}", f"{row['regret_found']:.1f}",
        )  # fmt: skip
    make_console().print(table)
    err_console.print(f"report: {escape(str(page))}", highlight=False)
