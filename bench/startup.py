"""Benchmark: how long `bastion --help` and `bastion policy validate` take to start.

Usage:
    python bench/startup.py [--runs 7] [--out bench/out/startup.json]

Each command runs `--runs` times in a fresh interpreter (`python -m bastion.cli ...`, the same
code as the `bastion` script) after one untimed warm-up run, so the file cache is warm for all;
the table gives the median and the slowest wall-clock time and the number of modules loaded.
The target (issue 22) is under 1 s for both on an idle machine; a loaded one shows more.
Writes bench/out/startup.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from common import run_meta, write_result  # bench/ is on sys.path when a benchmark runs

PACKS = Path(__file__).resolve().parents[1] / "src" / "bastion" / "policy" / "packs"
TARGET_S = 1.0

# The entry point, then the number of modules it loaded, on stderr's last line.
_RUN = """
import sys
sys.argv = ["bastion", *sys.argv[1:]]
try:
    from bastion.cli import main
    main()
finally:
    print(f"\\nmodules {len(sys.modules)}", file=sys.stderr)
"""


def commands() -> dict[str, list[str]]:
    packs = [str(PACKS / "openai.yaml"), str(PACKS / "mlcommons.yaml")]
    return {
        "bastion --help": ["--help"],
        "bastion policy validate (2 packs)": ["policy", "validate", *packs],
        "bastion moderate --help": ["moderate", "--help"],
        "bastion serve --help": ["serve", "--help"],
    }


def time_once(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall-clock seconds of one fresh interpreter running the command, and its module count."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _RUN, *args], capture_output=True, text=True, env=env, check=False
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bastion {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return seconds, int(done.stderr.strip().splitlines()[-1].split()[-1])


def measure(args: list[str], runs: int, env: dict[str, str]) -> dict[str, Any]:
    time_once(args, env)  # warm-up: the file cache, .pyc files
    samples = [time_once(args, env) for _ in range(runs)]
    seconds = [s for s, _ in samples]
    return {
        "args": args,
        "runs": runs,
        "median_s": statistics.median(seconds),
        "max_s": max(seconds),
        "min_s": min(seconds),
        "modules": samples[-1][1],
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per command")
    parser.add_argument("--out", default="bench/out/startup.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as home:
        # A private home, so nothing the command might read from $BASTION_HOME counts.
        env = {**os.environ, "BASTION_HOME": home, "COLUMNS": "100"}
        rows = {name: measure(argv, args.runs, env) for name, argv in commands().items()}
    table = Table("command", "median (s)", "slowest (s)", "modules", f"under {TARGET_S:g} s")
    lines = [
        f"| command | median (s) | slowest (s) | modules | under {TARGET_S:g} s |",
        "|---|---:|---:|---:|---|",
    ]
    for name, r in rows.items():
        ok = "yes" if r["median_s"] < TARGET_S else "no"
        cells = [f"{r['median_s']:.3f}", f"{r['max_s']:.3f}", str(r["modules"]), ok]
        table.add_row(name, *cells)
        lines.append(f"| {name} | {' | '.join(cells)} |")
    Console().print(table)
    meta = {**run_meta(load_before), "python": sys.executable, "runs": args.runs}
    target, _ = write_result({"meta": meta, "rows": rows}, args.out, "\n".join(lines) + "\n")
    print(json.dumps({"written": str(target)}))


if __name__ == "__main__":
    main()
