"""bench/llm_judge.py against an OpenAI-compatible server given by URL (the fake one), at small size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_llm import FakeLLM, choice

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_the_benchmark_runs_unchanged_against_a_server(
    fake_llm: FakeLLM, tmp_path: Path, datasets_root: Path
) -> None:
    fake_llm.answer_with(lambda body: choice({"yes": 0.3, "no": 0.7}))
    out = tmp_path / "llm_judge.json"
    args = ["--backend", fake_llm.url, "--llm-model", "guard", "--mode", "score"]
    small = ["--n", "12", "--top-k", "1", "--out", str(out)]
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "llm_judge.py"), *args, *small],
        capture_output=True,
        text=True,
        env={**os.environ, "BASTION_DATASETS": str(datasets_root)},
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(out.read_text("utf-8"))
    assert result["backend"] == "openai:guard" and result["mode"] == "score"
    assert (result["n_items"], result["positives"]) == (12, 4)
    assert result["judgements"] == 12 and result["failed"] == 0
    # Every decision step of every judgement was one one-token request to the server.
    assert result["calls"] == len(fake_llm.requests) >= 12
    assert all(r["max_tokens"] == 1 and r["top_logprobs"] == 20 for r in fake_llm.requests)
    # "no" is likelier at every step, so no route to a violating verdict reaches 0.5: the judge
    # never flags.
    assert result["judge_alone"]["recall"] == 0.0 and result["judge_alone"]["n"] == 12
    assert 0.0 <= result["cascade_share_items"] <= 1.0
    assert result["cheap"]["n"] == 12
    assert (tmp_path / "llm_judge.md").read_text("utf-8").startswith("backend `openai:guard`")
