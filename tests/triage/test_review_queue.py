"""The review queue: its state machine, order, re-queuing, decisions as training data, errors, and claims under contention.

Every test taking `store` or `queue` runs on SQLite and on PostgreSQL (see conftest.py). Most
use a hand-driven clock, so claims expire without sleeping; the concurrency tests use the real
one.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

import pytest
from sqlalchemy import func, inspect, select

from bastion.errors import BastionError
from bastion.store import Store
from bastion.store.models import ReviewDecisionRow, ReviewItemRow
from bastion.triage import (
    DEFAULT_CLAIM_TTL_S,
    ClaimError,
    ConfirmedViolation,
    ItemState,
    QueueCounts,
    QueueError,
    QueueItem,
    ReviewLabel,
    ReviewQueue,
    UnknownItemError,
    queue_names,
)
from subprocesses import START_LINE, release_together


class Clock(Protocol):
    """The `clock` fixture (conftest.py): the queue's time, moved by hand."""

    now: datetime

    def __call__(self) -> datetime: ...

    def advance(self, seconds: float) -> None: ...


def item(item_id: str, priority: Any = 1.0, **fields: Any) -> QueueItem:
    return QueueItem(item_id=item_id, priority=priority, **fields)


def ids(items: Sequence[Any]) -> list[str]:
    return [i.item_id for i in items]


# -- the state machine --------------------------------------------------------------------------


def test_an_item_reads_back_exactly_as_queued(queue: ReviewQueue, clock: Clock) -> None:
    queued = QueueItem(
        item_id="post/42 ✓",
        priority=0.1 + 0.2,
        expected_harm=1 / 3,
        text="héllo wörld",
        media=["s3://bucket/a.jpg", "pdq:f8f8"],
        metadata={"author": "u1", "reach": 12345, "reports": [1, 2], "nested": {"x": None}},
        channels=["hash", "embedding"],
        features={"p_hate": 0.75, "reach_log": 9.42, "ocr_score": math.nan},
    )
    assert queue.enqueue([queued]).added == ["post/42 ✓"]
    got = queue.get("post/42 ✓")
    assert got.state is ItemState.pending
    assert (got.queue, got.item_id, got.priority) == ("default", "post/42 ✓", 0.1 + 0.2)
    assert got.expected_harm == 1 / 3
    assert got.text == "héllo wörld"
    assert got.media == ["s3://bucket/a.jpg", "pdq:f8f8"]
    assert got.metadata == queued.metadata
    assert got.channels == ["hash", "embedding"]
    assert got.features["p_hate"] == 0.75 and got.features["reach_log"] == 9.42
    assert math.isnan(got.features["ocr_score"])  # "does not apply" survives the round trip
    assert got.claimed_by is got.claimed_at is got.claim_expires_at is got.decision is None
    assert got.claim_count == 0
    assert got.enqueued_at == got.updated_at == clock.now
    assert got.enqueued_at.tzinfo is UTC


def test_pending_claimed_decided(queue: ReviewQueue, clock: Clock) -> None:
    queue.enqueue([item("a"), item("b")])
    assert queue.counts() == QueueCounts(pending=2, claimed=0, decided=0)

    (claimed,) = queue.claim("alice", ttl_s=600)
    assert claimed.item_id == "a"  # equal priority: the first queued
    assert claimed.state is ItemState.claimed
    assert claimed.claimed_by == "alice"
    assert claimed.claimed_at == clock.now
    assert claimed.claim_expires_at == clock.now + timedelta(seconds=600)
    assert claimed.claim_count == 1
    assert queue.get("a") == claimed
    assert queue.counts() == QueueCounts(pending=1, claimed=1, decided=0)

    clock.advance(30)
    decision = queue.decide("a", "alice", "violating", ["hate", "violence"], "slur in caption")
    assert decision.label is ReviewLabel.violating
    assert (decision.queue, decision.item_id, decision.reviewer) == ("default", "a", "alice")
    assert decision.categories == ["hate", "violence"]
    assert decision.note == "slur in caption"
    assert decision.decided_at == clock.now and decision.decided_at.tzinfo is UTC
    got = queue.get("a")
    assert got.state is ItemState.decided
    assert got.decision == decision
    assert queue.counts() == QueueCounts(pending=1, claimed=0, decided=1)
    assert queue.counts().total == 2

    # Decided is final: not claimable, not decidable again, not releasable.
    assert ids(queue.claim("bob", n=5)) == ["b"]
    with pytest.raises(ClaimError, match="decided already") as caught:
        queue.decide("a", "alice", "not_violating")
    assert caught.value.reason == "decided"
    with pytest.raises(ClaimError, match="decided already"):
        queue.release("a", "alice")


