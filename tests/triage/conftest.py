"""Fixtures for the triage tests: a migrated store on each backend (see tests/databases.py), a
hand-driven clock, a queue."""

from __future__ import annotations

import pytest

from bastion.store import Store
from bastion.triage import ReviewQueue
from databases import Clock, backend, database_url, home, store  # noqa: F401  (fixtures)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(store: Store, clock: Clock) -> ReviewQueue:  # noqa: F811
    return ReviewQueue(store, clock=clock)
