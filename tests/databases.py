"""Database fixtures shared by the store and triage tests: a migrated store on each backend.

`store` (and `database_url` under it) runs every test that takes it twice: on a SQLite file in a
fresh home, and on PostgreSQL in a database of its own, created for the test and dropped after
it, so tests running side by side under xdist never see each other's rows. PostgreSQL comes
from $BASTION_TEST_POSTGRES_URL (`.ci/postgres.sh` starts one and sets it), a URL whose role may
create databases and is a member of pg_signal_backend (so the forced drop can end an autovacuum
worker that is in the test database). Without it the PostgreSQL cases are skipped, unless $CI_REQUIRE_POSTGRES=1
(CI sets it), where a missing server is a failure rather than a silently thinner run.

Each test database runs in an off-UTC session time zone with a half-hour offset, so any place
where the store leaned on the server's zone being UTC shows up as a failure here.

A test directory's conftest imports the fixtures it wants from here (tests/ is on sys.path).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url

from bastion.store import Store, default_database_url

POSTGRES_URL_ENV = "BASTION_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "CI_REQUIRE_POSTGRES"
BACKENDS = ("sqlite", "postgresql")
TEST_DATABASE_TIME_ZONE = "America/St_Johns"  # UTC-03:30, or -02:30 in summer


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The database the test runs on; a test pins one with `@pytest.mark.parametrize("backend", ...)`."""
    name: str = request.param
    return name


@pytest.fixture
def database_url(backend: str, home: Path) -> Iterator[str]:
    """An empty database on `backend`: the SQLite file in `home`, or a fresh PostgreSQL database."""
    if backend == "sqlite":
        yield default_database_url(home)
    else:
        yield from _postgres_database()


@pytest.fixture
def store(home: Path, database_url: str) -> Iterator[Store]:
    opened = Store.open(home, database_url)
    try:
        yield opened
    finally:
        opened.close()


def _postgres_database() -> Iterator[str]:
    admin_url = os.environ.get(POSTGRES_URL_ENV)
    if not admin_url:
        reason = f"PostgreSQL store tests need ${POSTGRES_URL_ENV} (`.ci/postgres.sh` sets it)"
        if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
            pytest.fail(f"{reason}, and ${REQUIRE_POSTGRES_ENV}=1 says they must run")
        pytest.skip(reason)
    name = f"bastion_test_{secrets.token_hex(8)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            # The name is ours (hex), so quoting it into the statement is safe.
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
            connection.exec_driver_sql(
                f"ALTER DATABASE \"{name}\" SET timezone TO '{TEST_DATABASE_TIME_ZONE}'"
            )
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                # FORCE: a test that failed midway may still hold connections to it.
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


class Clock:
    """A clock the test moves by hand, so claims, sessions and assignments expire without sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: float | timedelta) -> None:
        """Move on by `by` (seconds, or a timedelta)."""
        self.now += by if isinstance(by, timedelta) else timedelta(seconds=by)
