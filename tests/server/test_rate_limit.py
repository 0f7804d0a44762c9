"""Per-key rate limits kept in the store: one limit for every worker and replica on a database
(SQLite and PostgreSQL). The clock is a seam, so nothing here sleeps."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

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


def _bucket_tokens(store: Store, key: str) -> float:  # noqa: F811
    with store.transaction("read a bucket") as session:
        return float(
            session.execute(
                text("SELECT tokens FROM rate_limits WHERE bucket = :b"), {"b": key}
            ).scalar_one()
        )


def test_a_busy_key_leases_tokens_and_the_workers_still_share_one_limit(
    home: Path,  # noqa: F811
    database_url: str,  # noqa: F811
    store: Store,  # noqa: F811
) -> None:
    """Two limiters (two workers) lease 4 tokens at a time: the store is written once per 4
    requests, and between them they allow exactly the bucket, the last 2 tokens one by one."""
    clock = Clock()
    with Store.open(home, database_url) as other:
        a, b = (RateLimiter(s, 102, clock=clock, lease=4) for s in (store, other))
        assert a.take("key_a") == 0.0
        assert _bucket_tokens(store, "key_a") == 98.0  # a lease of 4 taken at once
        assert [a.take("key_a") for _ in range(3)] == [0.0] * 3
        assert _bucket_tokens(store, "key_a") == 98.0  # spent from memory
        allowed = 4
        for n in range(200):
            if (a, b)[n % 2].take("key_a") == 0.0:
                allowed += 1
        assert allowed == 102
        assert a.take("key_a") == b.take("key_a") == pytest.approx(60 / 102)


def test_an_unspent_lease_is_dropped_after_lease_s(store: Store) -> None:  # noqa: F811
    clock = Clock()
    limiter = RateLimiter(store, 8, clock=clock, lease=4, lease_s=1.0)
    other = RateLimiter(store, 8, clock=clock, lease=4, lease_s=1.0)
    assert limiter.take("key_a") == other.take("key_a") == 0.0  # the bucket is empty now
    assert limiter.take("key_a") == 0.0  # 3 leased tokens left in memory
    clock.now += 1.0  # the lease has run out; a minute refills 8, a second under one
    assert limiter.take("key_a") > 0  # the 2 tokens still unspent are not saved for later


def test_the_default_lease_is_one_token_under_800_a_minute(store: Store) -> None:  # noqa: F811
    assert RateLimiter(store, 799).lease == 1
    assert RateLimiter(store, 800).lease == 2
    assert RateLimiter(store, 6000).lease == 15  # 4 workers hold at most 56 unspent: under 1 %
    with pytest.raises(ValueError, match="lease of 5 tokens for a limit of 4/min"):
        RateLimiter(store, 4, lease=5)