def test_the_default_claim_lasts_the_default_ttl(queue: ReviewQueue, clock: Clock) -> None:
    queue.enqueue([item("a")])
    (claimed,) = queue.claim("alice")
    assert claimed.claim_expires_at == clock.now + timedelta(seconds=DEFAULT_CLAIM_TTL_S)


def test_an_expired_claim_comes_back_to_the_queue(queue: ReviewQueue, clock: Clock) -> None:
    queue.enqueue([item("a", 2.0), item("b", 1.0)])
    assert ids(queue.claim("alice", n=2, ttl_s=60)) == ["a", "b"]
    assert queue.claim("bob") == []  # both held
    clock.advance(59.5)
    assert queue.claim("bob") == []  # not yet
    assert queue.counts() == QueueCounts(pending=0, claimed=2, decided=0)

    clock.advance(1)
    lapsed = queue.get("a")
    assert lapsed.state is ItemState.pending  # reads as pending once the time is up
    assert lapsed.claimed_by == "alice"  # the last holder, until someone else claims it
    assert queue.counts() == QueueCounts(pending=2, claimed=0, decided=0)
    assert ids(queue.list(state="pending")) == ["a", "b"]
    assert queue.list(state=ItemState.claimed) == []

    (taken,) = queue.claim("bob", ttl_s=60)
    assert (taken.item_id, taken.claimed_by, taken.claim_count) == ("a", "bob", 2)
    assert taken.claimed_at == clock.now
    assert queue.counts() == QueueCounts(pending=1, claimed=1, decided=0)

    # alice's claim on "a" is gone: she gets a clear error, bob decides.
    with pytest.raises(ClaimError, match=r"claimed by 'bob'.*your claim expired") as caught:
        queue.decide("a", "alice", "violating")
    assert caught.value.reason == "claimed_by_other"
    queue.decide("a", "bob", "not_violating")

    # Nobody took "b" over: alice's late decision on it is accepted (documented choice).
    decision = queue.decide("b", "alice", "unsure", note="came back after lunch")
    assert decision.reviewer == "alice"
    assert queue.counts() == QueueCounts(pending=0, claimed=0, decided=2)


def test_an_expired_claim_does_not_let_someone_else_decide(
    queue: ReviewQueue, clock: Clock
) -> None:
    queue.enqueue([item("a")])
    queue.claim("alice", ttl_s=10)
    clock.advance(11)
    with pytest.raises(
        ClaimError, match=r"not claimed by 'bob' \(the claim of 'alice' expired"
    ) as c:
        queue.decide("a", "bob", "violating")
    assert c.value.reason == "not_claimed"


