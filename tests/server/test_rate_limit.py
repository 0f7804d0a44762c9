"""Per-key rate limits kept in the store: one limit for every worker and replica on a database
(SQLite and PostgreSQL). The clock is a seam, so nothing here sleeps."""

from __future__ import annotations

from pathlib import Path

from bastion.server.security import RateLimiter
from bastion.store import Store
from databases import backend, database_url, home, store  # noqa: F401  (fixtures)


class Clock:
    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_gets_its_burst_then_waits_for_the_refill(store: Store) -> None:  # noqa: F811
    clock = Clock()
    limiter = RateLimiter(store, 2, clock=clock)
    assert [limiter.take("key_a"), limiter.take("key_a")] == [0.0, 0.0]
    assert limiter.take("key_a") == 30.0  # two a minute: one every 30 s
    assert limiter.take("key_b") == 0.0  # another key is not affected
    clock.now += 30
    assert limiter.take("key_a") == 0.0


def test_one_limit_across_workers_and_replicas(
    home: Path,  # noqa: F811
    database_url: str,  # noqa: F811
    store: Store,  # noqa: F811
) -> None:
    """Four limiters on four engines (four workers, or replicas) allow one burst between them."""
    clock = Clock()
    others = [Store.open(home, database_url) for _ in range(3)]
    try:
        limiters = [RateLimiter(s, 3, clock=clock) for s in (store, *others)]
        waits = [limiters[n % 4].take("key_a") for n in range(8)]
    finally:
        for other in others:
            other.close()
    assert waits[:3] == [0.0] * 3
    assert all(w == 20.0 for w in waits[3:])
