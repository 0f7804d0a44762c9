"""`bastion score`: a backlog file (JSONL or Parquet) scored to JSONL or Parquet, in-process or on Ray."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from bastion.cli.output import ModelOption, PolicyOption, err_console
from bastion.errors import BastionError

if TYPE_CHECKING:
    from bastion.batch import ScoreSummary
    from bastion.batch.local import ProgressCallback

DEFAULT_ACTORS = 2


class Engine(StrEnum):
    local = "local"
    ray = "ray"


def score_command(
    input: Annotated[
        Path,
        typer.Option(
            "--input", "-i", help="JSONL ({id, text, ...} per line) or Parquet file of items."
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="Where to write: .jsonl or .parquet, one row per input row."
        ),
    ],
    policy: PolicyOption = "openai",
    model: ModelOption = "default",
    engine: Annotated[
        Engine, typer.Option(help="local: in this process; ray: a Ray Data pipeline of actors.")
    ] = Engine.local,
    batch_size: Annotated[
        int,
        typer.Option(
            min=1,
            help="Rows per model call; larger calls let the encoder sort more texts by length, so they pad less.",
        ),
    ] = 1024,
    actors: Annotated[
        int | None,
        typer.Option(
            min=1, help="Ray: actors, each holding one model.", show_default=str(DEFAULT_ACTORS)
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray: the cluster's address.", show_default="start Ray on this machine"),
    ] = None,
    text_column: Annotated[
        str | None,
        typer.Option(help="Parquet: the column holding the text.", show_default="text"),
    ] = None,
    id_column: Annotated[
        str | None,
        typer.Option(help="Parquet: the column holding the id.", show_default="id"),
    ] = None,
) -> None:
    """Score a backlog: every input row gets one output row, in input order.

    Examples:

      bastion score --input backlog.parquet --output scores.parquet

      bastion score --input posts.jsonl --output scores.jsonl --engine ray --actors 4

    Output rows have row, line, id, flagged, categories, category_scores, action, truncated,
    policy_version, model_version and error (null when scored). A row with no usable text, or a
    JSONL line that is not JSON, gets an error, flagged null and action "review" (never
    "allow"), and the run goes on. The output file appears only when the run is complete.
    """
    from bastion.batch import ModeratorSpec, check_output, open_input, score_local

    if engine is Engine.local and (actors is not None or ray_address is not None):
        raise BastionError("--actors and --ray-address are for --engine ray")
    source = open_input(input, text_column=text_column, id_column=id_column)
    check_output(output, input)
    spec = ModeratorSpec.of(policy, model, batch_size=batch_size)
    if engine is Engine.ray:
        from bastion.batch.ray_engine import score_ray

        n = actors or DEFAULT_ACTORS
        with progress_bar(f"scoring on Ray ({n} actors)") as progress:
            summary = score_ray(
                source, output, spec, actors=n, address=ray_address, progress=progress
            )
    else:
        with err_console.status("loading the model"):
            moderator = spec.build()
        with moderator, progress_bar("scoring") as progress:
            summary = score_local(
                source, output, moderator, batch_size=batch_size, progress=progress
            )
    _print_summary(summary)


@contextmanager
def progress_bar(label: str) -> Iterator[ProgressCallback]:
    """A Rich progress bar of rows written out of the total, as an engine's progress callback."""
    with Progress(
        TextColumn(f"[bold]{escape(label)}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
    ) as bar:
        task = bar.add_task("score", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


def _print_summary(s: ScoreSummary) -> None:
    err_console.print(
        f"scored {s.rows} rows in {s.seconds:.1f}s ({s.rows_per_s:.1f} rows/s): "
        f"{s.flagged} flagged, {s.errors} not scored (see 'error') -> {escape(str(s.output))}",
        highlight=False,
    )
