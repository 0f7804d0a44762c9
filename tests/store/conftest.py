"""Fixtures for the store tests: a migrated store on each backend, and a decision-record factory.

`store` (and `database_url` under it) runs every test that takes it twice: on a SQLite file in a
fresh home, and on PostgreSQL in a database of its own, created for the test and dropped after
it, so tests running side by side under xdist never see each other's rows. PostgreSQL comes
from $BASTION_TEST_POSTGRES_URL (`.ci/postgres.sh` starts one and sets it), a URL whose role may
create databases. Without it the PostgreSQL cases are skipped, unless $CI_REQUIRE_POSTGRES=1
(CI sets it), where a missing server is a failure rather than a silently thinner run.

Each test database runs in an off-UTC session time zone with a half-hour offset, so any place
where the store leaned on the server's zone being UTC shows up as a failure here.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, make_url

from bastion.store import DecisionRecord, Store, default_database_url

MakeRecord = Callable[..., DecisionRecord]

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


@pytest.fixture
def make_record() -> MakeRecord:
    """Build a DecisionRecord with awkward-to-round-trip values; keyword arguments override fields."""

    def build(index: int = 0, **overrides: Any) -> DecisionRecord:
        fields: dict[str, Any] = {
            "request_id": "req-1",
            "item_index": index,
            "item_id": f"item-{index}",
            "content_hash": f"sha256:{index:064x}",
            "policy_version": "openai@1.2.0",
            "model_version": "default-2025-01",
            "flagged": index % 2 == 0,
            "action": "block" if index % 2 == 0 else None,
            "scores": {"hate": 1 / 3, "violence": 0.1 + 0.2, "self-harm": 5e-324, "sexual": 1.0},
            "categories": ["hate", "violence"] if index % 2 == 0 else [],
            "error": None,
            "key_id": "key_0123456789ab",
            "project": "default",
            "route": "/v1/moderate",
            "latency_ms": 12.345678901234567,
            "content": "héllo ✓ wörld",
        }
        fields.update(overrides)
        return DecisionRecord(**fields)

    return build
