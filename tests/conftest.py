"""Shared fixtures: the real encoder and fitted moderators are built once per test process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bastion.moderator import Moderator

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("BASTION_DATASETS", REPO.parent / "shared" / "datasets")).resolve()


@pytest.fixture(scope="session")
def default_moderator() -> Moderator:
    """The shipped default model (what `bastion moderate` uses)."""
    return Moderator("openai")


@pytest.fixture(scope="session")
def openai_moderator() -> Moderator:
    """The openai pack scored zero-shot."""
    return Moderator("openai", model="zero-shot")


@pytest.fixture(scope="session")
def datasets_root() -> Path:
    if not DATASETS.is_dir():
        pytest.skip(f"shared datasets not found at {DATASETS} (set BASTION_DATASETS)")
    return DATASETS
