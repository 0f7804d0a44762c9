"""`bastion recall`, `bastion rank` and `bastion queue`: find the risky items in a pool, order
them by harm, and work them as a review queue whose decisions feed banks and the ranker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from bastion.atomic import open_atomic_text
from bastion.cli.output import ModelOption, PolicyOption, err_console, make_console
from bastion.cli.score import progress_bar
from bastion.errors import BastionError, InputError
from bastion.triage.labels import DEFAULT_QUEUE, ReviewLabel
from bastion.triage.recall_settings import RecallSettings

if TYPE_CHECKING:
    from bastion.triage.rank import Candidate

HomeOption = Annotated[
    Path | None,
    typer.Option("--home", help="Bastion's data directory.", show_default="$BASTION_HOME"),
]
QueueOption = Annotated[str, typer.Option("--queue", "-q", help="The review queue's name.")]

queue_app = typer.Typer(
    help="Work a review queue: list, claim, decide, and feed decisions to banks.",
    no_args_is_help=True,
)


def recall_command(
    pool: Annotated[
        Path, typer.Option("--pool", help="JSONL or Parquet file of items with metadata.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Candidates file to write (JSONL).")],
    bank: Annotated[
        list[str] | None, typer.Option("--bank", "-b", help="A bank to match (repeatable).")
    ] = None,
    policy: PolicyOption = "openai",
    model: ModelOption = "default",
    classifier_threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Classifier channel: score that counts.")
    ] = RecallSettings.classifier_threshold,
    embedding_min_similarity: Annotated[
        float, typer.Option(min=-1.0, max=1.0, help="Embedding channel: nearest exemplar.")
    ] = RecallSettings.embedding_min_similarity,
    metadata_column: Annotated[
        list[str] | None,
        typer.Option(help="Parquet: a column to read into metadata (author, reach, ...)."),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Recall likely violations from a pool through every channel.

    The channels: hash, text and embedding banks (--bank), the classifier, and each author's
    aggregate over their items.

    Example: bastion recall --pool posts.jsonl --bank scam-texts --bank known-images -o cands.jsonl

    A pool line without text or media is reported and the rest of the pool is still recalled.
    """
    from bastion.banks.registry import Banks
    from bastion.batch import ModeratorSpec, open_input
    from bastion.triage.recall import recall

    banks = Banks(home)
    opened = [banks.open(name) for name in bank or []]
    source = (
        open_input(pool, metadata_columns=metadata_column) if metadata_column else open_input(pool)
    )
    with err_console.status("loading the model"):
        moderator = ModeratorSpec.of(policy, model).build()
    settings = RecallSettings(
        classifier_threshold=classifier_threshold,
        embedding_min_similarity=embedding_min_similarity,
    )
    with moderator, progress_bar("recalling") as progress:
        result = recall(
            source,
            moderator,
            banks=opened,
            settings=settings,
            progress=progress,
        )
    _write_jsonl(out, (c.to_json() for c in result.candidates))
    table = Table(title=f"recall from {escape(str(pool))}: {len(result.ids)} items read")
    table.add_column("channel")
    table.add_column("items found", justify="right")
    for channel, n in result.hit_counts().items():
        table.add_row(channel, str(n))
    table.add_row("[bold]any[/]", f"[bold]{len(result.candidates)}[/]")
    make_console().print(table)
    for error in result.errors[:20]:
        err_console.print(f"[yellow]skipped:[/] {escape(error)}", highlight=False)
    if len(result.errors) > 20:
        err_console.print(f"... and {len(result.errors) - 20} more lines skipped")
    err_console.print(f"wrote {len(result.candidates)} candidates -> {escape(str(out))}")


