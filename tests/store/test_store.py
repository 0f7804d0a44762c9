"""The store's schema and lifecycle: packaged migrations, idempotent and concurrent migrate, SQLite settings.

Tests taking `store` or `database_url` run on SQLite and on PostgreSQL (see conftest.py). The
ones about SQLite's pragmas pin `backend` to "sqlite"; the ones about its files open the default
SQLite database in `home` directly.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from bastion.errors import BastionError
from bastion.store import Role, Store, StoreError, bastion_home, default_database_url
from bastion.store.keys import SCOPES_BY_ROLE
from bastion.store.models import Base
from bastion.store.store import MIGRATIONS_DIR
from subprocesses import START_LINE, release_together

TABLES = {
    "alembic_version",
    "api_keys",
    "decisions",
    "review_items",
    "review_decisions",
    "people",
    "web_sessions",
    "annotation_projects",
    "project_members",
    "annotation_tasks",
    "annotation_assignments",
    "annotations",
    "rate_limits",
    "login_failures",
    "audit_log",
}
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"])


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(store: Store) -> str | None:
    with store.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def test_home_defaults_to_bastion_data_and_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BASTION_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert bastion_home() == tmp_path / "bastion-data"
    assert not (tmp_path / "bastion-data").exists()  # not created by asking
    monkeypatch.setenv("BASTION_HOME", str(tmp_path / "elsewhere"))
    assert bastion_home() == tmp_path / "elsewhere"
    assert default_database_url(tmp_path) == f"sqlite:///{tmp_path}/bastion.db"


def test_the_constructor_does_not_migrate(home: Path, database_url: str) -> None:
    home.mkdir()  # Store.open would make it; the bare constructor does not
    store = Store(database_url)
    try:
        assert current_revision(store) is None
        assert "decisions" not in inspect(store.engine).get_table_names()
    finally:
        store.close()


def test_open_creates_a_private_home_and_database_at_head(home: Path, database_url: str) -> None:
    with Store.open(home, database_url) as store:
        assert set(inspect(store.engine).get_table_names()) == TABLES
        assert current_revision(store) == head_revision() == "0005"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_the_default_sqlite_file_is_private(home: Path) -> None:
    Store.open(home).close()
    assert stat.S_IMODE((home / "bastion.db").stat().st_mode) == 0o600


def test_migrate_twice_is_a_no_op_and_keeps_data(
    store: Store, home: Path, database_url: str
) -> None:
    key, _ = store.create_key("survivor")
    store.migrate()
    store.migrate()
    assert set(inspect(store.engine).get_table_names()) == TABLES
    assert current_revision(store) == head_revision()
    assert [k.id for k in store.list_keys()] == [key.id]
    reopened = Store.open(home, database_url)
    try:
        assert reopened.count_keys() == 1
    finally:
        reopened.close()


def test_the_migrations_build_exactly_what_the_models_describe(store: Store) -> None:
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_the_migrations_downgrade_to_nothing_and_back(store: Store) -> None:
    config = alembic_config()
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert set(inspect(store.engine).get_table_names()) == {"alembic_version"}
    store.migrate()
    assert current_revision(store) == head_revision()
    assert store.count_decisions() == 0


def test_keys_with_their_roles_old_defaults_get_the_review_and_bank_scopes(store: Store) -> None:
    config = alembic_config()
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0002")
    # Keys as 0002 made them: an admin and a moderator with that day's defaults, and an admin
    # whose scopes someone chose by hand.
    admin, _ = store.create_key(
        "admin", Role.admin, scopes=["moderate", "decisions:read", "keys:admin"]
    )
    moderator, _ = store.create_key("mod", Role.moderator, scopes=["moderate"])
    chosen, _ = store.create_key("chosen", Role.admin, scopes=["decisions:read"])
    store.migrate()
    scopes = {k.id: k.scopes for k in store.list_keys()}
    assert scopes[admin.id] == SCOPES_BY_ROLE[Role.admin] and "banks:write" in scopes[admin.id]
    assert scopes[moderator.id] == frozenset({"moderate", "banks:read"})
    assert scopes[chosen.id] == frozenset({"decisions:read"})


@SQLITE_ONLY
def test_sqlite_runs_in_wal_with_full_sync_and_foreign_keys(store: Store) -> None:
    with store.engine.connect() as connection:
        pragma = connection.exec_driver_sql
        assert pragma("PRAGMA journal_mode").scalar() == "wal"
        assert pragma("PRAGMA synchronous").scalar() == 2  # FULL
        assert pragma("PRAGMA foreign_keys").scalar() == 1
        busy_timeout_ms = pragma("PRAGMA busy_timeout").scalar()
        assert busy_timeout_ms is not None and busy_timeout_ms >= 1000


def test_ddl_is_transactional(store: Store) -> None:
    """DDL rolls back with its transaction, which is what makes a failed migration roll back.

    PostgreSQL does this natively; on SQLite it holds because the store emits BEGIN itself
    (pysqlite would not begin a transaction before DDL).
    """
    with pytest.raises(RuntimeError), store.engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE scratch (x INTEGER)")
        raise RuntimeError("roll it back")
    assert "scratch" not in inspect(store.engine).get_table_names()


STARTER = (
    START_LINE
    + """