def test_release_gives_an_item_back_to_anyone(queue: ReviewQueue, clock: Clock) -> None:
    queue.enqueue([item("a"), item("b", 0.5)])
    queue.claim("alice")
    with pytest.raises(ClaimError, match="claimed by 'alice'") as caught:
        queue.release("a", "bob")
    assert caught.value.reason == "claimed_by_other"

    released = queue.release("a", "alice")
    assert released.state is ItemState.pending
    assert released.claimed_by is released.claimed_at is released.claim_expires_at is None
    assert queue.get("a") == released
    with pytest.raises(ClaimError, match="not claimed") as caught:
        queue.release("a", "alice")
    assert caught.value.reason == "not_claimed"
    with pytest.raises(ClaimError, match="not claimed"):
        queue.decide("a", "alice", "violating")  # released means released

    (again,) = queue.claim("bob")
    assert (again.item_id, again.claimed_by, again.claim_count) == ("a", "bob", 2)


def test_claims_go_highest_priority_first_and_oldest_first_among_equals(
    queue: ReviewQueue, clock: Clock
) -> None:
    queue.enqueue([item("low", 0.1), item("high", 9.0), item("mid-1", 5.0)])
    clock.advance(1)
    queue.enqueue([item("mid-0", 5.0), item("negative", -1.0)])  # ties with mid-1, queued later
    order = ["high", "mid-1", "mid-0", "low", "negative"]
    assert ids(queue.list()) == order
    assert ids(queue.list(limit=2, offset=1)) == ["mid-1", "mid-0"]
    assert ids(queue.claim("alice", n=2)) == ["high", "mid-1"]
    assert ids(queue.claim("bob", n=1)) == ["mid-0"]
    assert ids(queue.claim("carol", n=10)) == ["low", "negative"]
    assert queue.claim("dave", n=10) == []
    assert queue.claim("dave", n=0) == []
    assert ids(queue.list(state="claimed")) == order
    assert [i.claimed_by for i in queue.list()] == ["alice", "alice", "bob", "carol", "carol"]


# -- re-queuing ---------------------------------------------------------------------------------


def test_requeuing_a_pending_item_updates_it_in_place(queue: ReviewQueue, clock: Clock) -> None:
    queue.enqueue(
        [
            item("a", 1.0, channels=["hash"], features={"f": 1.0}, text="t", expected_harm=0.5),
            item("b", 2.0),
        ]
    )
    first = queue.get("a")
    clock.advance(5)
    result = queue.enqueue([item("a", 3.0, channels=["embedding", "hash"]), item("c", 0.0)])
    assert (result.added, result.updated, result.already_decided) == (["c"], ["a"], [])
    got = queue.get("a")
    assert got.priority == 3.0
    assert got.channels == ["hash", "embedding"]  # accumulated, no duplicates
    assert got.features == {"f": 1.0} and got.text == "t" and got.expected_harm == 0.5  # kept
    assert got.enqueued_at == first.enqueued_at
    assert got.updated_at == clock.now
    assert ids(queue.list()) == ["a", "b", "c"]  # reordered by the new priority
    assert queue.counts().total == 3  # no duplicate row

    queue.enqueue([item("a", 0.1, features={"g": 2.0}, expected_harm=0.9, text="new")])
    got = queue.get("a")
    assert got.features == {"g": 2.0} and got.expected_harm == 0.9 and got.text == "new"
    assert ids(queue.list()) == ["b", "a", "c"]


def test_requeuing_a_claimed_item_keeps_the_claim(queue: ReviewQueue) -> None:
    queue.enqueue([item("a", 1.0)])
    queue.claim("alice")
    assert queue.enqueue([item("a", 7.0)]).updated == ["a"]
    got = queue.get("a")
    assert (got.state, got.claimed_by, got.priority) == (ItemState.claimed, "alice", 7.0)
    queue.decide("a", "alice", "violating")


def test_a_decided_item_is_not_queued_again(queue: ReviewQueue) -> None:
    queue.enqueue([item("a", 1.0, features={"f": 1.0})])
    queue.claim("alice")
    queue.decide("a", "alice", "violating", ["hate"])
    result = queue.enqueue([item("a", 9.0, features={"f": 2.0}), item("b")])
    assert (result.added, result.updated, result.already_decided) == (["b"], [], ["a"])
    got = queue.get("a")
    assert (got.state, got.priority, got.features) == (ItemState.decided, 1.0, {"f": 1.0})
    assert queue.counts() == QueueCounts(pending=1, claimed=0, decided=1)


