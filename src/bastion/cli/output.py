"""Terminal output for the CLI: consoles that do not wrap paths or ids when output is piped."""

from __future__ import annotations

import sys

from rich.console import Console

_PIPED_WIDTH = 200


def make_console(stderr: bool = False) -> Console:
    """A Rich console; when not on a terminal it is wide, so logs and captured output stay greppable."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else _PIPED_WIDTH
    return Console(stderr=stderr, width=width, soft_wrap=True)


console = make_console()
err_console = make_console(stderr=True)
