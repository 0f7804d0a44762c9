"""The persistent store behind the HTTP service: API keys and the decision log, in SQLite or PostgreSQL.

One `Store` owns one SQLAlchemy engine. Every public method runs in its own short transaction
and is safe to call from several threads at once. Database failures come out as `StoreError`
(never a raw SQLAlchemy exception), with the SQL parameters left out of the message: they can
hold logged content.
"""

from __future__ import annotations

import dataclasses
import hmac
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, cast

from sqlalchemy import Connection, Engine, Table, create_engine, event, func, make_url, select
from sqlalchemy import text as sql_text
from sqlalchemy import update as sql_update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bastion.errors import InputError
from bastion.store.errors import StoreError
from bastion.store.keys import (
    KNOWN_SCOPES,
    SCOPES_BY_ROLE,
    ApiKey,
    Role,
    hash_secret,
    is_well_formed,
    new_key_id,
    new_secret,
    secret_prefix,
)
from bastion.store.models import ApiKeyRow, DecisionRow
from bastion.store.paths import bastion_home, default_database_url
from bastion.store.records import DecisionRecord

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
"""The Alembic scripts shipped inside the package (env.py, script.py.mako, versions/)."""

SQLITE_BUSY_TIMEOUT_MS: Final = 30_000
"""How long a SQLite writer waits for another writer's lock before giving up (StoreError)."""

_SQLITE_BEGIN: Final = "bastion_sqlite_begin"
"""Execution option naming the BEGIN flavour a SQLite transaction starts with."""

_SQLITE_SYNCHRONOUS: Final = "bastion_sqlite_synchronous"
"""Execution option naming the `PRAGMA synchronous` level a SQLite transaction commits with."""

_PG_MIGRATION_LOCK: Final = 0x62617374  # "bast": an arbitrary, fixed advisory-lock key
"""PostgreSQL advisory lock taken for the length of a migration, so concurrent starts queue up."""


DATABASE_URL_ENV = "BASTION_DATABASE_URL"


