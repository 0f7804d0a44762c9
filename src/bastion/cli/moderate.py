"""`bastion moderate`: one text as a table or JSON, or a JSONL file streamed to JSONL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from bastion.cli.judge import (
    BandOption,
    CacheOption,
    ConcurrencyOption,
    LLMModelOption,
    TimeoutOption,
    VisionOption,
    judge_settings,
    parse_bands,
)
from bastion.cli.output import (
    DetectorOption,
    ExamplesOption,
    ModelOption,
    PolicyOption,
    console,
    err_console,
    open_output,
    policy_with_examples,
)
from bastion.errors import BastionError, InputError
from bastion.items import Item
from bastion.media.limits import load_media_limits
from bastion.media.sources import MediaSource
from bastion.policy import UNSCORED_ACTION
from bastion.records import OnError, Record, count_lines, output_line, read_records, stop_error

if TYPE_CHECKING:
    from bastion.moderator import Moderator, Verdict

_ACTION_STYLE = {"allow": "green", "review": "yellow", "block": "bold red"}


def moderate_command(
    text: Annotated[
        str | None, typer.Argument(help="Text to moderate (omit with --input).")
    ] = None,
    input: Annotated[
        Path | None, typer.Option("--input", "-i", help="JSONL file: one {id, text, ...} per line.")
    ] = None,
    image: Annotated[
        list[Path] | None,
        typer.Option("--image", help="An image to moderate with the text (repeat for several)."),
    ] = None,
    video: Annotated[Path | None, typer.Option("--video", help="A video to moderate.")] = None,
    audio: Annotated[
        Path | None, typer.Option("--audio", help="An audio track to moderate.")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write JSONL verdicts here ('-' for stdout)."),
    ] = None,
    policy: PolicyOption = "openai",
    model: ModelOption = "default",
    detector: DetectorOption = None,
    examples: ExamplesOption = None,
    encoder: Annotated[
        str | None,
        typer.Option(help="Encoder directory (sentence-transformers); default bundled."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the full Verdict as JSON.")
    ] = False,
    evidence: Annotated[bool, typer.Option(help="Include evidence in JSONL output lines.")] = False,
    on_error: Annotated[
        OnError, typer.Option(help="A line that cannot be read: record it and go on, or stop.")
    ] = OnError.skip,
    batch_size: Annotated[int, typer.Option(min=1, help="Items scored per batch.")] = 128,
    media_limits: Annotated[
        Path | None,
        typer.Option(
            envvar="BASTION_MEDIA_LIMITS",
            exists=True,
            dir_okay=False,
            help="YAML file of media limits (max_pixels, max_video_seconds, decode_timeout_s, "
            "...), as `serve --media-limits`; unset: the built-in limits.",
        ),
    ] = None,
    llm: Annotated[
        str | None,
        typer.Option(
            "--llm",
            help="Turn on the LLM stage with this backend ('local', 'local:DIR' or a server URL): "
            "cells whose score is in the uncertain band are judged by the LLM reading the policy.",
        ),
    ] = None,
    llm_band: BandOption = None,
    llm_weight: Annotated[
        float, typer.Option(min=0.0, help="Weight of the LLM's log-odds against the cheap score's.")
    ] = 1.0,
    llm_untrained: Annotated[
        bool, typer.Option(help="Also judge every item for categories without a trained model.")
    ] = False,
    llm_model: LLMModelOption = None,
    llm_mode: Annotated[
        str, typer.Option(help="LLM judge mode: auto, generate or score.")
    ] = "auto",
    llm_cache: CacheOption = None,
    llm_timeout: TimeoutOption = 60.0,
    llm_concurrency: ConcurrencyOption = 8,
    llm_vision: VisionOption = False,
) -> None:
    """Moderate a text, or a JSONL file of items, against a policy.

    Examples:

      bastion moderate "I will find where you live and hurt you"

      bastion moderate "some text" --policy mlcommons --json

      bastion moderate --input posts.jsonl --output verdicts.jsonl

      bastion moderate --image meme.png --video clip.mp4 "caption text"

      bastion moderate "some text" --detector zero-shot --json

    Each output line has the input's id and line number, flagged, categories, category_scores,
    action and error (null when scored). Lines that cannot be read still get an output line,
    with flagged null and action "review" (never "allow").
    In the input file a line may add "images": [PATH, ...], "video": PATH and "audio": PATH
    (relative to the file), with or without "text".
    """
    from bastion.moderator import Moderator

    single = text is not None or bool(image) or video is not None or audio is not None
    if single == (input is not None):
        raise BastionError(
            "give either a TEXT argument and/or --image/--video/--audio, or --input FILE"
        )
    loaded = policy_with_examples(policy, examples)
    cascade = None
    if llm is not None:
        cascade = judge_settings(
            backend=llm,
            model=llm_model,
            mode=llm_mode,
            **parse_bands(llm_band),
            weight=llm_weight,
            untrained=llm_untrained,
            cache=llm_cache,
            timeout_s=llm_timeout,
            concurrency=llm_concurrency,
            vision=llm_vision,
        ).cascade(loaded)
    moderator = Moderator(
        loaded,
        model=model,
        detectors=detector or (),
        encoder=encoder,
        batch_size=batch_size,
        media_limits=load_media_limits(media_limits) if media_limits else None,
        cascade=cascade,
    )
    if single:
        item = Item(
            text=text or "",
            images=[MediaSource.of(p, "image") for p in image or []],
            video=MediaSource.of(video, "video") if video else None,
            audio=MediaSource.of(audio, "audio") if audio else None,
        )
        try:
            verdict = moderator.moderate_one(item)
        finally:
            moderator.close()
        if as_json:
            typer.echo(verdict.model_dump_json(indent=2))
        else:
            _print_verdict(_describe(item), verdict)
        if verdict.error:
            raise typer.Exit(1)
        return
    assert input is not None
    if not input.exists():
        raise InputError(f"{input}: no such file")
    with moderator:
        if output is None and not as_json:
            rows = _moderate_file(moderator, input, None, on_error, evidence, batch_size)
            _print_table(rows)
            return
        with open_output(output) as out:
            _moderate_file(moderator, input, out, on_error, evidence, batch_size)


def _describe(item: Item) -> str:
    """The text, and the media given with it, for the table's heading."""
    media = [s.name for s in item.media]
    return " ".join([item.text, *(f"[{m}]" for m in media)]).strip()


