"""The detector registry: names to factories, packages' entry points, and a toy detector added by
name."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from importlib.metadata import EntryPoint

import numpy as np
import pytest

from bastion.detectors import registry
from bastion.detectors.base import BaseDetector, DetectorOutput, Evidence
from bastion.detectors.registry import DetectorSetup
from bastion.errors import InputError
from bastion.items import Item
from bastion.moderator import Moderator
from bastion.policy import load_policy

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
