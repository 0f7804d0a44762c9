"""The review queue: ranked items wait for a person, are claimed by one reviewer at a time, and end in a decision.

An item moves pending → claimed → decided. A claim lasts `ttl_s` seconds; a reviewer who walks
away does not strand the item, because an expired claim is claimable again. Every decision
(label, categories, note, reviewer, time) is kept, and read back two ways: `decisions()` is the
ranker's training data (the features, channels and priority that queued the item, with the
label people gave it), and `confirmed_violations()` is what a bank needs to add an entry.

The queue lives in the store's database (SQLite by default, PostgreSQL by URL), so any number
of reviewers, threads and processes can work one queue. Handing out an item is the one place
where two reviewers could collide, and `claim` makes that impossible on each backend in its own
way: PostgreSQL locks the rows it hands out with `SELECT ... FOR UPDATE SKIP LOCKED`, so
concurrent claimers skip each other's rows instead of waiting on them; SQLite takes its
database-wide write lock up front (`BEGIN IMMEDIATE`), so claims run one after another. Every
other write takes the same locks, so a decision or a release never races a claim.

Design choices a caller can rely on:

- Expiry is lazy. Nothing sweeps expired claims; every read treats a claim whose time is up as
  pending, and `claim` hands such items out again. The row keeps naming the last holder until
  someone else claims it.
- A late decision is accepted when nobody else has claimed the item since: the reviewer's
  claim expired, but their work is still the only work done on it, and throwing it away would
  help no one. Once another reviewer claims it, the late one gets `ClaimError`.
- Re-queuing an item that is pending (or claimed) updates it in place, never adds a second
  row: the new priority wins (the ranker's latest run is its best); expected harm, features,
  text, media and metadata are replaced when the new entry has them and kept when it leaves
  them out; channels accumulate (every channel that found the item stays on record). A claim
  in progress is left alone. A decided item is never re-queued; `enqueue` reports it in
  `EnqueueResult.already_decided`.
- Each item is decided once. An "unsure" label is a decision too; sending an item round again
  is a separate, explicit step that does not exist yet.

The methods take and return plain dataclasses and raise `QueueError` subclasses, which carry
what the API answers: `UnknownItemError` is a `NotFoundError` (404), `ClaimError` a
`ConflictError` (409, its reason as the code), `QueueError` itself a bad argument (400);
database failures stay the store's `StoreError` (503).
"""

from __future__ import annotations

import builtins
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from numbers import Real
from typing import Annotated, Any, Final, TypeVar

from pydantic import BaseModel, ConfigDict, PlainValidator, ValidationError, ValidationInfo
from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import GenerativeSelect

from bastion.errors import BastionError, ConflictError, ErrorCode, NotFoundError
from bastion.store.errors import StoreError
from bastion.store.models import ReviewDecisionRow, ReviewItemRow
from bastion.store.store import Store
from bastion.triage.labels import DEFAULT_QUEUE as DEFAULT_QUEUE
from bastion.triage.labels import ItemState as ItemState
from bastion.triage.labels import ReviewLabel as ReviewLabel

DEFAULT_CLAIM_TTL_S: Final = 15 * 60.0
"""How long a claim lasts unless the caller says otherwise: long enough to review one item with
care, short enough that an abandoned claim comes back within a working session."""

DEFAULT_LIST_LIMIT: Final = 100

_CHUNK: Final = 500
"""Rows per INSERT / IN (...) statement: SQLite caps the bound parameters of one statement."""

_SUPPORTED_DIALECTS: Final = ("sqlite", "postgresql")

_Query = TypeVar("_Query", bound=GenerativeSelect)

# Every item with its decision, if it has one (at most one: the unique key on review_item_id).
_ITEMS_WITH_DECISIONS = select(ReviewItemRow, ReviewDecisionRow).outerjoin(
    ReviewDecisionRow, ReviewDecisionRow.review_item_id == ReviewItemRow.id
)
# Decided items only, with their decisions.
_DECIDED_ITEMS = select(ReviewItemRow, ReviewDecisionRow).join(
    ReviewDecisionRow, ReviewDecisionRow.review_item_id == ReviewItemRow.id
)


