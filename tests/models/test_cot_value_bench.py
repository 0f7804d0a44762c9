"""bench/cot_value.py end to end at its small size on the shared sets: the pool's paths are
derived as documented, both training variants run on the same items, and the result is written
(the full benchmark is run by hand; see bench/RESULTS.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from subprocesses import run_bench

pytestmark = pytest.mark.slow


def test_the_decision_path_benchmark_runs_small(tmp_path: Path, datasets_root: Path) -> None:
    out = tmp_path / "cot_value.json"
    small = ["--small", "--budgets", "80", "--out", str(out)]
    run_bench(
        "cot_value.py", [*small, "--cache", str(tmp_path / "e.sqlite")], datasets_root, timeout=900
    )
    result = json.loads(out.read_text("utf-8"))
    facts = result["facts"]
    assert facts["test"] == 300 and facts["budgets"] == [80] and facts["seeds"] == 2
    # 150 per source class (fewer where a class has fewer, after dropping repeated texts).
    assert set(facts["composition"]) == {
        "davidson hate", "davidson offensive", "davidson neither", "toxigen hate",
        "toxigen neutral", "harmbench harmful", "wildguard harmful", "wildguard safe",
    }  # fmt: skip
    assert max(facts["composition"].values()) == 150
    assert facts["pool"] == sum(facts["composition"].values())
    assert facts["steps"] == [
        "hate:abusive", "hate:protected", "hate:group", "harmful-request:harmful",
        "harmful-request:domain",
    ]  # fmt: skip
    known = facts["steps_known_share"]
    # Every item answers the request question; "protected" only where the text was abusive,
    # and the target group only for ToxiGen's hate statements.
    assert known["harmful-request:harmful"] == 1.0
    assert known["hate:abusive"] > known["hate:protected"] > known["hate:group"] > 0
    assert result["metrics"] == ["binary", "hate", "harmful-request"]
    rows = {r["variant"]: r for r in result["summary"]}
    assert set(rows) == {"label-only", "label+path", "label-only, linear"}
    for r in rows.values():
        assert r["budget"] == 80 and 0.0 < r["binary"] <= 1.0
    path = rows["label+path"]
    gain = path["binary"] - rows["label-only"]["binary"]
    assert path["binary_gain"] == pytest.approx(gain, abs=1e-9)
    assert 0 <= path["binary_wins"] <= 2
    # The step outputs were learned: "is it a harmful request?" is right on most test items.
    assert len(path["step_accuracy"]) == 5 and path["step_accuracy"][3] > 0.7
    # Each run (one per seed) trains every variant on the same items.
    assert len(result["runs"]) == 2 and all(set(r["auprc"]) == set(rows) for r in result["runs"])
    assert "label+path" in (tmp_path / "cot_value.md").read_text("utf-8")