def _moderate_file(
    moderator: Moderator,
    path: Path,
    out: IO[str] | None,
    on_error: OnError,
    evidence: bool,
    batch_size: int,
) -> list[tuple[Record, Verdict | None]]:
    """Stream the file in batches; every input line yields exactly one output line, in order."""
    total = count_lines(path)
    kept: list[tuple[Record, Verdict | None]] = []
    errors = 0
    progress = Progress(
        TextColumn("[bold]moderating[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=out is None,
    )

    def flush(batch: list[Record]) -> None:
        scorable = [r for r in batch if r.item is not None]
        verdicts = iter(moderator.moderate([r.item for r in scorable if r.item is not None]))
        for rec in batch:
            verdict = next(verdicts) if rec.item is not None else None
            if out is not None:
                out.write(json.dumps(output_line(rec, verdict, evidence=evidence)) + "\n")
            else:
                kept.append((rec, verdict))
        if out is not None:
            out.flush()
        progress.advance(task, len(batch))

    with progress:
        task = progress.add_task("moderate", total=total)
        batch: list[Record] = []
        for rec in read_records(path):
            if rec.error:
                errors += 1
                err_console.print(f"[yellow]skipped[/] {escape(rec.error or '')}", highlight=False)
                if on_error is OnError.stop:
                    flush(batch)
                    raise stop_error(rec)
            batch.append(rec)
            if len(batch) >= batch_size:
                flush(batch)
                batch = []
        flush(batch)
    if errors:
        err_console.print(
            f"{errors} of {total} lines could not be read (see 'error' in the output)"
        )
    return kept


def _print_verdict(text: str, v: Verdict) -> None:
    if v.error:
        err_console.print(
            f"[red]not scored[/] · action [{_ACTION_STYLE[v.action.value]}]{v.action.value}[/]: "
            f"{escape(v.error)}",
            highlight=False,
        )
        return
    style = _ACTION_STYLE[v.action.value]
    title = f"{'FLAGGED' if v.flagged else 'not flagged'} · action [{style}]{v.action.value}[/]"
    table = Table("category", "score", "flag", "action", title=title, caption=v.policy_version)
    order = sorted(v.category_scores, key=lambda c: -v.category_scores[c])
    for cid in order:
        act = v.category_actions[cid].value
        table.add_row(
            cid,
            f"{v.category_scores[cid]:.3f}",
            "✔" if v.categories[cid] else ("?" if cid in v.uncovered else ""),
            f"[{_ACTION_STYLE[act]}]{act}[/]",
        )
    console.print(_shorten(text, 100), highlight=False, markup=False)
    console.print(table)
    for cid, why in v.uncovered.items():
        console.print(f"  [yellow]{cid} not covered[/]: {escape(why)}", highlight=False)
    if v.rationale:
        console.print(f"  [bold]LLM judge[/]: {escape(v.rationale)}", highlight=False)
    for ev in v.evidence[:3]:
        where = f"{ev.input_type} " if ev.input_type != "text" else ""
        console.print(f"  [dim]{where}{ev.category}: {escape(ev.detail)}[/]", highlight=False)
    for cid, kinds in v.category_applied_input_types.items():
        if kinds and kinds != ["text"]:
            console.print(f"  {cid} flagged from: {', '.join(kinds)}", highlight=False)


def _print_table(rows: list[tuple[Record, Verdict | None]]) -> None:
    table = Table("id", "text", "flagged", "action", "top category", "score")
    for rec, v in rows:
        text = rec.item.text if rec.item is not None else ""
        if v is None or v.error:
            action = UNSCORED_ACTION.value
            table.add_row(
                _shorten(str(rec.id), 20),
                _shorten(text, 60),
                "unknown",
                f"[{_ACTION_STYLE[action]}]{action}[/]",
                "[red]error:[/] " + escape((v.error if v else rec.error) or ""),
                "",
            )
            continue
        top = v.top_category or ""
        style = _ACTION_STYLE[v.action.value]
        table.add_row(
            _shorten(str(rec.id), 20),
            _shorten(text, 60),
            "yes" if v.flagged else "no",
            f"[{style}]{v.action.value}[/]",
            top,
            f"{v.category_scores.get(top, 0.0):.3f}",
        )
    console.print(table)


def _shorten(text: str, n: int) -> str:
    """One line of at most n characters, safe to put in a Rich table (markup escaped)."""
    flat = " ".join(text.split())
    return escape(flat if len(flat) <= n else flat[: n - 1] + "…")