def test_a_bad_batch_queues_nothing(queue: ReviewQueue) -> None:
    with pytest.raises(QueueError, match=r"item 1 \('b'\): priority must be finite"):
        queue.enqueue([item("a"), item("b", math.nan)])
    with pytest.raises(QueueError, match="'a' appears more than once"):
        queue.enqueue([item("a"), item("c"), item("a")])
    assert queue.counts().total == 0
    assert queue.enqueue([]).added == []


def test_a_large_batch_is_queued_in_one_go(queue: ReviewQueue) -> None:
    result = queue.enqueue([item(f"i{n:05d}", float(n)) for n in range(1203)])
    assert len(result.added) == 1203
    result = queue.enqueue([item(f"i{n:05d}", -float(n)) for n in range(0, 1500, 2)])
    assert len(result.updated) == 602 and len(result.added) == 148
    assert queue.counts().pending == 1351
    assert queue.claim("alice")[0].item_id == "i01201"


def test_queues_are_separate(store: Store, clock: Clock) -> None:
    forum = ReviewQueue(store, "forum", clock=clock)
    chat = ReviewQueue(store, "chat", clock=clock)
    forum.enqueue([item("a", 1.0)])
    assert chat.enqueue([item("a", 2.0)]).added == ["a"]  # same id, other queue
    forum.claim("alice")
    assert chat.get("a").state is ItemState.pending
    assert ids(chat.claim("bob")) == ["a"]
    chat.decide("a", "bob", "not_violating")
    assert forum.decisions() == []
    assert [e.label for e in chat.decisions()] == [ReviewLabel.not_violating]
    assert queue_names(store) == ["chat", "forum"]
    with pytest.raises(UnknownItemError):
        ReviewQueue(store, "elsewhere", clock=clock).get("a")


# -- decisions as training data and bank material ----------------------------------------------


def test_decisions_are_the_rankers_training_data(queue: ReviewQueue, clock: Clock) -> None:
    queue.enqueue(
        [
            item(
                "a",
                3.0,
                expected_harm=2.5,
                channels=["hash"],
                features={"p": 0.9, "missing": math.nan},
                metadata={"reach": 10},
            ),
            item("b", 2.0, channels=["embedding", "keyword"], features={"p": 0.4}),
            item("c", 1.0),
        ]
    )
    queue.claim("alice", n=3)
    queue.decide("b", "alice", "not_violating", note="satire")
    clock.advance(1)
    queue.decide("a", "alice", "violating", ["hate"], "slur")
    first, second = queue.decisions()
    assert (first.item_id, first.label, first.note) == ("b", ReviewLabel.not_violating, "satire")
    assert first.channels == ["embedding", "keyword"] and first.features == {"p": 0.4}
    assert first.priority == 2.0 and first.expected_harm is None
    assert first.categories == [] and first.reviewer == "alice"
    assert second.item_id == "a" and second.label is ReviewLabel.violating
    assert second.priority == 3.0 and second.expected_harm == 2.5
    assert second.channels == ["hash"] and second.categories == ["hate"]
    assert second.features["p"] == 0.9 and math.isnan(second.features["missing"])
    assert second.metadata == {"reach": 10} and second.note == "slur"
    assert second.decided_at == clock.now and second.decided_at.tzinfo is UTC
    assert second.decided_at - first.decided_at == timedelta(seconds=1)

    # since: inclusive, in any time zone, and it must be aware.
    assert ids(queue.decisions(since=clock.now)) == ["a"]
    elsewhere = clock.now.astimezone(timezone(timedelta(hours=-3, minutes=-30)))
    assert ids(queue.decisions(since=elsewhere)) == ["a"]
    assert queue.decisions(since=clock.now + timedelta(microseconds=1)) == []
    assert ids(queue.decisions(limit=1)) == ["b"]
    with pytest.raises(QueueError, match="timezone-aware"):
        queue.decisions(since=datetime(2025, 1, 1))


