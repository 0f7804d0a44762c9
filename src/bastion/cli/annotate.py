"""`bastion annotate`: people, projects and tasks of the annotation workflow; its report and export.

The web app (`bastion serve`, then /ui) is where people annotate and adjudicate; these commands
set it up and read the results out:

    bastion annotate person add alice --role annotator
    bastion annotate project create threats --policy my-policy.yaml --member alice --member bob
    bastion mine next --pool posts.jsonl --budget 50 --out batch.jsonl
    bastion annotate tasks add threats --input batch.jsonl --pre classifier
    bastion annotate report threats
    bastion annotate export threats --out exports/threats
"""

from __future__ import annotations

import json
import math
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from bastion.cli.output import err_console, make_console
from bastion.cli.triage import HomeOption
from bastion.errors import InputError

annotate_app = typer.Typer(
    help="Annotation projects: people, tasks, agreement report, export.", no_args_is_help=True
)
person_app = typer.Typer(help="People who log in to the web app.", no_args_is_help=True)
project_app = typer.Typer(help="Annotation projects.", no_args_is_help=True)
tasks_app = typer.Typer(help="Tasks of a project.", no_args_is_help=True)
annotate_app.add_typer(person_app, name="person")
annotate_app.add_typer(project_app, name="project")
annotate_app.add_typer(tasks_app, name="tasks")

ACTOR = "cli"
"""Who the audit log names for changes made from the command line."""

BORDERLINE_STRATEGIES = frozenset({"uncertainty"})
"""Mining strategies whose picks are borderline by construction (the model is unsure of them)."""


@contextmanager
def _workflow(home: Path | None) -> Iterator[Any]:
    from bastion.annotation.workflow import Workflow
    from bastion.store import Store

    with Store.open(home) as store:
        yield Workflow(store)


@person_app.command("add")
def person_add(
    name: Annotated[str, typer.Argument(help="Login name (one word).")],
    role: Annotated[str, typer.Option(help="admin, reviewer or annotator.")] = "annotator",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    home: HomeOption = None,
) -> None:
    """Add someone who logs in to the web app. Without --password-stdin a random password is
    made and printed once.

    Example: bastion annotate person add alice --role annotator
    """
    password = sys.stdin.readline().rstrip("\n") if password_stdin else secrets.token_urlsafe(12)
    with _workflow(home) as workflow:
        person = workflow.add_person(name, role, password, ACTOR)
    make_console().print(f"added {escape(person.name)} ({person.role.value})", highlight=False)
    if not password_stdin:
        make_console().print(f"password (shown once): {password}", highlight=False)


@project_app.command("create")
def project_create(
    project_id: Annotated[str, typer.Argument(help="Project id (letters, digits, - and _).")],
    policy: Annotated[str, typer.Option(help="Policy: a built-in pack name or a YAML file.")],
    category: Annotated[
        list[str] | None, typer.Option(help="Annotate only these categories (repeatable).")
    ] = None,
    overlap: Annotated[int, typer.Option(help="People per task.")] = 2,
    borderline_overlap: Annotated[
        int, typer.Option(help="People per task for items the miner marked borderline.")
    ] = 3,
    blind_share: Annotated[
        float, typer.Option(help="Share of tasks shown without the suggestion (0-1).")
    ] = 0.2,
    member: Annotated[
        list[str] | None, typer.Option(help="Add this person to the project (repeatable).")
    ] = None,
    name: Annotated[str, typer.Option(help="A readable name (default: the id).")] = "",
    home: HomeOption = None,
) -> None:
    """Create a project; the policy's text is frozen into it, so every task of the project is
    annotated against one policy version.

    Example: bastion annotate project create threats --policy policy.yaml --member alice
    """
    from bastion.policy import load_policy
    from bastion.policy.loader import policy_text

    loaded = load_policy(policy)
    with _workflow(home) as workflow:
        project = workflow.create_project(
            project_id,
            policy_text(loaded),
            name=name,
            categories=category or [],
            overlap=overlap,
            borderline_overlap=borderline_overlap,
            blind_share=blind_share,
            actor=ACTOR,
        )
        for person in member or []:
            workflow.add_member(project.id, person, ACTOR)
    make_console().print(
        f"created {escape(project.id)}: policy {project.policy.version}, "
        f"categories {', '.join(project.categories)}",
        highlight=False,
    )