class QueueError(BastionError):
    """A review-queue call was given something it cannot act on (an empty reviewer, a bad label, a negative n)."""


class UnknownItemError(QueueError, NotFoundError):
    """The queue holds no item with this id."""

    def __init__(self, queue: str, item_id: str) -> None:
        self.queue = queue
        self.item_id = item_id
        super().__init__(f"review queue {queue!r} has no item {item_id!r}")


class ClaimError(QueueError, ConflictError):
    """The reviewer does not hold the claim this call needs; `reason` says why in one word.

    `reason` is one of `not_claimed` (nobody holds the item, or only an expired claim by someone
    else: claim it first), `claimed_by_other` (another reviewer holds a live claim) and
    `decided` (the item was decided already).
    """

    def __init__(self, queue: str, item_id: str, reason: str, message: str) -> None:
        self.queue = queue
        self.item_id = item_id
        self.reason = reason
        self.code = ErrorCode(reason)
        super().__init__(message)


@dataclass(frozen=True)
class QueueItem:
    """One item to put in front of reviewers, as recall and ranking produced it.

    `priority` orders the queue (higher first); `expected_harm` is the ranker's estimate of the
    harm left standing if nobody acts (probability × severity × reach); `channels` names the
    recall channels that found the item and `features` the numbers the ranker scored it on (NaN
    where a feature does not apply), kept so decisions can train the ranker. `media` holds
    references (paths, URLs, hashes), never bytes.
    """

    item_id: str
    priority: float
    expected_harm: float | None = None
    text: str | None = None
    media: Sequence[str] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    channels: Sequence[str] = ()
    features: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EnqueueResult:
    """What `enqueue` did with each item id: added, updated in place, or left alone because decided."""

    added: list[str]
    updated: list[str]
    already_decided: list[str]


@dataclass(frozen=True)
class ReviewDecision:
    """A reviewer's decision on one item."""

    queue: str
    item_id: str
    label: ReviewLabel
    categories: list[str]
    note: str
    reviewer: str
    decided_at: datetime


@dataclass(frozen=True)
class ReviewItem:
    """An item as the queue holds it now.

    `state` is the effective state: a claim past `claim_expires_at` reads as pending. While an
    item is claimed (or its expired claim has not been taken over) `claimed_by` names the
    holder; `claim_count` says how often it was handed out, a hint that reviewers find it hard.
    """

    queue: str
    item_id: str
    state: ItemState
    priority: float
    expected_harm: float | None
    text: str | None
    media: list[str]
    metadata: dict[str, Any]
    channels: list[str]
    features: dict[str, float]
    claimed_by: str | None
    claimed_at: datetime | None
    claim_expires_at: datetime | None
    claim_count: int
    enqueued_at: datetime
    updated_at: datetime
    decision: ReviewDecision | None = None


@dataclass(frozen=True)
class QueueCounts:
    """How many items a queue holds in each (effective) state."""

    pending: int
    claimed: int
    decided: int

    @property
    def total(self) -> int:
        return self.pending + self.claimed + self.decided


@dataclass(frozen=True)
class TrainingExample:
    """One decided item as the ranker learns from it: what it saw when queuing, and the label.

    The reviewer's note rides along for whoever turns decisions into rationales later.
    """

    queue: str
    item_id: str
    label: ReviewLabel
    categories: list[str]
    priority: float
    expected_harm: float | None
    channels: list[str]
    features: dict[str, float]
    metadata: dict[str, Any]
    reviewer: str
    note: str
    decided_at: datetime


@dataclass(frozen=True)
class ConfirmedViolation:
    """An item a reviewer labelled violating, with everything a bank entry is built from."""

    queue: str
    item_id: str
    text: str | None
    media: list[str]
    categories: list[str]
    note: str
    reviewer: str
    decided_at: datetime
    metadata: dict[str, Any]


