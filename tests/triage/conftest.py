"""Fixtures for the triage tests: a migrated store on each backend (see tests/databases.py), a
hand-driven clock, a queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bastion.store import Store
from bastion.triage import ReviewQueue
from databases import backend, database_url, home, store  # noqa: F401  (fixtures)


class Clock:
    """A clock the test moves by hand, so claims expire without sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(store: Store, clock: Clock) -> ReviewQueue:  # noqa: F811
    return ReviewQueue(store, clock=clock)
