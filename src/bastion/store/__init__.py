"""Bastion's persistent store: API keys and the decision log, in SQLite by default or PostgreSQL by URL.

`Store.open()` is the one call a service needs: it creates the home directory, opens the
database and migrates it to the packaged schema. See `bastion.store.store` for the details.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.store.errors import StoreError
from bastion.store.keys import SCOPES_BY_ROLE, ApiKey, Role
from bastion.store.paths import bastion_home, default_database_url
from bastion.store.records import DecisionRecord

if TYPE_CHECKING:
    from bastion.store.store import Store

__all__ = [
    "SCOPES_BY_ROLE",
    "ApiKey",
    "DecisionRecord",
    "Role",
    "Store",
    "StoreError",
    "bastion_home",
    "default_database_url",
]


def __getattr__(name: str) -> Any:
    """`Store` is loaded on first use: SQLAlchemy is slow to import, and the command line reads
    roles and paths from this package without opening a database."""
    if name == "Store":
        from bastion.store.store import Store

        return Store
    raise AttributeError(f"module 'bastion.store' has no attribute {name!r}")