def test_confirmed_violations_carry_what_a_bank_needs(queue: ReviewQueue, clock: Clock) -> None:
    queue.enqueue(
        [
            item("a", 2.0, text="buy pills", media=["pdq:ab12"], metadata={"lang": "en"}),
            item("b", 1.0, text="fine"),
            item("c", 0.5, media=["s3://x/v.mp4"]),
        ]
    )
    queue.claim("alice", n=3)
    queue.decide("a", "alice", "violating", ["illicit/drugs"], "pill spam template")
    queue.decide("b", "alice", "not_violating")
    clock.advance(2)
    queue.decide("c", "alice", ReviewLabel.violating, ["violence/graphic"])
    assert queue.confirmed_violations() == [
        ConfirmedViolation(
            queue="default",
            item_id="a",
            text="buy pills",
            media=["pdq:ab12"],
            categories=["illicit/drugs"],
            note="pill spam template",
            reviewer="alice",
            decided_at=clock.now - timedelta(seconds=2),
            metadata={"lang": "en"},
        ),
        ConfirmedViolation(
            queue="default",
            item_id="c",
            text=None,
            media=["s3://x/v.mp4"],
            categories=["violence/graphic"],
            note="",
            reviewer="alice",
            decided_at=clock.now,
            metadata={},
        ),
    ]
    assert ids(queue.confirmed_violations(since=clock.now)) == ["c"]


def test_one_row_per_item_and_one_decision_row_per_decision(
    queue: ReviewQueue, store: Store
) -> None:
    assert {"review_items", "review_decisions"} <= set(inspect(store.engine).get_table_names())
    for _ in range(3):
        queue.enqueue([item("a")])
    queue.claim("alice")
    queue.decide("a", "alice", "violating", ["hate", "hate", "violence"])
    decision = queue.get("a").decision
    assert decision is not None and decision.categories == ["hate", "violence"]  # deduplicated
    with store.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(ReviewItemRow)) == 1
        assert connection.scalar(select(func.count()).select_from(ReviewDecisionRow)) == 1


# -- errors -------------------------------------------------------------------------------------


def test_unknown_items_are_named(queue: ReviewQueue) -> None:
    for call in (
        lambda: queue.get("nope"),
        lambda: queue.decide("nope", "alice", "violating"),
        lambda: queue.release("nope", "alice"),
    ):
        with pytest.raises(UnknownItemError, match="review queue 'default' has no item 'nope'"):
            call()


def test_deciding_needs_a_live_claim_by_the_reviewer(queue: ReviewQueue) -> None:
    queue.enqueue([item("a"), item("b", 0.5)])
    with pytest.raises(ClaimError, match="'a' in review queue 'default' is not claimed") as c:
        queue.decide("a", "alice", "violating")
    assert c.value.reason == "not_claimed"
    queue.claim("alice")
    with pytest.raises(ClaimError, match=r"claimed by 'alice'.*not by 'bob'") as c:
        queue.decide("a", "bob", "violating")
    assert c.value.reason == "claimed_by_other"
    assert queue.get("a").state is ItemState.claimed  # a refused decision changes nothing
    assert queue.decisions() == []


@pytest.mark.parametrize("label", ["VIOLATING", "spam", "", None, 1])
def test_a_bad_label_is_refused(queue: ReviewQueue, label: object) -> None:
    queue.enqueue([item("a")])
    queue.claim("alice")
    with pytest.raises(QueueError, match=r"unknown label .*violating, not_violating, unsure"):
        queue.decide("a", "alice", label)  # type: ignore[arg-type]
    assert queue.get("a").state is ItemState.claimed


