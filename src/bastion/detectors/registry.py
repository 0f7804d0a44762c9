"""Detectors by name: the built-in ones, those registered in this process, and those packages add.

A name maps to a factory that builds the detector from a `DetectorSetup` (the Moderator's policy,
thresholds, limits and text scorer). A package adds one without touching Bastion through the
entry-point group `bastion.detectors`, read only when a name is not found here:

    [project.entry-points."bastion.detectors"]
    weapons = "my_package.weapons:WeaponsDetector.from_setup"

Built-in factories are written in the same "module:attribute" form, so naming a detector imports
only its own module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import numpy as np

from bastion.detectors.base import Detector, TextScorer, with_defaults
from bastion.errors import InputError
from bastion.media.limits import MediaLimits
from bastion.policy import LoadedPolicy

GROUP = "bastion.detectors"


@dataclass(frozen=True)
class DetectorSetup:
    """What a detector is built from: the Moderator's policy and settings.

    `text_scorer` scores bare texts with the Moderator's text detectors, fused (how OCR and
    speech judge the words they find); `thresholds` are its flag thresholds, in the policy's
    category order; `model`, `encoder` and `runtime` are its arguments of those names.
    """

    policy: LoadedPolicy
    text_scorer: TextScorer
    thresholds: np.ndarray
    media_limits: MediaLimits
    model: str | Path | None = "default"
    encoder: str | None = None
    runtime: str | None = None

    @property
    def category_ids(self) -> list[str]:
        return list(self.policy.category_ids)


DetectorFactory = Callable[[DetectorSetup], Detector]

BUILT_IN = {
    "model": "bastion.detectors.text_model:model_detector",
    "zero-shot": "bastion.detectors.text_model:zero_shot_detector",
    "nudity": "bastion.detectors.nudity:NudityDetector.from_setup",
    "ocr": "bastion.detectors.ocr:OcrDetector.from_setup",
    "speech": "bastion.detectors.speech:SpeechDetector.from_setup",
}
"""The detectors Bastion ships. "model" is the text model the Moderator's `model` names (the
shipped trained model where it was trained for the policy, zero-shot otherwise); "nudity"
scores nothing, and says so, where NudeNet (`bastion[nudity]`) is not installed. Video has no
name of its own: its frames go through the image detectors and its soundtrack through speech."""

_registered: dict[str, DetectorFactory] = {}


def register(name: str, factory: DetectorFactory) -> None:
    """Make `factory` buildable as `name` in this process (a package would use the entry point)."""
    if name in _registered or name in BUILT_IN:
        raise ValueError(f"a detector named '{name}' is already registered")
    _registered[name] = factory


def unregister(name: str) -> None:
    _registered.pop(name, None)


@cache
def _plugins() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def names() -> list[str]:
    """Every detector name known here: built in, registered, or added by an installed package."""
    return sorted({*BUILT_IN, *_registered, *_plugins()})


def factory(name: str) -> DetectorFactory:
    """The factory for `name`; an InputError that lists the known names when there is none."""
    if name in _registered:
        return _registered[name]
    point = EntryPoint(name, BUILT_IN[name], GROUP) if name in BUILT_IN else _plugins().get(name)
    if point is None:
        raise InputError(f"unknown detector '{name}'; the known detectors are {', '.join(names())}")
    loaded: DetectorFactory = point.load()
    return loaded


def build(name: str, setup: DetectorSetup) -> Detector:
    return with_defaults(factory(name)(setup))


def check(wanted: Iterable[str]) -> None:
    """Fail now, naming the known detectors, if any of `wanted` is not one."""
    for name in wanted:
        factory(name)
