"""`bastion policy validate|show|new`: check, read and start policy files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from bastion.cli.output import console
from bastion.errors import BastionError
from bastion.policy import load_policy, starter_policy_text

app = typer.Typer(help="Check, show and start content policies.", no_args_is_help=True)


@app.command("validate")
def validate(
    files: Annotated[list[Path], typer.Argument(help="Policy YAML files to check.")],
) -> None:
    """Check policy files and report every problem with its line and field path.

    Example: bastion policy validate my-policy.yaml
    """
    failed = 0
    for path in files:
        try:
            loaded = load_policy(path)
        except BastionError as exc:
            failed += 1
            console.print(f"[red]✗[/] {escape(str(exc))}", highlight=False)
            continue
        n = len(loaded.policy.categories)
        console.print(
            f"[green]✓[/] {escape(str(path))}: {loaded.version} ({n} categories)", highlight=False
        )
    if failed:
        raise typer.Exit(1)


@app.command("show")
def show(
    name: Annotated[
        str, typer.Argument(help="A built-in pack (openai, mlcommons) or a YAML file.")
    ],
) -> None:
    """Print a policy's categories, severities, thresholds and example counts.

    Example: bastion policy show openai
    """
    loaded = load_policy(name)
    pol = loaded.policy
    console.print(f"[bold]{escape(pol.name)}[/]  {loaded.version}", highlight=False)
    if pol.description:
        console.print(pol.description.strip(), highlight=False, markup=False)
    table = Table(
        "category", "name", "severity", "flag at", "review/block", "rules", "steps", "+ex", "-ex"
    )
    for cat in pol.categories:
        bands = cat.bands_or(pol.bands)
        table.add_row(
            cat.id,
            escape(cat.name),
            str(cat.severity),
            f"{cat.threshold_or(pol.bands):.2f}",
            f"{bands.review:.2f}/{bands.block:.2f}",
            str(len(cat.violates)),
            str(len(cat.decision_steps)),
            str(len(cat.examples.positive)),
            str(len(cat.examples.negative)),
        )
    console.print(table)


@app.command("new")
def new(
    path: Annotated[Path, typer.Argument(help="Where to write the starter file.")] = Path(
        "policy.yaml"
    ),
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter policy to edit.

    Example: bastion policy new my-policy.yaml && bastion policy validate my-policy.yaml
    """
    if path.exists() and not force:
        raise BastionError(f"{path} exists; pass --force to overwrite it")
    path.write_text(starter_policy_text(), encoding="utf-8")
    console.print(
        f"wrote {path}; edit it, then run: bastion policy validate {path}", highlight=False
    )
