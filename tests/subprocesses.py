"""Python run in a fresh interpreter, for what only a new process shows (imports, process-wide
state), and benchmarks run as `make` runs them. Test modules import it from here (tests/ is on
sys.path)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def python_prints(code: str, *, timeout: float) -> list[str]:
    """The words `code` prints, run by this interpreter in a new process that must exit 0."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=timeout
    )
    return out.stdout.split()


REPO = Path(__file__).resolve().parents[1]


def run_bench(script: str, args: list[str], datasets: Path, *, timeout: float) -> None:
    """Run `bench/SCRIPT` as `make bench-*` does (datasets from `datasets`, bench/ importable);
    it must exit 0, else the test fails with the end of its output."""
    env = {**os.environ, "BASTION_DATASETS": str(datasets), "PYTHONPATH": str(REPO / "bench")}
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        capture_output=True, text=True, env=env, timeout=timeout,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


START_LINE = """
import os as _os, pathlib as _pathlib, time as _time

def wait_at_start_line(directory):
    here = _pathlib.Path(directory)
    (here / f"ready-{_os.getpid()}").touch()
    while not (here / "go").exists():
        _time.sleep(0.002)
"""
"""Code for a child process's script: `wait_at_start_line(DIR)` says it is ready (its imports
done) and waits for `release_together` to start every child at once."""


def release_together(
    directory: Path, processes: Sequence[subprocess.Popen[str]], *, timeout: float = 120
) -> None:
    """Wait until every process waits at the start line in `directory`, then start them all.

    Waiting for each to say it is ready, rather than for a start time guessed to fall after
    their imports, keeps them starting together on a busy machine; the deadline only bounds a
    test that has already failed.
    """
    deadline = time.monotonic() + timeout
    while len(list(directory.glob("ready-*"))) < len(processes):
        exited = [p for p in processes if p.poll() is not None]
        if exited:
            err = exited[0].stderr.read() if exited[0].stderr else ""
            raise AssertionError(f"a process exited before the start: {err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"the processes were not all ready within {timeout} s")
        time.sleep(0.01)
    (directory / "go").touch()
