"""Counters every process on one store shares: token buckets (per-key rate limits) and failed
log-in counts (the log-in throttle).

They live in the database, not in a process's memory, so a limit means the same with one
worker or four, and across replicas behind a load balancer. Taking tokens (one, or the
small lease of several that `bastion.server.security.RateLimiter` takes) is a single atomic
upsert (INSERT ... ON CONFLICT DO UPDATE ... WHERE ... RETURNING, on SQLite as on
PostgreSQL), so two processes can never both spend the bucket's last token; on PostgreSQL
the row lock the upsert takes orders them, on SQLite the write lock (BEGIN IMMEDIATE). The
writes are not fsynced (`Store.transaction(durable=False)`): a power cut may forget a few
seconds of counting, which costs nothing a limit protects.

Times are seconds on the caller's clock (the Unix time in service, a hand-moved clock in
tests); every process sharing a store must use the same clock, which wall time on machines
kept in step by NTP is. A process whose clock is a little behind never moves a bucket back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import case, delete, literal, select

from bastion.store.models import LoginFailureRow, RateLimitRow
from bastion.store.store import Store


def take_token(
    store: Store,
    bucket: str,
    *,
    capacity: float,
    per_second: float,
    now: float,
    amount: int = 1,
) -> float:
    """Take `amount` tokens (one by default) from `bucket` (at most 64 characters), all or
    none: 0.0 when they were taken, else the seconds until that many will be there.

    The bucket holds up to `capacity` tokens, starts full, and refills at `per_second`. The
    refill, the check and the take are one statement; a refused request writes nothing (the
    refill is a function of the time since the last take, so leaving the row alone loses
    nothing) and costs one more read, for the wait.
    """
    if not 1 <= amount <= capacity:
        raise ValueError(f"cannot take {amount} tokens from a bucket of {capacity:g}")
    row = RateLimitRow.__table__.c
    since = case((literal(now) > row.refilled_at, literal(now) - row.refilled_at), else_=0.0)
    refilled = row.tokens + since * per_second
    available = case((refilled > capacity, literal(capacity)), else_=refilled)
    upsert = _insert(store, RateLimitRow).values(
        bucket=bucket, tokens=capacity - amount, refilled_at=now
    )
    upsert = upsert.on_conflict_do_update(
        index_elements=[row.bucket],
        set_={
            "tokens": available - amount,
            "refilled_at": case(
                (literal(now) > row.refilled_at, literal(now)), else_=row.refilled_at
            ),
        },
        where=available >= amount,
    ).returning(row.tokens)
    with store.transaction("take a rate-limit token", write=True, durable=False) as session:
        if session.execute(upsert).first() is not None:
            return 0.0
        found = session.execute(
            select(row.tokens, row.refilled_at).where(row.bucket == bucket)
        ).first()
    if found is None:  # the bucket was removed meanwhile: the next try starts it full
        return 0.0
    refill = max(0.0, now - float(found.refilled_at)) * per_second
    tokens = min(capacity, float(found.tokens) + refill)
    return max(0.0, (amount - tokens) / per_second)


def failure_counts(store: Store, ids: Sequence[str]) -> dict[str, tuple[int, float]]:
    """For each id counted so far: (failures, when the last one was)."""
    query = select(LoginFailureRow).where(LoginFailureRow.id.in_(list(ids)))
    with store.transaction("read log-in failure counts") as session:
        return {r.id: (r.failures, r.last_failure_at) for r in session.scalars(query)}


def count_failure(store: Store, ids: Sequence[str], *, now: float, forget_s: float) -> None:
    """Count one more failure for each id, starting afresh where the last was `forget_s` or
    more ago: every count that quiet is dropped first, so the table stays as small as the
    attack and what is left is all fresh."""
    row = LoginFailureRow.__table__.c
    with store.transaction("count a failed log-in", write=True, durable=False) as session:
        session.execute(delete(LoginFailureRow).where(row.last_failure_at <= now - forget_s))
        for id_ in ids:
            upsert = _insert(store, LoginFailureRow).values(id=id_, failures=1, last_failure_at=now)
            session.execute(
                upsert.on_conflict_do_update(
                    index_elements=[row.id],
                    set_={"failures": row.failures + 1, "last_failure_at": now},
                )
            )


def clear_failures(store: Store, id_: str) -> None:
    """Forget the failures counted for `id_`."""
    with store.transaction("clear a log-in failure count", write=True, durable=False) as session:
        session.execute(delete(LoginFailureRow).where(LoginFailureRow.id == id_))


def _insert(store: Store, table: type[Any]) -> Any:
    """The dialect's INSERT, which has `on_conflict_do_update` (SQLite and PostgreSQL alike)."""
    if store.dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)