class ReviewQueue:
    """One named review queue in a store's database.

    Cheap to build (it holds no connection of its own: it uses the store's engine), safe to
    share between threads, and several processes may open the same queue at once. `clock`
    returns the current time (timezone-aware); tests pass one to expire claims without waiting.
    """

    def __init__(
        self,
        store: Store,
        name: str = DEFAULT_QUEUE,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if store.dialect not in _SUPPORTED_DIALECTS:
            raise StoreError(
                f"the review queue runs on SQLite or PostgreSQL, not {store.dialect!r}"
            )
        self.store = store
        self.name = _text(name, "queue name")
        self._clock = clock if clock is not None else _utc_now

    def __repr__(self) -> str:
        return f"ReviewQueue({self.store!r}, {self.name!r})"

    # -- filling ----------------------------------------------------------------------------

    def enqueue(self, items: Iterable[QueueItem]) -> EnqueueResult:
        """Add items to the queue, or update the ones it already has; all of the batch or none of it.

        An item id may appear once per batch. See the module docstring for what re-queuing
        changes; decided items are left as they are and listed in `already_decided`.
        """
        now = self._now()
        values = [_item_values(self.name, n, item, now) for n, item in enumerate(items)]
        seen: set[str] = set()
        for value in values:
            if value["item_id"] in seen:
                raise QueueError(
                    f"item {value['item_id']!r} appears more than once in this batch; "
                    "merge its channels and features before queuing it"
                )
            seen.add(value["item_id"])
        if not values:
            return EnqueueResult(added=[], updated=[], already_decided=[])
        # One order for every writer, so two batches never wait on each other's rows crosswise.
        values.sort(key=lambda value: str(value["item_id"]))
        by_id = {str(value["item_id"]): value for value in values}
        added: set[str] = set()
        updated: set[str] = set()
        decided: set[str] = set()
        noun = "item" if len(values) == 1 else "items"
        what = f"queue {len(values)} {noun} in {self.name!r} (none of this batch was queued)"
        with self._transaction(what, write=True) as session:
            now = self._now()  # queue order among equal priorities is the order of commits
            for value in values:
                value["enqueued_at"] = value["updated_at"] = now
            for chunk in _chunks(values):
                # ON CONFLICT DO NOTHING: on PostgreSQL it waits for a concurrent insert of the
                # same id to finish, so the rows it skipped are all there to lock below.
                insert = self._insert().values(chunk)
                insert = insert.on_conflict_do_nothing(index_elements=["queue", "item_id"])
                added.update(session.scalars(insert.returning(ReviewItemRow.item_id)))
            rest = [item_id for item_id in by_id if item_id not in added]
            for ids in _chunks(rest):
                query = (
                    select(ReviewItemRow)
                    .where(ReviewItemRow.queue == self.name, ReviewItemRow.item_id.in_(ids))
                    .order_by(ReviewItemRow.item_id)
                )
                for row in session.scalars(self._locked(query)):
                    if row.state == ItemState.decided:
                        decided.add(row.item_id)
                    else:
                        _update_row(row, by_id[row.item_id], now)
                        updated.add(row.item_id)
        order = list(by_id)
        return EnqueueResult(
            added=[i for i in order if i in added],
            updated=[i for i in order if i in updated],
            already_decided=[i for i in order if i in decided],
        )

    # -- working ----------------------------------------------------------------------------

    def claim(
        self, reviewer: str, n: int = 1, ttl_s: float = DEFAULT_CLAIM_TTL_S
    ) -> builtins.list[ReviewItem]:
        """Hand up to `n` items to `reviewer` for `ttl_s` seconds, highest priority first.

        Pending items and items whose claim expired are eligible; ties go to the item queued
        first. No two callers ever get the same item, whatever the backend or the number of
        processes. Fewer than `n` items come back when fewer are free (none: an empty list).
        """
        reviewer = _text(reviewer, "reviewer")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise QueueError(
                f"n (how many items to claim) must be a non-negative integer, got {n!r}"
            )
        ttl = _seconds(ttl_s, "ttl_s (how long a claim lasts)")
        if n == 0:
            return []
        with self._transaction(f"claim items in {self.name!r}", write=True) as session:
            now = self._now()  # after SQLite's write lock is ours: the claim starts now
            query = (
                select(ReviewItemRow)
                .where(ReviewItemRow.queue == self.name, _claimable(now))
                .order_by(
                    ReviewItemRow.priority.desc(), ReviewItemRow.enqueued_at, ReviewItemRow.id
                )
                .limit(n)
            )
            if self.store.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = list(session.scalars(query))
            for row in rows:
                row.state = ItemState.claimed.value
                row.claimed_by = reviewer
                row.claimed_at = now
                row.claim_expires_at = now + ttl
                row.claim_count += 1
                row.updated_at = now
            return [_item_from_row(row, None, now) for row in rows]

    def release(self, item_id: str, reviewer: str) -> ReviewItem:
        """Give a claimed item back undecided: it is pending again, for anyone.

        Only its holder may release it (also after the claim expired, while nobody else has
        taken it over).
        """
        reviewer = _text(reviewer, "reviewer")
        item_id = _text(item_id, "item id", strip=False)
        with self._transaction(f"release {item_id!r} in {self.name!r}", write=True) as session:
            now = self._now()
            row = self._held_row(session, item_id, reviewer, now, "release")
            row.state = ItemState.pending.value
            row.claimed_by = None
            row.claimed_at = None
            row.claim_expires_at = None
            row.updated_at = now
            return _item_from_row(row, None, now)

    def decide(
        self,
        item_id: str,
        reviewer: str,
        label: ReviewLabel | str,
        categories: Sequence[str] = (),
        note: str = "",
    ) -> ReviewDecision:
        """Record `reviewer`'s decision on an item they hold, and close the item.

        `label` is one of `ReviewLabel`; `categories` are the policy categories it falls
        under (for a violating item, what a bank entry will be filed under); `note` is free
        text for whoever reads the decision later. A reviewer whose claim expired may still
        decide as long as nobody else has claimed the item since.
        """
        reviewer = _text(reviewer, "reviewer")
        item_id = _text(item_id, "item id", strip=False)
        decided_label = _label(label)
        decided_categories = _strings(categories, "categories")
        if not isinstance(note, str):
            raise QueueError(f"note must be a string, got {type(note).__name__}")
        _no_nul(note, "note")
        with self._transaction(f"decide {item_id!r} in {self.name!r}", write=True) as session:
            now = self._now()
            row = self._held_row(session, item_id, reviewer, now, "decide")
            row.state = ItemState.decided.value
            row.updated_at = now
            decision = ReviewDecisionRow(
                review_item_id=row.id,
                label=decided_label.value,
                categories=decided_categories,
                note=note,
                reviewer=reviewer,
                decided_at=now,
            )
            session.add(decision)
            return _decision_from_rows(row, decision)

    # -- reading ----------------------------------------------------------------------------

    def get(self, item_id: str) -> ReviewItem:
        """The item with this id, with its decision once there is one."""
        item_id = _text(item_id, "item id", strip=False)
        query = _ITEMS_WITH_DECISIONS.where(
            ReviewItemRow.queue == self.name, ReviewItemRow.item_id == item_id
        )
        with self._transaction(f"read {item_id!r} in {self.name!r}") as session:
            found = session.execute(query).first()
        if found is None:
            raise UnknownItemError(self.name, item_id)
        return _item_from_row(found[0], found[1], self._now())

    def counts(self) -> QueueCounts:
        """How many items are pending (expired claims included), claimed and decided."""
        now = self._now()
        by_state = (
            select(ReviewItemRow.state, func.count())
            .where(ReviewItemRow.queue == self.name)
            .group_by(ReviewItemRow.state)
        )
        expired = (
            select(func.count())
            .select_from(ReviewItemRow)
            .where(
                ReviewItemRow.queue == self.name,
                ReviewItemRow.state == ItemState.claimed.value,
                ReviewItemRow.claim_expires_at <= now,
            )
        )
        with self._transaction(f"count the items in {self.name!r}") as session:
            stored = {str(state): int(count) for state, count in session.execute(by_state)}
            lapsed = int(session.scalar(expired) or 0)
        return QueueCounts(
            pending=stored.get(ItemState.pending.value, 0) + lapsed,
            claimed=stored.get(ItemState.claimed.value, 0) - lapsed,
            decided=stored.get(ItemState.decided.value, 0),
        )

    def decisions(
        self, since: datetime | None = None, limit: int | None = None
    ) -> builtins.list[TrainingExample]:
        """Decided items, oldest decision first: the ranker's training data.

        `since` keeps decisions made at or after that instant (so a caller that remembers the
        last `decided_at` it saw may get that one again, never miss one made in the same
        instant).
        """
        what = f"read the decisions in {self.name!r}"
        rows = self._decided_rows(what, since, limit, None)
        return [_example_from_rows(item, decision) for item, decision in rows]

    def confirmed_violations(
        self, since: datetime | None = None, limit: int | None = None
    ) -> builtins.list[ConfirmedViolation]:
        """Items decided `violating`, oldest first, with what a bank needs to add them."""
        what = f"read the confirmed violations in {self.name!r}"
        rows = self._decided_rows(what, since, limit, ReviewLabel.violating)
        return [_violation_from_rows(item, decision) for item, decision in rows]

    def list(
        self,
        state: ItemState | str | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
        offset: int = 0,
    ) -> builtins.list[ReviewItem]:
        """Items in queue order (priority, then age), optionally only those in one state.

        `state` is the effective state, as `ReviewItem.state` reports it. `limit` and `offset`
        page through the result.
        """
        wanted = None if state is None else _state(state)
        limit = _positive(limit, "limit")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise QueueError(f"offset must be a non-negative integer, got {offset!r}")
        now = self._now()
        query = _ITEMS_WITH_DECISIONS.where(ReviewItemRow.queue == self.name)
        if wanted is ItemState.pending:
            query = query.where(_claimable(now))
        elif wanted is ItemState.claimed:
            query = query.where(
                ReviewItemRow.state == ItemState.claimed.value,
                ReviewItemRow.claim_expires_at > now,
            )
        elif wanted is ItemState.decided:
            query = query.where(ReviewItemRow.state == ItemState.decided.value)
        query = (
            query.order_by(
                ReviewItemRow.priority.desc(), ReviewItemRow.enqueued_at, ReviewItemRow.id
            )
            .limit(limit)
            .offset(offset)
        )
        with self._transaction(f"list the items in {self.name!r}") as session:
            rows = session.execute(query).all()
        return [_item_from_row(item, decision, now) for item, decision in rows]

    # -- plumbing ---------------------------------------------------------------------------

    def _transaction(self, what: str, *, write: bool = False) -> AbstractContextManager[Session]:
        """The store's transaction; writes on SQLite take the write lock up front."""
        return self.store.transaction(what, write=write)

    def _now(self) -> datetime:
        now = self._clock()
        if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
            raise QueueError(
                f"the queue's clock must return a timezone-aware datetime, got {now!r}"
            )
        return now.astimezone(UTC)

    def _insert(self) -> Any:
        """The dialect's INSERT, which knows ON CONFLICT (both backends spell it the same)."""
        if self.store.dialect == "postgresql":
            return postgresql_insert(ReviewItemRow)
        return sqlite_insert(ReviewItemRow)

    def _locked(self, query: _Query) -> _Query:
        """`query` locking the rows it reads until commit (PostgreSQL; SQLite holds its write lock)."""
        return query.with_for_update() if self.store.dialect == "postgresql" else query

    def _held_row(
        self, session: Session, item_id: str, reviewer: str, now: datetime, verb: str
    ) -> ReviewItemRow:
        """The item's row, locked, after checking that `reviewer` may `verb` it."""
        query = select(ReviewItemRow).where(
            ReviewItemRow.queue == self.name, ReviewItemRow.item_id == item_id
        )
        row = session.scalars(self._locked(query)).first()
        if row is None:
            raise UnknownItemError(self.name, item_id)
        where = f"{item_id!r} in review queue {self.name!r}"
        if row.state == ItemState.decided.value:
            raise ClaimError(
                self.name, item_id, "decided", f"{where} was decided already; cannot {verb} it"
            )
        if row.state != ItemState.claimed.value or row.claimed_by is None:
            raise ClaimError(
                self.name,
                item_id,
                "not_claimed",
                f"{where} is not claimed; {reviewer!r} must claim it before they {verb} it",
            )
        if row.claimed_by == reviewer:
            return row  # live, or expired with nobody else having claimed it since
        expires = row.claim_expires_at
        if expires is not None and expires <= now:
            raise ClaimError(
                self.name,
                item_id,
                "not_claimed",
                f"{where} is not claimed by {reviewer!r} (the claim of {row.claimed_by!r} "
                f"expired at {expires.isoformat()}); claim it before you {verb} it",
            )
        until = f" until {expires.isoformat()}" if expires is not None else ""
        raise ClaimError(
            self.name,
            item_id,
            "claimed_by_other",
            f"{where} is claimed by {row.claimed_by!r}{until}, not by {reviewer!r}; only the "
            f"holder may {verb} it (if you held it, your claim expired and it was handed on)",
        )

    def _decided_rows(
        self, what: str, since: datetime | None, limit: int | None, label: ReviewLabel | None
    ) -> builtins.list[tuple[ReviewItemRow, ReviewDecisionRow]]:
        """Decided items of this queue with their decisions, oldest decision first."""
        query = _DECIDED_ITEMS.where(ReviewItemRow.queue == self.name)
        if since is not None:
            if not isinstance(since, datetime) or since.tzinfo is None or since.utcoffset() is None:
                raise QueueError(f"since must be a timezone-aware datetime, got {since!r}")
            query = query.where(ReviewDecisionRow.decided_at >= since)
        if label is not None:
            query = query.where(ReviewDecisionRow.label == label.value)
        query = query.order_by(ReviewDecisionRow.decided_at, ReviewDecisionRow.id)
        if limit is not None:
            query = query.limit(_positive(limit, "limit"))
        with self._transaction(what) as session:
            return [(item, decision) for item, decision in session.execute(query)]


def queue_names(store: Store) -> list[str]:
    """The names of the queues that hold at least one item, sorted."""
    query = select(ReviewItemRow.queue).distinct().order_by(ReviewItemRow.queue)
    with store.transaction("list the review queues") as session:
        return [str(name) for name in session.scalars(query)]


# -- validation ---------------------------------------------------------------------------------


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _no_nul(value: str, what: str) -> None:
    # SQLite would keep a NUL and PostgreSQL refuse it; refusing it first keeps both alike.
    if "\x00" in value:
        raise QueueError(f"{what} contains a NUL character, which the queue does not store")


def _text(value: object, what: str, *, strip: bool = True) -> str:
    """A non-empty string: names are stripped, item ids kept exactly as the caller spelled them."""
    if not isinstance(value, str) or not value.strip():
        raise QueueError(f"{what} must be a non-empty string, got {value!r}")
    _no_nul(value, what)
    return value.strip() if strip else value


def _strings(values: object, what: str) -> list[str]:
    """Non-empty strings, duplicates dropped, first-seen order kept."""
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise QueueError(f"{what} must be a list of strings, got {values!r}")
    out: list[str] = []
    for value in values:
        text = _text(value, f"each of {what}")
        if text not in out:
            out.append(text)
    return out


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise QueueError(f"{what} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise QueueError(f"{what} must be finite, got {number}")
    return number


def _seconds(value: object, what: str) -> timedelta:
    seconds = _number(value, what)
    if seconds <= 0:
        raise QueueError(f"{what} must be positive, got {seconds}")
    return timedelta(seconds=seconds)


def _positive(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise QueueError(f"{what} must be a positive integer, got {value!r}")
    return value


def _label(value: object) -> ReviewLabel:
    if isinstance(value, str) and value in ReviewLabel.__members__.values():
        return ReviewLabel(value)
    known = ", ".join(label.value for label in ReviewLabel)
    raise QueueError(f"unknown label {value!r}; expected one of: {known}")


def _state(value: object) -> ItemState:
    if isinstance(value, str) and value in ItemState.__members__.values():
        return ItemState(value)
    known = ", ".join(state.value for state in ItemState)
    raise QueueError(f"unknown state {value!r}; expected one of: {known}")


def _features(values: object, what: str) -> dict[str, float | None]:
    """The ranker's features as JSON can hold them: NaN (does not apply) becomes null."""
    if not isinstance(values, Mapping):
        raise QueueError(f"{what} must be a mapping of names to numbers, got {values!r}")
    out: dict[str, float | None] = {}
    for name, value in values.items():
        key = _text(name, f"a name in {what}", strip=False)
        if isinstance(value, bool) or not isinstance(value, Real):
            raise QueueError(f"{what}[{key!r}] must be a number, got {value!r}")
        number = float(value)
        if math.isinf(number):
            raise QueueError(f"{what}[{key!r}] must be finite or NaN, got {number}")
        out[key] = None if math.isnan(number) else number
    return out


def _field(check: Callable[[Any, str], Any]) -> PlainValidator:
    """A pydantic validator from one of the checks above: it names the field, and its
    QueueError becomes the ValueError that pydantic records against that field."""

    def validate(value: object, info: ValidationInfo) -> Any:
        try:
            return check(value, str(info.field_name))
        except QueueError as exc:
            raise ValueError(str(exc)) from None

    return PlainValidator(validate)


def _optional_number(value: object, what: str) -> float | None:
    if value is None:
        return None
    number = _number(value, what)
    if number < 0:
        raise QueueError(f"{what} cannot be negative, got {number}")
    return number


def _optional_text(value: object, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise QueueError(f"{what} must be a string, got {type(value).__name__}")
    _no_nul(value, what)
    return value


def _plain_json(value: object, what: str) -> dict[Any, Any]:
    if not isinstance(value, Mapping):
        raise QueueError(f"{what} must be a mapping, got {value!r}")
    mapping = dict(value)
    try:
        json.dumps(mapping, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise QueueError(f"{what} must be plain JSON: {exc}") from None
    return mapping


def _item_id(value: object, what: str) -> str:
    return _text(value, what, strip=False)


_ItemId = Annotated[str, _field(_item_id)]
_Number = Annotated[float, _field(_number)]
_Harm = Annotated[float | None, _field(_optional_number)]
_Text = Annotated[str | None, _field(_optional_text)]
_Names = Annotated[list[str], _field(_strings)]
_Json = Annotated[dict[Any, Any], _field(_plain_json)]
_Features = Annotated[dict[str, float | None], _field(_features)]


class _ItemColumns(BaseModel):
    """A `QueueItem` as the queue stores it, every field checked: an item id kept exactly as
    spelled, finite numbers, text without NUL, de-duplicated names, metadata that is plain
    JSON, and features with NaN (does not apply) as null."""

    model_config = ConfigDict(frozen=True)

    item_id: _ItemId
    priority: _Number
    expected_harm: _Harm
    text: _Text
    media: _Names
    metadata: _Json
    channels: _Names
    features: _Features


def _item_values(queue: str, n: int, item: QueueItem, now: datetime) -> dict[str, Any]:
    """The row for a new item; a bad field is a QueueError naming the item by position and id."""
    if not isinstance(item, QueueItem):
        raise QueueError(f"item {n} must be a QueueItem, got {type(item).__name__}")
    try:
        row = _ItemColumns.model_validate({f: getattr(item, f) for f in _ItemColumns.model_fields})
    except ValidationError as exc:
        first = exc.errors()[0]
        problem = first.get("ctx", {}).get("error", first["msg"])
        raise QueueError(f"item {n} ({item.item_id!r}): {problem}") from None
    return {
        "queue": queue,
        "item_id": row.item_id,
        "state": ItemState.pending.value,
        "priority": row.priority,
        "expected_harm": row.expected_harm,
        "text": row.text,
        "media": row.media,
        "item_metadata": row.metadata,
        "channels": row.channels,
        "features": row.features,
        "claimed_by": None,
        "claimed_at": None,
        "claim_expires_at": None,
        "claim_count": 0,
        "enqueued_at": now,
        "updated_at": now,
    }


def _update_row(row: ReviewItemRow, value: Mapping[str, Any], now: datetime) -> None:
    """Re-queue an undecided item: the newest priority always wins, the newest expected harm,
    features, text, media and metadata when the entry has them; channels accumulate."""
    row.priority = value["priority"]
    if value["expected_harm"] is not None:
        row.expected_harm = value["expected_harm"]
    if value["features"]:
        row.features = value["features"]
    row.channels = row.channels + [c for c in value["channels"] if c not in row.channels]
    if value["text"] is not None:
        row.text = value["text"]
    if value["media"]:
        row.media = value["media"]
    if value["item_metadata"]:
        row.item_metadata = value["item_metadata"]
    row.updated_at = now


def _claimable(now: datetime) -> ColumnElement[bool]:
    """Pending, or claimed with the claim run out."""
    return or_(
        ReviewItemRow.state == ItemState.pending.value,
        and_(
            ReviewItemRow.state == ItemState.claimed.value,
            ReviewItemRow.claim_expires_at <= now,
        ),
    )


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


# -- rows to dataclasses ------------------------------------------------------------------------


def _read_features(stored: Mapping[str, float | None]) -> dict[str, float]:
    return {name: math.nan if value is None else float(value) for name, value in stored.items()}


def _effective_state(row: ReviewItemRow, now: datetime) -> ItemState:
    state = ItemState(row.state)
    expires = row.claim_expires_at
    if state is ItemState.claimed and expires is not None and expires <= now:
        return ItemState.pending
    return state


def _decision_from_rows(item: ReviewItemRow, decision: ReviewDecisionRow) -> ReviewDecision:
    return ReviewDecision(
        queue=item.queue,
        item_id=item.item_id,
        label=ReviewLabel(decision.label),
        categories=list(decision.categories),
        note=decision.note,
        reviewer=decision.reviewer,
        decided_at=decision.decided_at,
    )


def _item_from_row(
    row: ReviewItemRow, decision: ReviewDecisionRow | None, now: datetime
) -> ReviewItem:
    return ReviewItem(
        queue=row.queue,
        item_id=row.item_id,
        state=_effective_state(row, now),
        priority=row.priority,
        expected_harm=row.expected_harm,
        text=row.text,
        media=list(row.media),
        metadata=dict(row.item_metadata),
        channels=list(row.channels),
        features=_read_features(row.features),
        claimed_by=row.claimed_by,
        claimed_at=row.claimed_at,
        claim_expires_at=row.claim_expires_at,
        claim_count=row.claim_count,
        enqueued_at=row.enqueued_at,
        updated_at=row.updated_at,
        decision=None if decision is None else _decision_from_rows(row, decision),
    )


def _example_from_rows(item: ReviewItemRow, decision: ReviewDecisionRow) -> TrainingExample:
    return TrainingExample(
        queue=item.queue,
        item_id=item.item_id,
        label=ReviewLabel(decision.label),
        categories=list(decision.categories),
        priority=item.priority,
        expected_harm=item.expected_harm,
        channels=list(item.channels),
        features=_read_features(item.features),
        metadata=dict(item.item_metadata),
        reviewer=decision.reviewer,
        note=decision.note,
        decided_at=decision.decided_at,
    )


def _violation_from_rows(item: ReviewItemRow, decision: ReviewDecisionRow) -> ConfirmedViolation:
    return ConfirmedViolation(
        queue=item.queue,
        item_id=item.item_id,
        text=item.text,
        media=list(item.media),
        categories=list(decision.categories),
        note=decision.note,
        reviewer=decision.reviewer,
        decided_at=decision.decided_at,
        metadata=dict(item.item_metadata),
    )