import os, sys
from pathlib import Path
from bastion.store import Store
wait_at_start_line(sys.argv[2])
store = Store.open(Path(sys.argv[1]), os.environ["STARTER_DATABASE_URL"])
store.create_key("started")
store.close()
"""
)


def test_processes_starting_at_once_on_a_fresh_database_all_succeed(
    home: Path, database_url: str, tmp_path: Path
) -> None:
    """The migration lock at work: SQLite's BEGIN IMMEDIATE, PostgreSQL's advisory lock."""
    start_line = tmp_path / "start-line"
    start_line.mkdir()
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER, str(home), str(start_line)],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "STARTER_DATABASE_URL": database_url},  # not argv: a password
        )
        for _ in range(4)
    ]
    release_together(start_line, starters)  # once every interpreter has imported the store
    for starter in starters:
        _, err = starter.communicate(timeout=60)
        assert starter.returncode == 0, err
    with Store.open(home, database_url) as store:
        assert current_revision(store) == head_revision()
        assert store.count_keys() == 4


def test_bad_urls_are_store_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot use database URL"):
        Store("not a url")
    with pytest.raises(StoreError) as caught:
        Store("nosuchdialect://user:hunter2@host/db")
    assert "hunter2" not in str(caught.value)
    assert issubclass(StoreError, BastionError)


def test_an_unreachable_postgres_is_a_store_error_without_the_password() -> None:
    """Needs only the driver (psycopg), not a server: nothing listens on port 1."""
    url = "postgresql+psycopg://bastion:hunter2@127.0.0.1:1/bastion?connect_timeout=5"
    store = Store(url)
    try:
        with pytest.raises(StoreError, match="could not migrate the database at") as caught:
            store.migrate()
    finally:
        store.close()
    assert "127.0.0.1:1" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_an_unwritable_database_is_a_store_error(tmp_path: Path) -> None:
    missing_dir = tmp_path / "no" / "such" / "dir" / "x.db"
    with pytest.raises(StoreError, match="could not migrate"):
        Store(f"sqlite:///{missing_dir}").migrate()
    assert not os.path.exists(missing_dir.parent)


def test_the_database_url_can_come_from_the_environment(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bastion serve` and `bastion keys` open the store with no URL: $BASTION_DATABASE_URL
    points them at PostgreSQL (or any database) instead of the SQLite file in the home."""
    monkeypatch.setenv("BASTION_DATABASE_URL", database_url)
    store = Store.open(home / "elsewhere")
    try:
        _, secret = store.create_key("env", Role.admin)
    finally:
        store.close()
    again = Store.open(home, database_url)
    try:
        assert again.verify_key(secret) is not None
    finally:
        again.close()
    assert not (home / "elsewhere" / "bastion.db").exists()
