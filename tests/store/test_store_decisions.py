"""The decision log: exact round trips, ordering and filters, atomic batches, durability under SIGKILL, concurrent writers.

Every test here runs on SQLite and on PostgreSQL (see conftest.py).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from bastion.errors import InputError
from bastion.store import DecisionRecord, Store, StoreError

MakeRecord = Callable[..., DecisionRecord]


def unstamped(record: DecisionRecord) -> DecisionRecord:
    return dataclasses.replace(record, created_at=None)


def test_a_batch_reads_back_exactly(store: Store, make_record: MakeRecord) -> None:
    batch = [
        make_record(0),
        make_record(1, error="image could not be decoded", flagged=None, scores={}),
        make_record(2, item_id=None, key_id=None, project=None, latency_ms=None, content=None),
    ]
    before = datetime.now(UTC)
    store.log_decisions(batch)
    assert store.count_decisions() == 3
    read = store.decisions(request_id="req-1")
    assert sorted((unstamped(r) for r in read), key=lambda r: r.item_index) == batch
    stamps = {r.created_at for r in read}
    assert len(stamps) == 1  # one stamp per batch
    (stamp,) = stamps
    assert stamp is not None and stamp.tzinfo is UTC
    assert before <= stamp <= datetime.now(UTC)
    first = next(r for r in read if r.item_index == 0)
    assert first.scores["hate"] == 1 / 3 and first.scores["violence"] == 0.1 + 0.2
    assert first.scores["self-harm"] == 5e-324
    assert first.latency_ms == 12.345678901234567


def test_the_callers_created_at_is_replaced_by_the_stores(
    store: Store, make_record: MakeRecord
) -> None:
    store.log_decisions([make_record(created_at=datetime(2000, 1, 1, tzinfo=UTC))])
    (read,) = store.decisions()
    assert read.created_at is not None and read.created_at.year > 2000


def test_newest_first_across_batches(store: Store, make_record: MakeRecord) -> None:
    for batch in range(3):
        store.log_decisions([make_record(i, request_id=f"req-{batch}") for i in range(2)])
    read = store.decisions()
    assert [r.request_id for r in read] == ["req-2"] * 2 + ["req-1"] * 2 + ["req-0"] * 2
    stamps = [r.created_at for r in read]
    assert stamps == sorted(stamps, reverse=True)  # type: ignore[type-var]
    assert [r.request_id for r in store.decisions(limit=3)] == ["req-2", "req-2", "req-1"]


def test_filters_by_request_project_and_time(store: Store, make_record: MakeRecord) -> None:
    store.log_decisions([make_record(0, request_id="a", project="forum")])
    store.log_decisions(
        [make_record(0, request_id="b", project="chat"), make_record(1, request_id="b")]
    )
    store.log_decisions([make_record(0, request_id="c", project="chat")])
    assert [(r.request_id, r.item_index) for r in store.decisions(request_id="b")] == [
        ("b", 1),
        ("b", 0),
    ]
    assert [r.request_id for r in store.decisions(project="chat")] == ["c", "b"]
    assert [r.request_id for r in store.decisions(project="forum")] == ["a"]
    assert store.decisions(request_id="b", project="chat")[0].item_index == 0
    assert store.decisions(request_id="nope") == []

    middle = store.decisions(request_id="b")[0].created_at
    assert middle is not None
    assert [r.request_id for r in store.decisions(since=middle)] == ["c", "b", "b"]
    elsewhere = middle.astimezone(timezone(timedelta(hours=-5)))  # same instant, other zone
    assert [r.request_id for r in store.decisions(since=elsewhere)] == ["c", "b", "b"]
    later = middle + timedelta(days=1)
    assert store.decisions(since=later) == []

    with pytest.raises(InputError, match="timezone"):
        store.decisions(since=datetime(2025, 1, 1))  # naive
    with pytest.raises(InputError, match="limit"):
        store.decisions(limit=0)


def test_a_failing_batch_writes_nothing_and_raises(store: Store, make_record: MakeRecord) -> None:
    store.log_decisions([make_record(0, request_id="kept")])
    bad_batches = [
        [make_record(0, request_id="lost"), make_record(1, request_id="lost", route=None)],
        [make_record(0, request_id="lost"), make_record(1, request_id="lost", scores=None)],
        [make_record(0, request_id="lost"), make_record(1, request_id="lost", scores={"x": {1}})],
        # Not JSON: SQLite would keep a bare NaN that PostgreSQL's json refuses; both refuse it.
        [
            make_record(0, request_id="lost"),
            make_record(1, request_id="lost", scores={"x": float("nan")}),
        ],
        [
            make_record(0, request_id="lost"),
            make_record(1, request_id="lost", scores={"x": float("inf")}),
        ],
    ]
    for batch in bad_batches:
        with pytest.raises(StoreError, match="none of this batch was written") as caught:
            store.log_decisions(batch)
        assert "héllo" not in str(caught.value)  # no parameters (content) in the message
    with pytest.raises(StoreError, match=r"(?i)not[- ]null"):  # each backend words it its way
        store.log_decisions([make_record(0, request_id="lost", route=None)])
    assert store.decisions(request_id="lost") == []
    assert store.count_decisions() == 1
    store.log_decisions([make_record(0, request_id="after")])  # the store still works
    assert store.count_decisions() == 2


@pytest.mark.parametrize("field", ["item_id", "content", "request_id", "error"])
def test_a_nul_character_is_refused_alike_on_every_backend(
    store: Store, make_record: MakeRecord, field: str
) -> None:
    # SQLite would keep it and PostgreSQL refuse it; the store refuses it first, naming the field.
    batch = [make_record(0), make_record(1, **{field: "a\x00b"})]
    with pytest.raises(InputError, match=f"decision 1: {field} contains a NUL character"):
        store.log_decisions(batch)
    assert store.count_decisions() == 0


def test_an_empty_batch_is_a_no_op(store: Store) -> None:
    store.log_decisions([])
    assert store.count_decisions() == 0


LOGGER = """
import os, sys
from pathlib import Path
from bastion.store import DecisionRecord, Store