class Store:
    """API keys and the decision log over one database URL.

    The constructor connects lazily and does not migrate: use `Store.open()` for "make it ready",
    or call `migrate()` yourself (the CLI's `db upgrade`, say).
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        try:
            parsed = make_url(url)
            self.url = url
            self._display_url = parsed.render_as_string(hide_password=True)
            self.dialect = parsed.get_backend_name()
            options: dict[str, Any] = {"echo": echo}
            if self.dialect != "sqlite":
                # A long-running server outlives server restarts and idle-connection reaping.
                options["pool_pre_ping"] = True
            self.engine: Engine = create_engine(parsed, **options)
        except (SQLAlchemyError, ImportError) as exc:
            shown = getattr(self, "_display_url", "(unparseable URL)")
            raise StoreError(f"cannot use database URL {shown!r}: {exc}") from exc
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def open(cls, home: Path | None = None, url: str | None = None) -> Store:
        """Create the home directory (mode 0o700), open the database and bring its schema to head.

        `url` defaults to $BASTION_DATABASE_URL (for example
        `postgresql+psycopg://bastion@db/bastion`), else to the SQLite file in `home`, which is
        created owner-only (0o600) before SQLite first touches it; SQLite gives its -wal and
        -shm files the same mode.
        """
        home = bastion_home() if home is None else home
        try:
            home.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the Bastion home directory {home}: {exc}") from exc
        if url is None:
            url = os.environ.get(DATABASE_URL_ENV) or default_database_url(home)
        db_file = _sqlite_file(url)
        if db_file is not None and not db_file.exists():
            try:
                os.close(os.open(db_file, os.O_CREAT | os.O_WRONLY, 0o600))
            except OSError as exc:
                raise StoreError(f"cannot create the database file {db_file}: {exc}") from exc
        store = cls(url)
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
        return store

    def migrate(self) -> None:
        """Bring the schema to the newest revision (`alembic upgrade head`); a no-op when it is there.

        The Alembic scripts are the ones packaged in `bastion/store/migrations`, found by path,
        so no alembic.ini is needed at run time. The whole upgrade runs in one transaction on
        this store's engine, and that transaction first takes a database-wide lock: on SQLite a
        `BEGIN IMMEDIATE` (the write lock; DDL is transactional there), on PostgreSQL an
        advisory lock. Two processes starting at once therefore queue: the second waits, then
        finds the schema at head and does nothing, instead of failing on "table already exists".
        """
        from alembic import command
        from alembic.config import Config
        from alembic.util import CommandError

        config = Config()
        # The value goes through configparser interpolation, where "%" is special.
        config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
        try:
            with self.engine.connect() as connection:
                if self.dialect == "sqlite":
                    connection.execution_options(**{_SQLITE_BEGIN: "IMMEDIATE"})
                with connection.begin():
                    if self.dialect == "postgresql":
                        connection.execute(
                            sql_text("SELECT pg_advisory_xact_lock(:key)"),
                            {"key": _PG_MIGRATION_LOCK},
                        )
                    config.attributes["connection"] = connection
                    command.upgrade(config, "head")
        except (SQLAlchemyError, CommandError) as exc:
            raise StoreError(
                f"could not migrate the database at {self._display_url}: {_describe(exc)}"
            ) from exc

    def close(self) -> None:
        """Close every pooled connection (on SQLite the last one out checkpoints the WAL)."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self._display_url!r})"

    # -- keys -------------------------------------------------------------------------------

    def create_key(
        self,
        name: str,
        role: Role = Role.moderator,
        project: str = "default",
        scopes: Iterable[str] | None = None,
    ) -> tuple[ApiKey, str]:
        """Issue a key. Returns its record and the plaintext secret, which is shown this once.

        Scopes default to the role's (`SCOPES_BY_ROLE`); given scopes replace them and must all
        be known scopes.
        """
        name = _required_text(name, "key name")
        project = _required_text(project, "project")
        role = _role(role)
        granted = SCOPES_BY_ROLE[role] if scopes is None else _known_scopes(scopes)
        secret = new_secret()
        row = ApiKeyRow(
            id=new_key_id(),
            name=name,
            prefix=secret_prefix(secret),
            secret_hash=hash_secret(secret),
            role=role.value,
            project=project,
            scopes=sorted(granted),
            created_at=_now(),
            revoked_at=None,
        )
        with self.transaction(f"create the API key {name!r}") as session:
            session.add(row)
        return _key_from_row(row), secret

    def verify_key(self, secret: str) -> ApiKey | None:
        """The live key whose secret this is, or None (unknown, revoked or malformed).

        The row is found by its clear prefix; the hash comparison is constant-time, and runs
        against every row sharing the prefix, so timing says nothing about the hash.
        """
        if not isinstance(secret, str) or not is_well_formed(secret):
            return None
        digest = hash_secret(secret)
        with self.transaction("verify an API key") as session:
            rows = session.scalars(
                select(ApiKeyRow).where(ApiKeyRow.prefix == secret_prefix(secret))
            ).all()
        found: ApiKeyRow | None = None
        for row in rows:
            if hmac.compare_digest(row.secret_hash.encode("ascii"), digest.encode("ascii")):
                found = row
        if found is None or found.revoked_at is not None:
            return None
        return _key_from_row(found)

    def list_keys(self, include_revoked: bool = False) -> list[ApiKey]:
        """Keys in creation order; revoked ones only when asked for."""
        query = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
        if not include_revoked:
            query = query.where(ApiKeyRow.revoked_at.is_(None))
        with self.transaction("list API keys") as session:
            return [_key_from_row(row) for row in session.scalars(query)]

    def revoke_key(self, key_id: str) -> bool:
        """Revoke a key from now on. True when this call revoked it; False when the id is unknown
        or the key was already revoked (the first revocation time is kept)."""
        query = (
            sql_update(ApiKeyRow)
            .where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None))
            .values(revoked_at=_now())
        )
        with self.transaction(f"revoke the API key {key_id!r}") as session:
            result = session.execute(query, execution_options={"synchronize_session": False})
            changed: int = getattr(result, "rowcount", 0)
        return changed == 1

    def count_keys(self) -> int:
        """How many keys are live (not revoked): zero means the service has no way in yet."""
        query = select(func.count()).select_from(ApiKeyRow).where(ApiKeyRow.revoked_at.is_(None))
        with self.transaction("count API keys") as session:
            return int(session.scalar(query) or 0)

    # -- decision log -----------------------------------------------------------------------

    def log_decisions(self, records: Sequence[DecisionRecord]) -> None:
        """Append a batch to the decision log: all of it or none of it, durable when this returns.

        The batch is one transaction, committed before returning, so a verdict may be
        acknowledged to the client once this call is back. On SQLite the commit is in the WAL
        and (synchronous=FULL) fsynced, so it survives the process being killed and the machine
        losing power. On failure nothing of the batch is written and StoreError is raised;
        InputError (nothing written either) when a text field holds a NUL character, on every
        backend alike.
        Every record is stamped with the same `created_at` (now, UTC); a caller's value is ignored.
        """
        if not records:
            return
        for n, record in enumerate(records):
            for name in _DECISION_FIELDS:
                value = getattr(record, name)
                if isinstance(value, str) and "\x00" in value:
                    raise InputError(
                        f"decision {n}: {name} contains a NUL character, which the decision "
                        "log does not store (PostgreSQL cannot); none of this batch was written"
                    )
        stamp = _now()
        rows = [_row_values(record, stamp) for record in records]
        noun = "decision" if len(rows) == 1 else "decisions"
        what = f"log {len(rows)} {noun} (none of this batch was written)"
        with self.transaction(what) as session:
            # A Core insert of the table: the ORM's bulk insert took more Python time than the
            # commit's fsync on a busy service, for rows nothing in this process reads back.
            session.execute(cast(Table, DecisionRow.__table__).insert(), rows)

    def decisions(
        self,
        *,
        request_id: str | None = None,
        project: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[DecisionRecord]:
        """Logged decisions, newest first, optionally of one request, one project, or from `since` on."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InputError(f"limit must be a positive integer, got {limit!r}")
        query = select(DecisionRow)
        if request_id is not None:
            query = query.where(DecisionRow.request_id == request_id)
        if project is not None:
            query = query.where(DecisionRow.project == project)
        if since is not None:
            if since.tzinfo is None or since.utcoffset() is None:
                raise InputError(f"since must be timezone-aware, got {since.isoformat()}")
            query = query.where(DecisionRow.created_at >= since)
        query = query.order_by(DecisionRow.created_at.desc(), DecisionRow.id.desc()).limit(limit)
        with self.transaction("read the decision log") as session:
            return [_record_from_row(row) for row in session.scalars(query)]

    def count_decisions(self) -> int:
        """How many decisions the log holds."""
        with self.transaction("count logged decisions") as session:
            return int(session.scalar(select(func.count()).select_from(DecisionRow)) or 0)

    # -- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def transaction(
        self, what: str, *, write: bool = False, durable: bool = True
    ) -> Iterator[Session]:
        """A session in one transaction, committed on leaving; database failures become
        StoreError ("could not {what}: ...").

        `write=True` on SQLite begins IMMEDIATE: the transaction takes the write lock before
        its first read, so a read-then-write (a queue claim) can neither interleave with another
        writer nor fail half-way when SQLite cannot upgrade a reader whose snapshot went stale.
        It waits for the lock up to the busy timeout.

        `durable=False` commits without waiting for the disk: for state that is cheap to lose
        in a power cut and written on every request (rate-limit buckets, log-in failure
        counts), where an fsync per request would cost more than the request. The commit is
        still atomic and seen at once by every other connection and process; only a machine
        crash may roll back its last moments. On SQLite it commits at `synchronous=NORMAL`
        (WAL appended, not fsynced; the next durable commit's fsync covers it), on PostgreSQL
        with `synchronous_commit = off` for this transaction only.
        """
        options: dict[str, str] = {}
        if self.dialect == "sqlite":
            if write:
                options[_SQLITE_BEGIN] = "IMMEDIATE"
            if not durable:
                options[_SQLITE_SYNCHRONOUS] = "NORMAL"
        try:
            with self._sessions.begin() as session:
                if options:
                    session.connection(execution_options=options)
                elif not durable and self.dialect == "postgresql":
                    session.execute(sql_text("SET LOCAL synchronous_commit = off"))
                yield session
        except SQLAlchemyError as exc:
            raise StoreError(f"could not {what}: {_describe(exc)}") from exc


def _configure_sqlite(engine: Engine) -> None:
    """Set every new SQLite connection up for a service that acknowledges writes.

    - WAL journal: readers never block the writer and the writer never blocks readers, and a
      commit is one append to the -wal file.
    - synchronous=FULL: that append is fsynced before COMMIT returns. An acknowledged verdict
      must survive a SIGKILL (the commit is in the WAL before we ack, so it does at any level
      but OFF) and also an OS crash or power cut, which only FULL guarantees in WAL mode.
    - busy_timeout: a writer waits for another writer's lock instead of failing at once.
    - foreign_keys: SQLite leaves them unenforced unless asked, per connection.
    - synchronous is set again before each transaction that asks for another level than the
      connection's last (`bastion_sqlite_synchronous`, see `Store.transaction(durable=False)`),
      so a pooled connection never carries a relaxed level into a durable commit.

    pysqlite's own transaction handling is switched off (isolation_level None) and SQLAlchemy
    emits BEGIN itself: pysqlite would otherwise not BEGIN before DDL or SELECT, which breaks
    transactional migrations. A connection may ask for `BEGIN IMMEDIATE` (take the write lock
    up front) with the `bastion_sqlite_begin` execution option; `migrate` does.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first: switching a fresh file to WAL takes a lock that may be held.
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        options = connection.get_execution_options()
        mode = options.get(_SQLITE_BEGIN, "DEFERRED")
        if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
            raise ValueError(f"unknown SQLite BEGIN mode {mode!r}")
        synchronous = options.get(_SQLITE_SYNCHRONOUS, "FULL")
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"unknown SQLite synchronous level {synchronous!r}")
        if connection.info.get(_SQLITE_SYNCHRONOUS, "FULL") != synchronous:
            # Outside a transaction, where SQLite applies it at once; remembered per connection.
            connection.exec_driver_sql(f"PRAGMA synchronous = {synchronous}")
            connection.info[_SQLITE_SYNCHRONOUS] = synchronous
        connection.exec_driver_sql(f"BEGIN {mode}")


def _sqlite_file(url: str) -> Path | None:
    """The database file of a plain SQLite file URL, or None (other backends, memory, URI mode)."""
    try:
        parsed = make_url(url)
    except SQLAlchemyError:
        return None
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:") or parsed.query.get("uri"):
        return None
    return Path(database)


def _describe(exc: BaseException) -> str:
    """The first line of the driver's message (e.g. "NOT NULL constraint failed: decisions.route").

    Not the SQL statement and parameters SQLAlchemy appends, nor PostgreSQL's DETAIL line
    ("Failing row contains ..."): those can hold logged content, and errors end up in logs.
    """
    original = getattr(exc, "orig", None)
    message = str(original) if original is not None else str(exc).split("\n[SQL:")[0]
    return message.strip().splitlines()[0] if message.strip() else type(exc).__name__


def _now() -> datetime:
    return datetime.now(UTC)


def _required_text(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{what} must be a non-empty string, got {value!r}")
    return value.strip()


def _role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        known = ", ".join(r.value for r in Role)
        raise InputError(f"unknown role {role!r}; expected one of: {known}") from None


def _known_scopes(scopes: Iterable[str]) -> frozenset[str]:
    if isinstance(scopes, str):
        raise InputError(f"scopes must be a collection of scope names, not the string {scopes!r}")
    granted = frozenset(scopes)
    for scope in sorted(granted, key=str):
        if scope not in KNOWN_SCOPES:
            known = ", ".join(sorted(KNOWN_SCOPES))
            raise InputError(f"unknown scope {scope!r}; known scopes: {known}")
    return granted


def _key_from_row(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        role=Role(row.role),
        project=row.project,
        scopes=frozenset(row.scopes),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


_DECISION_FIELDS = tuple(f.name for f in dataclasses.fields(DecisionRecord))


def _row_values(record: DecisionRecord, stamp: datetime) -> Mapping[str, Any]:
    """The row for a record: the same field names, stamped with the batch's time."""
    return {**{name: getattr(record, name) for name in _DECISION_FIELDS}, "created_at": stamp}


def _record_from_row(row: DecisionRow) -> DecisionRecord:
    values = {name: getattr(row, name) for name in _DECISION_FIELDS}
    values["scores"] = dict(row.scores)
    values["categories"] = list(row.categories)
    return DecisionRecord(**values)
