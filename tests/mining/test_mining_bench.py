"""bench/mining.py end to end at CI size on the shared sets: both pools, every policy, the goals
checked and the report written (the full benchmark is run by hand; see bench/RESULTS.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_the_mining_benchmark_runs_small(tmp_path: Path, datasets_root: Path) -> None:
    out = tmp_path / "mining.json"
    env = {**os.environ, "BASTION_DATASETS": str(datasets_root), "PYTHONPATH": str(REPO / "bench")}
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "mining.py"),
            "--small",
            "--out",
            str(out),
            "--cache",
            str(tmp_path / "embeddings.sqlite"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(out.read_text("utf-8"))
    pools = {p["facts"]["name"]: p for p in result["pools"]}
    assert set(pools) == {"hate-5pct", "implicit-hate-0.8pct"}
    common, rare = pools["hate-5pct"]["facts"], pools["implicit-hate-0.8pct"]["facts"]
    assert common["items"] == rare["items"] == 3000
    assert 0.04 < common["prevalence"] < 0.06 and rare["prevalence"] < 0.01
    for pool in pools.values():
        rows = {r["policy"]: r for r in pool["summary"]}
        assert set(rows) == {"bandit", "top_score", "uncertainty", "diversity", "neighbours",
                             "disagreement", "novelty", "random", "top_score+floor"}  # fmt: skip
        assert rows["bandit"]["found"] > rows["random"]["found"]
    assert set(result["goals"]) == set(pools)
    assert (tmp_path / "mining" / "index.html").exists()
    assert "implicit-hate-0.8pct" in (tmp_path / "mining.md").read_text("utf-8")
