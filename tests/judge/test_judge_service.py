"""The service with the LLM cascade on: verdicts from /v1/moderate carry the judge's rationale."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fake_llm import THREAT, FakeLLM, judgement_reply, threat_judgement
from fastapi.testclient import TestClient

import bastion.policy
from bastion.judge.cascade import JudgeSettings
from bastion.server.app import ServerSettings, create_app

pytestmark = pytest.mark.slow  # loads the real encoder
CATEGORY = "harassment/threatening"
STARTER = Path(bastion.policy.__file__).parent / "starter.yaml"


def test_moderate_route_returns_the_llm_rationale(fake_llm: FakeLLM, tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    shutil.copy(STARTER, tmp_path / "policies" / "starter.yaml")
    llm = JudgeSettings(backend=fake_llm.url, model="guard", band=(0.0, 1.0), max_retries=0)
    settings = ServerSettings(home=tmp_path, require_auth=False, preload=False, llm=llm)
    fake_llm.script(judgement_reply(threat_judgement()))
    with TestClient(create_app(settings)) as client:
        body = {"policy": "starter", "model": "zero-shot", "items": [{"id": "a", "text": THREAT}]}
        response = client.post("/v1/moderate", json=body)
    assert response.status_code == 200, response.text
    [verdict] = response.json()["verdicts"]
    assert verdict["rationale"] == f"{CATEGORY}: A direct threat against the reader."
    assert any(e["detector"] == "llm-judge" for e in verdict["evidence"])
    assert verdict["model_version"].endswith("+llm-judge:openai:guard")
    assert len(fake_llm.requests) == 1


def test_settings_refuse_a_band_out_of_order() -> None:
    with pytest.raises(ValueError, match="low <= high"):
        JudgeSettings(backend="local", band=(0.9, 0.1))
