"""The `bastion` command line: one module per command group, errors printed without a traceback."""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from bastion.cli.output import err_console
from bastion.errors import BastionError

app = typer.Typer(
    name="bastion",
    help="Bastion: write a content policy once, then moderate, evaluate and serve against it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    from bastion.cli import (
        annotate,
        bank,
        judge,
        mine,
        moderate,
        policy,
        score,
        serve,
        train,
        triage,
    )
    from bastion.cli import eval as eval_cmd

    app.command("moderate")(moderate.moderate_command)
    app.command("judge")(judge.judge_command)
    app.command("score")(score.score_command)
    app.command("eval")(eval_cmd.eval_command)
    app.command("train")(train.train_command)
    app.add_typer(policy.app, name="policy")
    app.add_typer(train.model_app, name="model")
    app.command("serve")(serve.serve_command)
    app.add_typer(serve.keys_app, name="keys")
    app.command("recall")(triage.recall_command)
    app.command("rank")(triage.rank_command)
    app.add_typer(triage.queue_app, name="queue")
    app.add_typer(bank.bank_app, name="bank")
    app.add_typer(mine.mine_app, name="mine")
    app.add_typer(annotate.annotate_app, name="annotate")


_register()


def main() -> None:
    try:
        app()
    except BastionError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True)
        sys.exit(2)
