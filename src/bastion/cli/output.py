"""Shared CLI plumbing: consoles that do not wrap when piped, and policy loading with few-shot."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated

import typer
from rich.console import Console

from bastion.policy import LoadedPolicy, load_policy

_PIPED_WIDTH = 200


def make_console(stderr: bool = False) -> Console:
    """A Rich console; when not on a terminal it is wide, so logs and captured output stay greppable."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else _PIPED_WIDTH
    return Console(stderr=stderr, width=width, soft_wrap=True)


# `--model` of every command that moderates.
PolicyOption = Annotated[
    str,
    typer.Option("--policy", "-p", help="Built-in pack (openai, mlcommons) or a YAML file."),
]
DetectorOption = Annotated[
    list[str] | None,
    typer.Option(
        "--detector",
        help="Also run this detector, by name (repeat for several): 'zero-shot' beside the "
        "model, or one an installed package registers. An unknown name lists the known ones.",
    ),
]
ModelOption = Annotated[
    str,
    typer.Option(
        "--model",
        help="'default': the model shipped with Bastion, where it was trained for the policy "
        "(the unchanged openai pack); zero-shot otherwise. 'zero-shot': no trained model. "
        "Or a trained model directory (bastion train).",
    ),
]

# `--examples` (few-shot) of every command that moderates.
ExamplesOption = Annotated[
    Path | None,
    typer.Option(help="Few-shot: JSONL of {text, category, label} added to the policy."),
]

console = make_console()
err_console = make_console(stderr=True)


def policy_with_examples(policy: str, examples: Path | None) -> LoadedPolicy:
    """The policy named on the command line, with `--examples` (few-shot) added when given."""
    from bastion.policy.examples import load_examples, with_examples

    loaded = load_policy(policy)
    if examples is None:
        return loaded
    return with_examples(loaded, load_examples(examples, loaded), str(examples))


@contextmanager
def open_output(path: Path | None) -> Iterator[IO[str]]:
    """A JSONL output file, or stdout for None or '-'."""
    if path is None or str(path) == "-":
        yield sys.stdout
        return
    with open(path, "w", encoding="utf-8") as fh:
        yield fh
