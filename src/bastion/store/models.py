"""The store's tables as typed SQLAlchemy ORM classes (the migrations create them; these read and write them).

Only portable types are used, so one schema serves SQLite and PostgreSQL: JSON through
`StrictJSON` (over `sqlalchemy.JSON`), timestamps through `UTCDateTime`, text as unbounded
`String`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Every constraint gets a predictable name, which batch migrations on SQLite need to alter them."""


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL keeps the instant (timestamptz) and hands it back in the session's zone; SQLite
    has no datetime type and SQLAlchemy stores a naive ISO string. So values are converted to
    UTC going in (naive ones are refused rather than guessed), stored naive on SQLite (the
    fixed-width strings then sort and compare in time order), and come back tagged UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the store only takes timezone-aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {value!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class StrictJSON(TypeDecorator[Any]):
    """A JSON column that takes only what standard JSON can say, refused the same way on every backend.

    The value is encoded once as a check before the driver sees it, for two reasons that
    PostgreSQL exposed. Where the encoding happens differs: SQLite's dialect encodes inside
    SQLAlchemy, so a value `json` cannot encode (a set, an object) is a SQLAlchemy error, while
    psycopg encodes inside its own execute, where the bare TypeError escapes every handler that
    expects a database error. And `json.dumps` writes NaN and infinities as bare `NaN` /
    `Infinity`, which SQLite keeps but PostgreSQL's json type rejects, so a log written on one
    backend would not load into the other. Checking here makes both a `StatementError` (hence
    the store's `StoreError`) on both backends, before anything is sent.
    """

    impl = JSON(none_as_null=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is not None:
            json.dumps(value, allow_nan=False)  # raises TypeError / ValueError; result unused
        return value


# SQLite only autoincrements an INTEGER PRIMARY KEY (the rowid); PostgreSQL gets a 64-bit serial.
DecisionId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ApiKeyRow(Base):
    """One API key: the secret's prefix and SHA-256, never the secret."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String())
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(32))
    project: Mapped[str] = mapped_column(String())
    scopes: Mapped[list[str]] = mapped_column(StrictJSON())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class DecisionRow(Base):
    """One logged decision. Append-only: rows are inserted, read, never updated.

    `key_id` is deliberately not a foreign key: the log is an audit trail and must take the
    record it is given, whatever later happens to the key table.
    """

    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(DecisionId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(), index=True)
    item_index: Mapped[int] = mapped_column(Integer())
    item_id: Mapped[str | None] = mapped_column(String(), nullable=True)
    content_hash: Mapped[str] = mapped_column(String())
    policy_version: Mapped[str] = mapped_column(String())
    model_version: Mapped[str] = mapped_column(String())
    flagged: Mapped[bool | None] = mapped_column(Boolean(), nullable=True)
    action: Mapped[str | None] = mapped_column(String(), nullable=True)
    scores: Mapped[dict[str, float]] = mapped_column(StrictJSON())
    categories: Mapped[list[str]] = mapped_column(StrictJSON())
    error: Mapped[str | None] = mapped_column(String(), nullable=True)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    project: Mapped[str | None] = mapped_column(String(), nullable=True, index=True)
    route: Mapped[str] = mapped_column(String())
    latency_ms: Mapped[float | None] = mapped_column(Float(), nullable=True)
    content: Mapped[str | None] = mapped_column(String(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class ReviewItemRow(Base):
    """One item in a named review queue, with what the ranker knew when it queued it.

    `state` is what was last written (pending, claimed, decided); a claim whose
    `claim_expires_at` has passed is treated as pending by every reader, without a sweeper
    rewriting it, so `claimed_by` keeps naming the last holder until someone else claims it.
    `(queue, item_id)` is unique: re-queuing updates the row instead of adding one.
    """

    __tablename__ = "review_items"
    __table_args__ = (
        UniqueConstraint("queue", "item_id", name="uq_review_items_queue_item_id"),
        Index("ix_review_items_queue_state_priority", "queue", "state", "priority"),
    )

    id: Mapped[int] = mapped_column(DecisionId, primary_key=True, autoincrement=True)
    queue: Mapped[str] = mapped_column(String())
    item_id: Mapped[str] = mapped_column(String())
    state: Mapped[str] = mapped_column(String(16))
    priority: Mapped[float] = mapped_column(Float())
    expected_harm: Mapped[float | None] = mapped_column(Float(), nullable=True)
    text: Mapped[str | None] = mapped_column(String(), nullable=True)
    media: Mapped[list[str]] = mapped_column(StrictJSON())
    item_metadata: Mapped[dict[str, Any]] = mapped_column(StrictJSON())
    channels: Mapped[list[str]] = mapped_column(StrictJSON())
    features: Mapped[dict[str, float | None]] = mapped_column(StrictJSON())
    claimed_by: Mapped[str | None] = mapped_column(String(), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    claim_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    claim_count: Mapped[int] = mapped_column(Integer())
    enqueued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ReviewDecisionRow(Base):
    """A reviewer's decision on one queued item: at most one per item (the unique key says so).

    The item's features, channels and priority are not copied here: a decided item's row is
    never updated again, so joining to it gives exactly what the ranker saw.
    """

    __tablename__ = "review_decisions"

    id: Mapped[int] = mapped_column(DecisionId, primary_key=True, autoincrement=True)
    review_item_id: Mapped[int] = mapped_column(
        DecisionId, ForeignKey("review_items.id"), unique=True
    )
    label: Mapped[str] = mapped_column(String(32))
    categories: Mapped[list[str]] = mapped_column(StrictJSON())
    note: Mapped[str] = mapped_column(String())
    reviewer: Mapped[str] = mapped_column(String())
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class PersonRow(Base):
    """Someone who logs in to the web app: a login name, a role and a salted scrypt hash of
    their password (never the password)."""

    __tablename__ = "people"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class WebSessionRow(Base):
    """A logged-in browser: the SHA-256 of the cookie's token (the token itself is not kept),
    the form token that must come back with every POST, and when it stops working."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    person_id: Mapped[str] = mapped_column(String(32), ForeignKey("people.id"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AnnotationProjectRow(Base):
    """An annotation project: the policy it annotates against (its text, frozen at creation, so
    every task of the project is judged by one policy version) and how tasks are handed out."""

    __tablename__ = "annotation_projects"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String())
    policy_text: Mapped[str] = mapped_column(String())
    policy_version: Mapped[str] = mapped_column(String())
    categories: Mapped[list[str]] = mapped_column(StrictJSON())
    overlap: Mapped[int] = mapped_column(Integer())
    borderline_overlap: Mapped[int] = mapped_column(Integer())
    blind_share: Mapped[float] = mapped_column(Float())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ProjectMemberRow(Base):
    """Who works on a project (admins work on every project without being members)."""

    __tablename__ = "project_members"

    project_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("annotation_projects.id"), primary_key=True
    )
    person_id: Mapped[str] = mapped_column(String(32), ForeignKey("people.id"), primary_key=True)


