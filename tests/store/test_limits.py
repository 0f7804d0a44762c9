"""Shared limits in the store: token buckets and log-in failure counts that every process on one
database sees, on SQLite and PostgreSQL. The clock is an argument, so nothing here sleeps."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import text

from bastion.store import Store
from bastion.store.limits import clear_failures, count_failure, failure_counts, take_token

MINUTE = 60.0


def take(store: Store, now: float, bucket: str = "key_a", capacity: float = 3) -> float:
    return take_token(store, bucket, capacity=capacity, per_second=capacity / MINUTE, now=now)


def test_a_bucket_starts_full_refuses_when_empty_and_refills_with_time(store: Store) -> None:
    assert [take(store, 1000.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert take(store, 1000.0) == MINUTE / 3  # one token takes 20 s to come back
    assert take(store, 1010.0) == MINUTE / 6  # a refusal spends nothing: half of it is back
    assert take(store, 1020.0) == 0.0
    assert take(store, 1020.0) > 0
    assert take(store, 1000.0 + 10 * MINUTE) == 0.0  # never more than the burst after a rest
    assert [take(store, 1000.0 + 10 * MINUTE) for _ in range(3)][-1] > 0
    assert take(store, 1000.0, bucket="key_b") == 0.0  # each key has its own


def test_a_clock_behind_never_moves_a_bucket_back(store: Store) -> None:
    assert [take(store, 1000.0) for _ in range(3)] == [0.0] * 3
    assert take(store, 990.0) == MINUTE / 3  # no negative refill, no error
    assert take(store, 1020.0) == 0.0


def test_two_processes_share_one_bucket(home: Path, database_url: str, store: Store) -> None:
    """Two engines on one database (what two workers or two replicas hold): one burst between
    them, not one each."""
    with Store.open(home, database_url) as other:
        taken = [take(s, 1000.0) for s in (store, other, store, other)]
    assert taken[:3] == [0.0, 0.0, 0.0]
    assert taken[3] > 0


def test_racing_for_the_last_tokens_hands_out_exactly_the_burst(
    home: Path, database_url: str
) -> None:
    """Eight threads on four engines take at once from a bucket of five: five get one."""
    stores = [Store.open(home, database_url) for _ in range(4)]
    results: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def race(store: Store) -> None:
        start.wait()
        for _ in range(5):
            wait = take(store, 1000.0, capacity=5)
            with lock:
                results.append(wait)

    threads = [threading.Thread(target=race, args=(stores[i % 4],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert len(results) == 40
    assert results.count(0.0) == 5


def test_failures_are_counted_per_id_forgotten_after_a_quiet_spell_and_cleared(
    store: Store,
) -> None:
    count_failure(store, ["pair", "client"], now=1000.0, forget_s=3600)
    count_failure(store, ["pair", "client"], now=1010.0, forget_s=3600)
    count_failure(store, ["client"], now=1020.0, forget_s=3600)
    assert failure_counts(store, ["pair", "client", "other"]) == {
        "pair": (2, 1010.0),
        "client": (3, 1020.0),
    }
    clear_failures(store, "pair")
    assert failure_counts(store, ["pair", "client"]) == {"client": (3, 1020.0)}
    count_failure(store, ["pair"], now=1020.0 + 3600, forget_s=3600)  # an hour quiet: afresh
    assert failure_counts(store, ["pair", "client"]) == {"pair": (1, 4620.0)}  # client dropped


def test_limits_skip_the_fsync_but_the_decision_log_keeps_it(home: Path) -> None:
    """A non-durable transaction commits at synchronous=NORMAL on SQLite; the next durable one
    on the same pooled connection is back at FULL, so the decision log's promise holds."""
    with Store.open(home) as store:
        store.engine.pool.dispose()  # one connection in the pool from here on
        with store.transaction("check", durable=False) as session:
            relaxed = session.execute(text("PRAGMA synchronous")).scalar()
        with store.transaction("check") as session:
            durable = session.execute(text("PRAGMA synchronous")).scalar()
        with store.transaction("check", write=True, durable=False) as session:
            again = session.execute(text("PRAGMA synchronous")).scalar()
        with store.transaction("check", write=True) as session:
            durable_write = session.execute(text("PRAGMA synchronous")).scalar()
    assert (relaxed, durable, again, durable_write) == (1, 2, 1, 2)  # NORMAL = 1, FULL = 2


def test_on_postgresql_only_the_limits_transaction_skips_the_flush(store: Store) -> None:
    if store.dialect != "postgresql":
        return  # SQLite: the test above
    with store.transaction("check") as session:
        default = session.execute(text("SHOW synchronous_commit")).scalar()
    with store.transaction("check", durable=False) as session:
        relaxed = session.execute(text("SHOW synchronous_commit")).scalar()
    with store.transaction("check") as session:
        durable = session.execute(text("SHOW synchronous_commit")).scalar()
    assert (relaxed, durable) == ("off", default)  # SET LOCAL: this transaction only
