"""The starter policy (one category, three decision steps) for the annotation tests."""

from __future__ import annotations

from pathlib import Path

import pytest

import bastion.policy
from bastion.policy import LoadedPolicy, load_policy


@pytest.fixture(scope="module")
def policy() -> LoadedPolicy:
    return load_policy(Path(bastion.policy.__file__).parent / "starter.yaml")