class AnnotationTaskRow(Base):
    """One item to annotate in a project, with its pre-annotations and, for a gold item, the
    known answer. `required` is how many people annotate it (higher for borderline items)."""

    __tablename__ = "annotation_tasks"
    __table_args__ = (
        UniqueConstraint("project_id", "item_id", name="uq_annotation_tasks_project_id"),
        Index("ix_annotation_tasks_project_state", "project_id", "state"),
    )

    id: Mapped[int] = mapped_column(DecisionId, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(String(64), ForeignKey("annotation_projects.id"))
    item_id: Mapped[str] = mapped_column(String())
    text: Mapped[str] = mapped_column(String())
    media: Mapped[list[str]] = mapped_column(StrictJSON())
    item_metadata: Mapped[dict[str, Any]] = mapped_column(StrictJSON())
    borderline: Mapped[bool] = mapped_column(Boolean())
    blind: Mapped[bool] = mapped_column(Boolean())
    required: Mapped[int] = mapped_column(Integer())
    suggestions: Mapped[dict[str, Any]] = mapped_column(StrictJSON())
    gold: Mapped[dict[str, Any] | None] = mapped_column(StrictJSON(), nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AssignmentRow(Base):
    """A task handed to one person; `submitted_at` is set when their annotation is in."""

    __tablename__ = "annotation_assignments"
    __table_args__ = (
        UniqueConstraint("task_id", "person_id", name="uq_annotation_assignments_task_id"),
    )

    id: Mapped[int] = mapped_column(DecisionId, primary_key=True, autoincrement=True)
    task_id: Mapped[int] = mapped_column(DecisionId, ForeignKey("annotation_tasks.id"))
    person_id: Mapped[str] = mapped_column(String(32), ForeignKey("people.id"), index=True)
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime())
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AnnotationRow(Base):
    """One person's annotation of one task for one category (`kind` annotation), or a
    reviewer's final word on a disagreement (`kind` adjudication). Written once, never changed."""

    __tablename__ = "annotations"

    id: Mapped[int] = mapped_column(DecisionId, primary_key=True, autoincrement=True)
    task_id: Mapped[int] = mapped_column(DecisionId, ForeignKey("annotation_tasks.id"), index=True)
    person_id: Mapped[str] = mapped_column(String(32), ForeignKey("people.id"))
    kind: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String())
    body: Mapped[dict[str, Any]] = mapped_column(StrictJSON())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditRow(Base):
    """One change to the annotation workflow: who did what, when, to which project and task.
    Append-only: the migration installs triggers that refuse UPDATE and DELETE."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(DecisionId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String())
    action: Mapped[str] = mapped_column(String(32))
    project_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    task_id: Mapped[int | None] = mapped_column(DecisionId, nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(StrictJSON())


class RateLimitRow(Base):
    """One token bucket of the per-key rate limit, shared by every worker and replica on the
    store: the tokens left when it was last refilled, and when that was (seconds on the
    limiter's clock, the Unix time by default)."""

    __tablename__ = "rate_limits"

    bucket: Mapped[str] = mapped_column(String(64), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float())
    refilled_at: Mapped[float] = mapped_column(Float())


class LoginFailureRow(Base):
    """Failed log-ins counted for one (name, address) pair or one address, shared by every
    worker and replica; `id` is the SHA-256 of what is counted, so no name or address is kept."""

    __tablename__ = "login_failures"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer())
    last_failure_at: Mapped[float] = mapped_column(Float(), index=True)
