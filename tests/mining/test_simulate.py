"""The simulation replays mining with gold labels: curves, summary and report come out, and the
configurations that cannot work are refused with a clear message."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bastion.errors import InputError
from bastion.mining.simulate import BANDIT, SimulationConfig, simulate, write_report


def _clustered_pool(n: int = 1500, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Violations live in 2 of 30 clusters (about 7 %); the zero-shot prior is weakly informative."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(30, 24))
    cluster = rng.integers(0, 30, n)
    X = centres[cluster] + 0.9 * rng.normal(size=(n, 24))
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    y = np.isin(cluster, [0, 1]).astype(float)
    prior = np.clip(0.3 + 0.2 * y + 0.2 * rng.normal(size=n), 0, 1)
    return X, y, prior


def test_the_bandit_and_targeted_strategies_find_more_than_random(tmp_path: Path) -> None:
    X, y, prior = _clustered_pool()
    config = SimulationConfig(budget=200, batch=50, seeds=2, seed_positives=3, seed_random=20,
                              policies=(BANDIT, "top_score", "uncertainty", "random"))  # fmt: skip
    sim = simulate(X, y, prior, config, name="clusters")
    assert len(sim.curves) == 2 * 4
    for curve in sim.curves:
        assert curve.labels == [0, 50, 100, 150, 200]
        assert curve.found == sorted(curve.found)  # found only grows
        assert all(0 <= a <= 1 for a in curve.auprc)
    rows = {r["policy"]: r for r in sim.summary()}
    assert rows[BANDIT]["found"] > 2 * rows["random"]["found"]
    assert rows["top_score"]["found"] > 2 * rows["random"]["found"]
    assert rows["random"]["vs_random"] == 1.0
    best = max(rows[p]["found"] for p in ("top_score", "uncertainty", "random"))
    assert rows[BANDIT]["regret_found"] == pytest.approx(best - rows[BANDIT]["found"])
    # The bandit keeps its random floor, so its prevalence estimate exists and is sane.
    for curve in (c for c in sim.curves if c.policy == BANDIT):
        p = curve.prevalence
        assert p["low"] <= p["estimate"] <= p["high"] and p["random_draws"] > 0

    page = write_report([sim], tmp_path / "report")
    assert (tmp_path / "report" / "curves-clusters.png").stat().st_size > 10_000
    html = page.read_text("utf-8")
    assert "<table>" in html and "curves-clusters.png" in html and BANDIT in html
    saved = json.loads((tmp_path / "report" / "simulation.json").read_text("utf-8"))
    assert saved[0]["summary"] == json.loads(json.dumps(sim.summary()))


def test_a_simulation_that_cannot_run_says_why() -> None:
    X, y, prior = _clustered_pool(300)
    with pytest.raises(InputError, match="budget is 0"):
        simulate(X, y, prior, SimulationConfig(budget=0))
    with pytest.raises(InputError, match="fewer than the budget of 2000"):
        simulate(X, y, prior, SimulationConfig(budget=2000))
    with pytest.raises(InputError, match="must all be 0 or 1"):
        simulate(X, np.where(y == 1, 2.0, 0.0), prior, SimulationConfig(budget=50))
    with pytest.raises(InputError, match="unknown policy 'greedy'"):
        simulate(X, y, prior, SimulationConfig(budget=50, policies=("greedy",)))