def rank_command(
    candidates: Annotated[
        Path, typer.Option("--candidates", "-c", help="Candidates file from `bastion recall`.")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the ordered queue here (JSONL).")
    ] = None,
    ranker: Annotated[
        Path | None,
        typer.Option(
            help="A trained ranker (`bastion queue train-ranker`).", show_default="expected harm"
        ),
    ] = None,
    enqueue: Annotated[
        str | None, typer.Option(help="Also put the ordered items into this review queue.")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Order candidates by expected harm (or a trained ranker) and write the review queue.

    Example: bastion rank -c cands.jsonl -o queue.jsonl --enqueue default
    """
    from bastion.store import Store
    from bastion.triage import ReviewQueue
    from bastion.triage.rank import LearnedRanker, rank

    rows = _read_candidates(candidates)
    model = LearnedRanker.load(ranker) if ranker is not None else None
    ranked = rank(rows, model)
    if out is not None:
        _write_jsonl(out, (r.to_json() for r in ranked))
    if enqueue is not None:
        with Store.open(home) as store:
            result = ReviewQueue(store, enqueue).enqueue(r.queue_item(len(ranked)) for r in ranked)
        err_console.print(
            f"queue {enqueue!r}: {len(result.added)} added, {len(result.updated)} updated, "
            f"{len(result.already_decided)} already decided"
        )
    table = Table(title=f"top of the queue ({'lambdarank' if model else 'expected harm'})")
    for name in ("#", "id", "score", "expected harm", "channels"):
        table.add_column(name)
    for r in ranked[:10]:
        table.add_row(
            str(r.position + 1),
            escape(r.candidate.item_id),
            f"{r.score:.4g}",
            f"{r.expected_harm:.4g}",
            ", ".join(r.candidate.channels),
        )
    make_console().print(table)


@queue_app.command("list")
def queue_list(
    queue: QueueOption = DEFAULT_QUEUE,
    state: Annotated[str | None, typer.Option(help="pending, claimed or decided.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 20,
    home: HomeOption = None,
) -> None:
    """The queue's items, highest priority first, with counts per state."""
    from bastion.store import Store
    from bastion.triage import ReviewQueue

    with Store.open(home) as store:
        q = ReviewQueue(store, queue)
        counts = q.counts()
        items = q.list(state=state, limit=limit)
    table = Table(
        title=f"queue {escape(queue)}: {counts.pending} pending, {counts.claimed} claimed, "
        f"{counts.decided} decided"
    )
    for name in ("id", "state", "priority", "claimed by", "channels"):
        table.add_column(name)
    for item in items:
        table.add_row(
            escape(item.item_id),
            item.state.value,
            f"{item.priority:.4g}",
            escape(item.claimed_by or ""),
            ", ".join(item.channels),
        )
    make_console().print(table)


@queue_app.command("claim")
def queue_claim(
    reviewer: Annotated[str, typer.Option("--reviewer", "-r", help="Who is reviewing.")],
    n: Annotated[int, typer.Option("-n", min=1, help="How many items.")] = 1,
    queue: QueueOption = DEFAULT_QUEUE,
    home: HomeOption = None,
) -> None:
    """Claim the next items for a reviewer; prints one JSON line per item."""
    from bastion.store import Store
    from bastion.triage import ReviewQueue

    with Store.open(home) as store:
        items = ReviewQueue(store, queue).claim(reviewer, n=n)
    for item in items:
        typer.echo(
            json.dumps(
                {
                    "id": item.item_id,
                    "text": item.text,
                    "media": item.media,
                    "channels": item.channels,
                    "priority": item.priority,
                    "claim_expires_at": None
                    if item.claim_expires_at is None
                    else item.claim_expires_at.isoformat(),
                },
                ensure_ascii=False,
            )
        )
    if not items:
        err_console.print(f"queue {queue!r} has nothing pending")


@queue_app.command("decide")
def queue_decide(
    item_id: Annotated[str, typer.Argument(help="The item's id.")],
    reviewer: Annotated[str, typer.Option("--reviewer", "-r")],
    label: Annotated[ReviewLabel, typer.Option("--label", "-l")],
    category: Annotated[list[str] | None, typer.Option("--category", "-c")] = None,
    note: Annotated[str, typer.Option("--note")] = "",
    queue: QueueOption = DEFAULT_QUEUE,
    home: HomeOption = None,
) -> None:
    """Record a reviewer's decision on an item they hold."""
    from bastion.store import Store
    from bastion.triage import ReviewQueue

    with Store.open(home) as store:
        decision = ReviewQueue(store, queue).decide(
            item_id, reviewer, label, categories=category or [], note=note
        )
    err_console.print(f"{escape(item_id)}: {decision.label.value} by {escape(reviewer)}")


@queue_app.command("feed-bank")
def queue_feed_bank(
    bank: Annotated[str, typer.Option("--bank", "-b", help="The bank to add confirmed items to.")],
    queue: QueueOption = DEFAULT_QUEUE,
    policy: PolicyOption = "openai",
    home: HomeOption = None,
) -> None:
    """Add the queue's confirmed violations to a text or embedding bank (each item once)."""
    from bastion.banks.registry import Banks
    from bastion.policy import load_policy
    from bastion.store import Store
    from bastion.triage import ReviewQueue
    from bastion.triage.feedback import add_confirmed_to_bank
    from bastion.triage.rank import category_severity

    severity = category_severity(load_policy(policy))
    target = Banks(home).open(bank)
    with Store.open(home) as store:
        result = add_confirmed_to_bank(ReviewQueue(store, queue), target, severity)
    err_console.print(
        f"bank {bank!r}: {len(result.added)} entries added (version "
        f"{result.bank.manifest.version}), {len(result.skipped)} skipped"
    )
    for reason in result.skipped[:20]:
        err_console.print(f"[yellow]skipped:[/] {escape(reason)}", highlight=False)


@queue_app.command("train-ranker")
def queue_train_ranker(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to save the ranker (JSON).")],
    queue: QueueOption = DEFAULT_QUEUE,
    policy: PolicyOption = "openai",
    home: HomeOption = None,
) -> None:
    """Train the lambdarank ranker on the queue's decisions."""
    from bastion.policy import load_policy
    from bastion.store import Store
    from bastion.triage import ReviewQueue
    from bastion.triage.rank import LearnedRanker, category_severity

    severity = category_severity(load_policy(policy))
    with Store.open(home) as store:
        examples = ReviewQueue(store, queue).decisions()
    ranker = LearnedRanker().fit_decisions(examples, severity)
    ranker.save(out)
    err_console.print(f"trained on {len(examples)} decisions -> {escape(str(out))}")


def _read_candidates(path: Path) -> list[Candidate]:
    from bastion.triage.rank import Candidate

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    out: list[Candidate] = []
    problems: list[str] = []
    for n, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(Candidate.from_json(json.loads(line)))
        except (json.JSONDecodeError, BastionError) as exc:
            problems.append(f"{path}:{n}: {exc}")
    for problem in problems[:20]:
        err_console.print(f"[yellow]skipped:[/] {escape(problem)}", highlight=False)
    return out


def _write_jsonl(path: Path, rows: Any) -> None:
    with open_atomic_text(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, allow_nan=False))
            f.write("\n")
