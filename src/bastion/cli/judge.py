"""`bastion judge`: an LLM reads the policy and judges a text, an image or a JSONL file, with reasons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from bastion.cli.output import ExamplesOption, PolicyOption, console, err_console, open_output
from bastion.cli.output import policy_with_examples as load_policy_option
from bastion.errors import BastionError, InputError
from bastion.items import Item
from bastion.media.sources import MediaSource
from bastion.records import OnError, Record, count_lines, read_records, stop_error

if TYPE_CHECKING:
    from bastion.judge import JudgeResult, LLMJudge
    from bastion.judge.settings import JudgeSettings

LLMOption = Annotated[
    str,
    typer.Option(
        "--backend",
        "--llm",
        help="'local' (packaged Gemma 3 270M), 'local:MODEL_DIR', or an OpenAI-compatible base "
        "URL such as http://localhost:8000/v1 (vLLM, llama.cpp server, Ollama, a hosted API).",
    ),
]
LLMModelOption = Annotated[
    str | None,
    typer.Option("--llm-model", help="Model name on the server (default: the first it lists)."),
]
ModeOption = Annotated[
    str,
    typer.Option(
        "--mode",
        help="'generate' (the model writes the JSON judgement), 'score' (decision steps as "
        "scored choices), or 'auto' (generate on servers, score locally).",
    ),
]
FewShotOption = Annotated[
    int,
    typer.Option("--few-shot", min=0, help="Examples chosen per item by similarity (0: fixed)."),
]
CacheOption = Annotated[
    Path | None,
    typer.Option("--llm-cache", help="SQLite file of judgements, so no item is paid for twice."),
]
TimeoutOption = Annotated[float, typer.Option("--llm-timeout", min=0.1, help="Seconds per call.")]
ConcurrencyOption = Annotated[
    int, typer.Option("--llm-concurrency", min=1, help="Calls in flight to a server.")
]
VisionOption = Annotated[
    bool, typer.Option("--llm-vision", help="The server's model reads images (image_url parts).")
]


def judge_settings(**options: Any) -> JudgeSettings:
    """The --llm options as JudgeSettings; a bad value is an InputError naming the option."""
    from pydantic import ValidationError

    from bastion.judge.settings import JudgeSettings

    try:
        return JudgeSettings(**options)
    except ValidationError as exc:
        problems = "; ".join(
            f"--llm-{'-'.join(str(p) for p in e['loc']).replace('_', '-')}: {e['msg']}"
            for e in exc.errors()
        )
        raise InputError(f"LLM options: {problems}") from exc


BandOption = Annotated[
    list[str] | None,
    typer.Option(
        "--llm-band",
        help="Uncertain band of the cheap score that is sent to the LLM: LOW,HIGH for every "
        "category (default 0.2,0.8), or CATEGORY=LOW,HIGH for one (repeat).",
    ),
]


def parse_bands(values: list[str] | None) -> dict[str, Any]:
    """--llm-band values as JudgeSettings fields: {"band": (low, high), "bands": {...}}."""
    out: dict[str, Any] = {"bands": {}}
    for value in values or []:
        category, _, numbers = value.rpartition("=")
        try:
            low, high = (float(x) for x in numbers.split(","))
        except ValueError as exc:
            raise InputError(
                f"--llm-band '{value}' is not LOW,HIGH or CATEGORY=LOW,HIGH (e.g. 0.2,0.8)"
            ) from exc
        if category:
            out["bands"][category] = (low, high)
        else:
            out["band"] = (low, high)
    return out


def judge_command(
    text: Annotated[str | None, typer.Argument(help="Text to judge (omit with --input).")] = None,
    input: Annotated[
        Path | None, typer.Option("--input", "-i", help="JSONL file: one {id, text, ...} per line.")
    ] = None,
    image: Annotated[
        list[Path] | None,
        typer.Option("--image", help="An image to judge with the text (needs --llm-vision)."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write JSONL judgements here ('-' for stdout)."),
    ] = None,
    category: Annotated[
        list[str] | None,
        typer.Option("--category", "-c", help="Judge only this category (repeat for several)."),
    ] = None,
    backend: LLMOption = "local",
    llm_model: LLMModelOption = None,
    mode: ModeOption = "auto",
    few_shot: FewShotOption = 0,
    llm_cache: CacheOption = None,
    llm_timeout: TimeoutOption = 60.0,
    llm_concurrency: ConcurrencyOption = 8,
    llm_vision: VisionOption = False,
    policy: PolicyOption = "openai",
    examples: ExamplesOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the judgements as JSON.")] = False,
    on_error: Annotated[
        OnError, typer.Option(help="A line that cannot be read: record it and go on, or stop.")
    ] = OnError.skip,
    batch_size: Annotated[int, typer.Option(min=1, help="Items judged per batch.")] = 16,
) -> None:
    """Judge content against a policy with an LLM: a verdict per category, with the decision path.

    Examples:

      bastion judge "I know where you live" --category harassment/threatening

      bastion judge "some text" --backend http://localhost:8000/v1 --llm-model my-guard --json

      bastion judge --input posts.jsonl -o judgements.jsonl --policy my-policy.yaml

    Each judgement is {violation, categories, severity, rule_ids, confidence, decision_path,
    rationale}, checked against the policy. A judgement the model could not produce (a timeout,
    an answer still invalid after one repair) is reported with its error, never as safe; the
    command then exits with status 1.
    """
    single = text is not None or bool(image)
    if single == (input is not None):
        raise BastionError("give either a TEXT argument and/or --image, or --input FILE")
    loaded = load_policy_option(policy, examples)
    judge = judge_settings(
        backend=backend,
        model=llm_model,
        mode=mode,
        few_shot=few_shot,
        cache=llm_cache,
        timeout_s=llm_timeout,
        concurrency=llm_concurrency,
        vision=llm_vision,
    ).judge(loaded)
    if single:
        item = Item(text=text or "", images=[MediaSource.of(p, "image") for p in image or []])
        results = judge.judge([item], category)[0]
        if as_json:
            typer.echo(json.dumps([r.as_dict() for r in results], indent=2, ensure_ascii=False))
        else:
            _print_results(results)
        if any(r.judgement is None for r in results):
            raise typer.Exit(1)
        return
    assert input is not None
    if not input.exists():
        raise InputError(f"{input}: no such file")
    failed = _judge_file(judge, input, output, category, on_error, batch_size)
    if failed:
        err_console.print(f"{failed} judgement(s) failed (see 'error' in the output)")
        raise typer.Exit(1)


def _judge_file(
    judge: LLMJudge,
    path: Path,
    output: Path | None,
    categories: list[str] | None,
    on_error: OnError,
    batch_size: int,
) -> int:
    """Every input line gets one output line, in order; returns the number of failed judgements."""
    failed = 0
    progress = Progress(
        TextColumn("[bold]judging[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
    )
    with open_output(output) as out, progress:
        task = progress.add_task("judge", total=count_lines(path))
        batch: list[Record] = []
        for rec in read_records(path):
            if rec.error and on_error is OnError.stop:
                raise stop_error(rec)
            batch.append(rec)
            if len(batch) < batch_size:
                continue
            failed += _flush(judge, batch, categories, out)
            progress.advance(task, len(batch))
            batch = []
        failed += _flush(judge, batch, categories, out)
        progress.advance(task, len(batch))
    return failed


def _flush(judge: LLMJudge, batch: list[Record], categories: list[str] | None, out: IO[str]) -> int:
    items = [r.item for r in batch if r.item is not None]
    judged = iter(judge.judge(items, categories)) if items else iter([])
    failed = 0
    for rec in batch:
        line: dict[str, object] = {"id": rec.id, "line": rec.line}
        if rec.item is None:
            line.update(judgements=None, error=rec.error)
        else:
            results = next(judged)
            failed += sum(r.judgement is None for r in results)
            line.update(judgements=[r.as_dict() for r in results], error=None)
        out.write(json.dumps(line, ensure_ascii=False) + "\n")
    out.flush()
    return failed


def _print_results(results: list[JudgeResult]) -> None:
    for r in results:
        if r.judgement is None:
            err_console.print(f"[red]{r.category}: judgement failed:[/] {escape(r.error or '')}")
            continue
        j = r.judgement
        verdict = "[bold red]violates[/]" if j.violation else "[green]does not violate[/]"
        rules = f" (rules {', '.join(j.rule_ids)})" if j.rule_ids else ""
        console.print(
            f"[bold]{escape(r.category)}[/]: {verdict}{escape(rules)} · "
            f"P(violating) {r.probability:.2f} · {r.mode}{' · cached' if r.cached else ''}"
        )
        for step in j.decision_path:
            quote = f" \u201c{escape(step.evidence)}\u201d" if step.evidence else ""
            console.print(f"   {escape(step.step)}: {escape(step.answer)}{quote}", highlight=False)
        if j.rationale:
            console.print(f"   [dim]{escape(j.rationale)}[/]", highlight=False)