@project_app.command("member")
def project_member(
    project_id: Annotated[str, typer.Argument(help="Project id.")],
    names: Annotated[list[str], typer.Argument(help="People to add.")],
    home: HomeOption = None,
) -> None:
    """Add people to a project. Example: bastion annotate project member threats carol"""
    with _workflow(home) as workflow:
        for name in names:
            workflow.add_member(project_id, name, ACTOR)
    make_console().print(f"added {len(names)} to {escape(project_id)}", highlight=False)


@tasks_app.command("add")
def tasks_add(
    project_id: Annotated[str, typer.Argument(help="Project id.")],
    input: Annotated[
        Path,
        typer.Option(
            "--input",
            "-i",
            help="JSONL: id, text, optional media (paths), borderline, gold; a `bastion mine "
            "next` batch works as is.",
        ),
    ],
    pre: Annotated[
        str, typer.Option(help="Pre-annotate with: none, classifier or llm.")
    ] = "classifier",
    model: Annotated[
        str, typer.Option(help="Classifier for --pre classifier: default, zero-shot or a folder.")
    ] = "default",
    backend: Annotated[
        str, typer.Option(help="LLM for --pre llm: local or an OpenAI-compatible base URL.")
    ] = "local",
    home: HomeOption = None,
) -> None:
    """Add tasks from a file, with suggestions from the classifier or the LLM judge.

    Items the miner picked for uncertainty (or marked `"borderline": true`) get the project's
    borderline overlap. A row with `"gold": {"CATEGORY": {"violation": true, "path": {...}}}`
    is a gold item. Bad rows are named and skipped; the rest are added.

    Example: bastion annotate tasks add threats --input batch.jsonl --pre classifier
    """
    from bastion.annotation.preannotate import suggest
    from bastion.annotation.workflow import NewTask
    from bastion.mining.project import json_rows

    if pre not in ("none", "classifier", "llm"):
        raise InputError(f"--pre must be none, classifier or llm, not {pre!r}")
    rows, problems = json_rows(input)
    tasks = []
    for where, row in rows:
        task = _task_from_row(row, input.parent)
        if isinstance(task, str):
            problems.append(f"{where}: {task}")
        else:
            tasks.append(task)
    with _workflow(home) as workflow:
        project = workflow.project(project_id)
        if tasks and pre != "none":
            moderator = judge = None
            if pre == "classifier":
                from bastion.moderator import Moderator

                moderator = Moderator(project.policy, model=model)
            else:
                from bastion.judge.settings import JudgeSettings

                judge = JudgeSettings(backend=backend).judge(project.policy)
            with err_console.status(f"pre-annotating {len(tasks)} items ({pre})"):
                suggestions = suggest(
                    [t.text for t in tasks],
                    project.policy,
                    project.categories,
                    moderator=moderator,
                    judge=judge,
                )
            tasks = [
                NewTask(**{**t.__dict__, "suggestions": s})
                for t, s in zip(tasks, suggestions, strict=True)
            ]
        result = workflow.add_tasks(project_id, tasks, ACTOR)
    problems += result.problems
    for problem in problems:
        err_console.print(f"[yellow]skipped[/] {escape(problem)}", highlight=False)
    make_console().print(
        f"added {result.added} tasks to {escape(project_id)}"
        + (f"; {len(result.already_there)} were already there" if result.already_there else "")
        + (f"; {len(problems)} skipped" if problems else ""),
        highlight=False,
    )
    if problems:
        raise typer.Exit(1)


def _task_from_row(row: dict[str, Any], base: Path) -> Any:
    """A NewTask from one input row, or why the row cannot be one."""
    from bastion.annotation.workflow import GoldAnswer, NewTask

    item_id = row.get("id")
    if not isinstance(item_id, str | int) or isinstance(item_id, bool) or str(item_id) == "":
        return "no 'id'"
    text = row.get("text", "")
    if not isinstance(text, str):
        return "'text' is not a string"
    media = row.get("media", [])
    if isinstance(media, str):
        media = [media]
    if not isinstance(media, list) or not all(isinstance(m, str) for m in media):
        return "'media' is not a list of file paths"
    paths = [str(p if Path(p).is_absolute() else base / p) for p in media]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        return f"media file {missing[0]} not found"
    borderline = row.get("borderline", row.get("strategy") in BORDERLINE_STRATEGIES)
    if not isinstance(borderline, bool):
        return "'borderline' is not true or false"
    gold = None
    if "gold" in row:
        raw = row["gold"]
        if not isinstance(raw, dict) or not raw:
            return "'gold' must map each category to its answer"
        gold = {}
        for category, answer in raw.items():
            if isinstance(answer, bool):
                gold[category] = GoldAnswer(answer)
            elif isinstance(answer, dict) and isinstance(answer.get("violation"), bool):
                path = answer.get("path", {})
                if not isinstance(path, dict):
                    return f"gold path of {category!r} is not a mapping of step to answer"
                gold[category] = GoldAnswer(
                    answer["violation"], {str(k): str(v) for k, v in path.items()}
                )
            else:
                return f"gold answer of {category!r} needs 'violation': true or false"
    known = {"id", "text", "media", "borderline", "gold"}
    metadata = {k: v for k, v in row.items() if k not in known}
    return NewTask(str(item_id), text, paths, metadata, borderline, {}, gold)