@pytest.mark.parametrize("n", [-1, -10, 1.5, True, "2"])
def test_a_bad_n_is_refused(queue: ReviewQueue, n: object) -> None:
    queue.enqueue([item("a")])
    with pytest.raises(QueueError, match=r"n .*must be a non-negative integer"):
        queue.claim("alice", n=n)  # type: ignore[arg-type]
    assert queue.counts().pending == 1


@pytest.mark.parametrize("reviewer", ["", "   ", None, 7])
def test_an_empty_reviewer_is_refused(queue: ReviewQueue, reviewer: object) -> None:
    queue.enqueue([item("a")])
    for call in (
        lambda: queue.claim(reviewer),  # type: ignore[arg-type]
        lambda: queue.decide("a", reviewer, "violating"),  # type: ignore[arg-type]
        lambda: queue.release("a", reviewer),  # type: ignore[arg-type]
    ):
        with pytest.raises(QueueError, match="reviewer must be a non-empty string"):
            call()
    assert queue.counts().pending == 1


def test_other_bad_arguments_are_refused(queue: ReviewQueue, store: Store) -> None:
    bad_items: list[tuple[QueueItem, str]] = [
        (item(""), "item_id must be a non-empty string"),
        (item("a", math.inf), "priority must be finite"),
        (item("a", "high"), "priority must be a number"),
        (item("a", expected_harm=-1.0), "expected_harm cannot be negative"),
        (item("a", features={"x": math.inf}), r"features\['x'\] must be finite or NaN"),
        (item("a", features={"x": "big"}), r"features\['x'\] must be a number"),
        (item("a", channels="hash"), "channels must be a list of strings"),
        (item("a", channels=["ok", ""]), "each of .*channels must be a non-empty string"),
        (item("a", metadata={"s": {1, 2}}), "metadata must be plain JSON"),
        (item("a", metadata={"x": math.nan}), "metadata must be plain JSON"),
        (item("a", text="a\x00b"), "NUL character"),
    ]
    for bad, message in bad_items:
        with pytest.raises(QueueError, match=message):
            queue.enqueue([bad])
    with pytest.raises(QueueError, match="must be a QueueItem"):
        queue.enqueue([{"item_id": "a", "priority": 1.0}])  # type: ignore[list-item]
    assert queue.counts().total == 0

    queue.enqueue([item("a")])
    with pytest.raises(QueueError, match=r"ttl_s .*must be positive"):
        queue.claim("alice", ttl_s=0)
    with pytest.raises(QueueError, match=r"ttl_s .*must be finite"):
        queue.claim("alice", ttl_s=math.inf)
    with pytest.raises(QueueError, match="unknown state 'open'"):
        queue.list(state="open")
    with pytest.raises(QueueError, match="limit must be a positive integer"):
        queue.list(limit=0)
    with pytest.raises(QueueError, match="offset must be a non-negative integer"):
        queue.list(offset=-1)
    with pytest.raises(QueueError, match="limit must be a positive integer"):
        queue.decisions(limit=-1)
    with pytest.raises(QueueError, match="queue name must be a non-empty string"):
        ReviewQueue(store, " ")
    queue.claim("alice")
    with pytest.raises(QueueError, match="note contains a NUL character"):
        queue.decide("a", "alice", "violating", note="x\x00")
    with pytest.raises(QueueError, match="categories must be a list of strings"):
        queue.decide("a", "alice", "violating", categories="hate")
    with pytest.raises(QueueError, match="timezone-aware"):
        ReviewQueue(store, clock=lambda: datetime(2025, 1, 1)).get("a")
    assert queue.get("a").state is ItemState.claimed
    assert issubclass(QueueError, BastionError)
    assert issubclass(UnknownItemError, QueueError) and issubclass(ClaimError, QueueError)


# -- contention ---------------------------------------------------------------------------------


