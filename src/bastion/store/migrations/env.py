"""Alembic environment for the Bastion store: migrates on the connection `Store.migrate()` hands over.

`Store.migrate()` opens a transaction on the store's own engine (so the SQLite pragmas and the
lock that serialises concurrent starts apply) and passes the connection in
`config.attributes["connection"]`; the whole upgrade then runs inside that one transaction.
For development with the alembic command line, `sqlalchemy.url` may be set instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, make_url

from bastion.store.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("offline (--sql) mode needs sqlalchemy.url to know the dialect")
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=make_url(url).get_backend_name() == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError(
            "no connection in config.attributes['connection'] and no sqlalchemy.url: "
            "run migrations through bastion.store.Store.migrate()"
        )
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
