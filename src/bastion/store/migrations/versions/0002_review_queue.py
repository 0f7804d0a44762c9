"""Review queue: the review_items and review_decisions tables behind `bastion.triage.queue`.

Revision ID: 0002
Revises: 0001
Create Date: 2025-06-01

Written by hand and frozen, like 0001: types and constraint names are spelled out here rather
than imported from the ORM models, so later edits to the models cannot change this revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _row_id() -> sa.types.TypeEngine[int]:
    # SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit serial.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "review_items",
        sa.Column("id", _row_id(), autoincrement=True, nullable=False),
        sa.Column("queue", sa.String(), nullable=False),
        sa.Column("item_id", sa.String(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("priority", sa.Float(), nullable=False),
        sa.Column("expected_harm", sa.Float(), nullable=True),
        sa.Column("text", sa.String(), nullable=True),
        sa.Column("media", sa.JSON(), nullable=False),
        sa.Column("item_metadata", sa.JSON(), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("claimed_by", sa.String(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claim_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claim_count", sa.Integer(), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_review_items"),
        sa.UniqueConstraint("queue", "item_id", name="uq_review_items_queue_item_id"),
    )
    op.create_index(
        "ix_review_items_queue_state_priority", "review_items", ["queue", "state", "priority"]
    )

    op.create_table(
        "review_decisions",
        sa.Column("id", _row_id(), autoincrement=True, nullable=False),
        sa.Column("review_item_id", _row_id(), nullable=False),
        sa.Column("label", sa.String(32), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("note", sa.String(), nullable=False),
        sa.Column("reviewer", sa.String(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_review_decisions"),
        sa.ForeignKeyConstraint(
            ["review_item_id"],
            ["review_items.id"],
            name="fk_review_decisions_review_item_id_review_items",
        ),
        sa.UniqueConstraint("review_item_id", name="uq_review_decisions_review_item_id"),
    )
    op.create_index("ix_review_decisions_decided_at", "review_decisions", ["decided_at"])


def downgrade() -> None:
    op.drop_index("ix_review_decisions_decided_at", table_name="review_decisions")
    op.drop_table("review_decisions")
    op.drop_index("ix_review_items_queue_state_priority", table_name="review_items")
    op.drop_table("review_items")