def test_threads_claiming_at_once_never_share_an_item(store: Store) -> None:
    queue = ReviewQueue(store)  # the real clock
    total = 150
    queue.enqueue([item(f"i{n:03d}", float(n % 7)) for n in range(total)])
    handed: list[tuple[str, str]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)
    # Everyone claims once before anyone claims again: on a loaded machine one thread could
    # otherwise drain the queue before the others were scheduled, and nothing would race.
    first_round = threading.Barrier(6, timeout=60)

    def reviewer(name: str) -> None:
        try:
            start.wait()
            claims = 0
            while True:
                got = queue.claim(name, n=3)
                claims += 1
                if claims == 1:
                    first_round.wait()
                if not got:
                    return
                handed.extend((name, i.item_id) for i in got)
                for claimed in got[::2]:  # decide some, so decide races claim too
                    queue.decide(claimed.item_id, name, "not_violating")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reviewer, args=(f"r{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    times = Counter(item_id for _, item_id in handed)
    assert sorted(times) == [f"i{n:03d}" for n in range(total)]
    assert set(times.values()) == {1}, [i for i, k in times.items() if k > 1]
    assert len({name for name, _ in handed}) > 1  # they did run side by side
    for name, item_id in handed:
        assert queue.get(item_id).claimed_by == name
    counts = queue.counts()
    assert counts.pending == 0 and counts.total == total


CLAIMER = (
    START_LINE
    + """
import json, os, sys
from bastion.store import Store
from bastion.triage import ReviewQueue

name = sys.argv[1]
store = Store(os.environ["CLAIMER_DATABASE_URL"])
queue = ReviewQueue(store, "contended")
wait_at_start_line(sys.argv[2])
handed = []
while True:
    got = queue.claim(name, n=2)
    if not got:
        break
    for claimed in got:
        handed.append(claimed.item_id)
        queue.decide(claimed.item_id, name, "unsure")
store.close()
print(json.dumps(handed))
"""
)


def test_processes_claiming_at_once_never_share_an_item(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    total = 120
    ReviewQueue(store, "contended").enqueue([item(f"p{n:03d}", float(n)) for n in range(total)])
    start_line = tmp_path / "start-line"
    start_line.mkdir()
    claimers = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, f"proc{n}", str(start_line)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "CLAIMER_DATABASE_URL": database_url},  # not argv: a password
        )
        for n in range(4)
    ]
    release_together(start_line, claimers)  # once every interpreter has opened the queue
    handed: dict[str, list[str]] = {}
    for n, claimer in enumerate(claimers):
        out, err = claimer.communicate(timeout=120)
        assert claimer.returncode == 0, err
        handed[f"proc{n}"] = json.loads(out)
    times = Counter(i for got in handed.values() for i in got)
    assert sorted(times) == [f"p{n:03d}" for n in range(total)]
    assert set(times.values()) == {1}
    queue = ReviewQueue(store, "contended")
    assert queue.counts() == QueueCounts(pending=0, claimed=0, decided=total)
    decided_by = {e.item_id: e.reviewer for e in queue.decisions()}
    assert decided_by == {i: name for name, got in handed.items() for i in got}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_claim_waits_for_another_writer_on_sqlite(store: Store, home: Path) -> None:
    """SQLite: a claim begins IMMEDIATE, so it waits for the lock instead of reading a stale queue."""
    queue = ReviewQueue(store)
    queue.enqueue([item("a")])
    result: list[list[str]] = []
    with store.engine.connect() as blocker:
        blocker.execution_options(bastion_sqlite_begin="IMMEDIATE")  # the store's option
        blocker.begin()
        thread = threading.Thread(target=lambda: result.append(ids(queue.claim("alice"))))
        thread.start()
        time.sleep(0.5)
        assert result == []  # still waiting for the write lock
        blocker.exec_driver_sql("UPDATE review_items SET priority = 5.0")
        blocker.commit()
        thread.join(timeout=30)
    assert result == [["a"]]
    assert queue.get("a").priority == 5.0