store = Store.open(Path(sys.argv[1]), os.environ["LOGGER_DATABASE_URL"])
for i in range(1_000_000):
    batch = [
        DecisionRecord(
            request_id=f"req-{i}", item_index=j, item_id=None, content_hash="h" * 64,
            policy_version="p", model_version="m", flagged=False, action=None,
            scores={"hate": 0.25}, categories=[], error=None, key_id=None,
            project="default", route="/v1/moderate", latency_ms=1.5, content="x" * 2000,
        )
        for j in range(2)
    ]
    store.log_decisions(batch)
    print(f"ack {i}", flush=True)
"""


def test_acknowledged_decisions_survive_sigkill(
    home: Path, database_url: str, backend: str
) -> None:
    Store.open(home, database_url).close()  # migrate up front so the child logs at once
    child = subprocess.Popen(
        [sys.executable, "-c", LOGGER, str(home)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "LOGGER_DATABASE_URL": database_url},  # not argv: a password
    )
    assert child.stdout is not None
    acked: list[str] = []
    try:
        for line in child.stdout:
            acked.append(line.split()[1])
            if len(acked) >= 40:
                break
    finally:
        child.send_signal(signal.SIGKILL)
        rest = child.stdout.read()  # what it printed before dying, read-ahead included
        child.wait(timeout=30)
        child.stdout.close()
    acked += [line.split()[1] for line in rest.splitlines() if line.startswith("ack ")]
    assert child.returncode == -signal.SIGKILL
    assert len(acked) >= 40

    with Store.open(home, database_url) as store:
        if backend == "sqlite":  # the file SQLite was writing when killed is still sound
            with store.engine.connect() as connection:
                assert connection.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        logged = store.decisions(limit=1_000_000)
        items: dict[str, set[int]] = {}
        for record in logged:
            items.setdefault(record.request_id, set()).add(record.item_index)
        missing = [i for i in acked if f"req-{i}" not in items]
        assert missing == []
        assert all(indexes == {0, 1} for indexes in items.values())  # no half batches
        assert len(items) >= len(acked)


def test_two_threads_logging_at_once_lose_nothing(store: Store, make_record: MakeRecord) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def writer(name: str) -> None:
        try:
            start.wait()
            for i in range(200):
                store.log_decisions([make_record(i, request_id=f"{name}-{i}")])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("left", "right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert store.count_decisions() == 400
    assert len({r.request_id for r in store.decisions(limit=1000)}) == 400
