"""Scopes for review queues and banks: keys that still carry exactly their role's old default
scopes get the new defaults (admin: review, banks:read, banks:write; moderator: banks:read).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

A key whose scopes were chosen by hand at creation keeps them: someone decided what it may do.
A key with its role's defaults gets what that role now means, so an admin key made before
banks existed can manage banks. Written by hand and frozen: the scope sets are spelled out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = {
    "admin": {"moderate", "decisions:read", "keys:admin"},
    "moderator": {"moderate"},
}
_NEW = {
    "admin": {"moderate", "decisions:read", "keys:admin", "review", "banks:read", "banks:write"},
    "moderator": {"moderate", "banks:read"},
}


def _rescope(before: dict[str, set[str]], after: dict[str, set[str]]) -> None:
    connection = op.get_bind()
    # PostgreSQL will not take a text parameter into a json column without a cast; SQLite keeps
    # JSON as text, and a CAST there would apply numeric affinity.
    update = (
        "UPDATE api_keys SET scopes = CAST(:scopes AS JSON) WHERE id = :id"
        if connection.dialect.name == "postgresql"
        else "UPDATE api_keys SET scopes = :scopes WHERE id = :id"
    )
    rows = connection.execute(
        sa.text("SELECT id, role, scopes FROM api_keys WHERE role IN ('admin', 'moderator')")
    ).all()
    for key_id, role, raw in rows:
        scopes = raw if isinstance(raw, list) else json.loads(raw)
        if set(scopes) == before[role]:
            connection.execute(
                sa.text(update),
                {"scopes": json.dumps(sorted(after[role])), "id": key_id},
            )


def upgrade() -> None:
    _rescope(_OLD, _NEW)


def downgrade() -> None:
    _rescope(_NEW, _OLD)