@annotate_app.command("report")
def report_command(
    project_id: Annotated[str, typer.Argument(help="Project id.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    home: HomeOption = None,
) -> None:
    """Agreement: Krippendorff's alpha per category and decision step, Cohen's kappa per pair,
    gold accuracy per annotator, and suggestion acceptance in the shown and blind slices.

    Example: bastion annotate report threats
    """
    with _workflow(home) as workflow:
        report = workflow.report(project_id)
    if json_out:
        sys.stdout.write(json.dumps(report.as_dict(), allow_nan=True, indent=2) + "\n")
        return
    console = make_console()
    t = report.tasks
    console.print(
        f"{escape(report.project)} (policy {report.policy_version}): {t['open']} open, "
        f"{t['adjudication']} in adjudication, {t['done']} done",
        highlight=False,
    )
    alphas = Table("verdict / step", "Krippendorff's alpha", title="Agreement")
    for name, value in {**report.label_alpha, **report.step_alpha}.items():
        low = name in report.low_agreement_steps
        alphas.add_row(escape(name), _num(value) + (" [red]low[/]" if low else ""))
    console.print(alphas)
    pairs = Table("pair", "Cohen's kappa", "shared", title="Annotator pairs")
    for name, (kappa, n) in report.pairwise_kappa.items():
        pairs.add_row(escape(name), _num(kappa), str(n))
    console.print(pairs)
    gold = Table("annotator", "gold accuracy", "gold items", title="Gold")
    for name, (accuracy, n) in report.gold_accuracy.items():
        gold.add_row(escape(name), _num(accuracy), str(n))
    console.print(gold)
    shown = Table("slice", "same verdict as suggestion", "annotations", title="Suggestions")
    for name, (rate, n) in report.acceptance.items():
        shown.add_row(name, _num(rate), str(n))
    console.print(shown)
    if report.low_agreement_steps:
        console.print(
            "steps to look at with the policy team: " + ", ".join(report.low_agreement_steps),
            highlight=False,
        )


@annotate_app.command("export")
def export_command(
    project_id: Annotated[str, typer.Argument(help="Project id.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the export to.")],
    home: HomeOption = None,
) -> None:
    """Write the finished annotations: classification.jsonl (for `bastion train`), sft.jsonl
    (TRL chat format), preferences.jsonl (DPO pairs), policy.yaml, recipe.yaml and a dataset
    card (README.md).

    Example: bastion annotate export threats --out exports/threats
    """
    from bastion.annotation.export import write_export

    with _workflow(home) as workflow:
        project = workflow.project(project_id)
        finished = workflow.finished(project_id)
        report = workflow.report(project_id)
    if not finished:
        raise InputError(f"project {project_id!r} has no finished tasks to export yet")
    files = write_export(out, finished, project.policy, report.label_alpha | report.step_alpha)
    make_console().print(
        f"exported {len(finished)} annotations to {escape(str(out))}: "
        + ", ".join(f"{name} ({n})" for name, n in files.items()),
        highlight=False,
    )


@annotate_app.command("audit")
def audit_command(
    project_id: Annotated[
        str | None, typer.Option("--project", help="Only this project's entries.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Most entries to show, newest first.")] = 50,
    home: HomeOption = None,
) -> None:
    """The audit log of the annotation workflow, newest first."""
    with _workflow(home) as workflow:
        entries = workflow.audit(project_id, limit)
    table = Table("when (UTC)", "who", "what", "project", "task", "detail")
    for e in entries:
        table.add_row(
            e.at.strftime("%Y-%m-%d %H:%M:%S"),
            escape(e.actor),
            e.action,
            escape(e.project_id or ""),
            str(e.task_id or ""),
            escape(json.dumps(e.detail)[:80]),
        )
    make_console().print(table)


def _num(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"
