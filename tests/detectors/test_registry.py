"""The detector registry: names to factories, packages' entry points, and a toy detector added by
name that `bastion moderate --detector` and the service's `/v1/moderate` then run."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from bastion.cli import app as cli
from bastion.detectors import registry
from bastion.detectors.base import BaseDetector, DetectorOutput, Evidence
from bastion.detectors.registry import DetectorSetup
from bastion.errors import InputError
from bastion.items import Item
from bastion.moderator import Moderator
from bastion.policy import load_policy
from bastion.server.app import create_app
from bastion.server.settings import ServerSettings

POLICY = load_policy("openai")


class ToyDetector(BaseDetector):
    """Harassment 1.0 for a text that says "toy", no opinion otherwise: all a detector needs."""

    name = "toy"

    def __init__(self, category_ids: list[str]) -> None:
        self.category_ids = category_ids

    def score(self, items: Sequence[Item]) -> DetectorOutput:
        scores = np.full((len(items), len(self.category_ids)), np.nan)
        evidence: list[list[Evidence]] = [[] for _ in items]
        c = self.category_ids.index("harassment")
        for i, item in enumerate(items):
            if "toy" in item.text:
                scores[i, c] = 1.0
                evidence[i].append(Evidence(self.name, "harassment", 1.0, 'said "toy"'))
        return DetectorOutput(scores, evidence)


def toy_detector(setup: DetectorSetup) -> ToyDetector:
    return ToyDetector(setup.category_ids)


@pytest.fixture
def toy() -> Iterator[None]:
    registry.register("toy", toy_detector)
    yield
    registry.unregister("toy")


class _Silent(BaseDetector):
    """No opinion on anything: a stand-in for the default text model (no encoder to load)."""

    name = "silent"

    def __init__(self, category_ids: list[str]) -> None:
        self.category_ids = category_ids

    def score(self, items: Sequence[Item]) -> DetectorOutput:
        return DetectorOutput(np.full((len(items), len(self.category_ids)), np.nan))


@pytest.fixture(autouse=True)
def _silent() -> Iterator[None]:
    registry.register("silent", lambda setup: _Silent(setup.category_ids))
    yield
    registry.unregister("silent")


def test_a_registered_detector_is_added_to_the_defaults_by_name(toy: None) -> None:
    assert "toy" in registry.names()
    moderator = Moderator(POLICY, detectors=["toy"], default_detectors=["silent"])
    assert [d.name for d in moderator.detectors] == ["silent", "toy"]
    said, not_said = moderator.moderate(["a toy", "a dog"])
    assert said.category_scores["harassment"] == 1.0 and said.evidence[0].detector == "toy"
    assert not_said.category_scores["harassment"] == 0.0
    assert moderator.model_version == "silent+toy"


def test_a_default_named_again_runs_once(toy: None) -> None:
    moderator = Moderator(POLICY, detectors=["toy", "silent"], default_detectors=["toy"])
    assert [d.name for d in moderator.detectors] == ["toy", "silent"]


def test_an_unknown_name_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(InputError, match=r"unknown detector 'nope'.*model, nudity, ocr") as err:
        Moderator(POLICY, detectors=["nope"])
    assert "zero-shot" in str(err.value) and "silent" in str(err.value)
    with pytest.raises(InputError, match="unknown detector 'nope'"):
        registry.factory("nope")


def test_a_name_cannot_be_registered_twice(toy: None) -> None:
    with pytest.raises(ValueError, match="already registered"):
        registry.register("toy", toy_detector)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("ocr", toy_detector)


def test_a_package_adds_a_detector_through_its_entry_point(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    point = EntryPoint("plugged", f"{__name__}:toy_detector", registry.GROUP)
    seen: list[str] = []

    def entry_points(group: str) -> list[EntryPoint]:
        seen.append(group)
        return [point]

    monkeypatch.setattr(registry, "entry_points", entry_points)
    registry._plugins.cache_clear()
    try:
        assert registry.factory("ocr") and seen == []  # built-in names read no entry point
        verdict = Moderator(POLICY, detectors=["plugged"], default_detectors=()).moderate_one("toy")
        assert seen == [registry.GROUP] and "plugged" in registry.names()
        assert verdict.category_scores["harassment"] == 1.0
    finally:
        registry._plugins.cache_clear()


# ------------------------------------------------ the toy in `bastion moderate` and `/v1/moderate`

TOY_TEXT = "I bought a toy for my nephew"


@pytest.mark.slow
def test_bastion_moderate_runs_the_named_detector(toy: None) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["moderate", TOY_TEXT, "--json", "--detector", "toy"])
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout)
    toy_said = [e for e in verdict["evidence"] if e["detector"] == "toy"]
    assert toy_said and toy_said[0]["category"] == "harassment"
    # The toy's 1.0 is averaged with the default model's score: that is what "added" means.
    assert verdict["category_scores"]["harassment"] >= 0.5
    assert verdict["model_version"].startswith("trained:")
    assert verdict["model_version"].endswith("+toy")
    without = json.loads(runner.invoke(cli, ["moderate", TOY_TEXT, "--json"]).stdout)
    assert without["category_scores"]["harassment"] < 0.2
    unknown = runner.invoke(cli, ["moderate", TOY_TEXT, "--detector", "nope"])
    assert isinstance(unknown.exception, InputError) and "toy" in str(unknown.exception)


@pytest.mark.slow
def test_the_service_runs_the_detectors_its_settings_name(toy: None, tmp_path: Path) -> None:
    settings = ServerSettings(home=tmp_path, require_auth=False, detectors=["toy"])
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/moderate", json={"items": [{"id": "a", "text": TOY_TEXT}]})
    assert r.status_code == 200, r.text
    (verdict,) = r.json()["verdicts"]
    assert [e["category"] for e in verdict["evidence"] if e["detector"] == "toy"] == ["harassment"]
    assert verdict["category_scores"]["harassment"] >= 0.5
    assert verdict["model_version"].endswith("+toy")
