"""Python run in a fresh interpreter, for what only a new process shows (imports, process-wide
state), and benchmarks run as `make` runs them. Test modules import it from here (tests/ is on
sys.path)."""

from __future__ import annotations

import os
import subprocess
import sys
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
