"""Python run in a fresh interpreter, for what only a new process shows (imports, process-wide
state). Test modules import it from here (tests/ is on sys.path)."""

from __future__ import annotations

import subprocess
import sys


def python_prints(code: str, *, timeout: float) -> list[str]:
    """The words `code` prints, run by this interpreter in a new process that must exit 0."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=timeout
    )
    return out.stdout.split()
