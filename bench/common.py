"""What every benchmark records about where it ran."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def machine() -> str:
    return f"{platform.machine()}, {platform.system()}, python {platform.python_version()}"


def versions(*packages: str) -> dict[str, str]:
    """The installed version of each of `packages` that is installed, by name."""
    out = {}
    for name in packages:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def git() -> str:
    """The commit measured (short hash), with how many files under src/ differ from it."""

    def run(*command: str) -> str:
        done = subprocess.run(
            ["git", "--no-optional-locks", *command],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip()

    head = run("rev-parse", "--short", "HEAD") or "unknown"
    changed = len(run("status", "--porcelain", "--", "src").splitlines())
    return f"{head} ({changed} changed files under src/)" if changed else head


def run_meta(load_before: tuple[float, float, float]) -> dict[str, Any]:
    """Date, machine, CPUs and the load average before the run (given) and now, rounded."""
    return {
        "date": date.today().isoformat(),
        "machine": machine(),
        "cpu_count": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def write_result(result: dict[str, Any], out: Path | str, markdown: str) -> tuple[Path, Path]:
    """Write a benchmark's JSON to `out` and its markdown tables next to it (same name, .md)."""
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2), encoding="utf-8")
    md = target.with_suffix(".md")
    md.write_text(markdown, encoding="utf-8")
    return target, md
