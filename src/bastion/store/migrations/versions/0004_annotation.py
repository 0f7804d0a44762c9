"""Annotation workflow: people and their web sessions, projects, tasks, assignments,
annotations and an append-only audit log.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

Written by hand and frozen, like the earlier revisions. The audit log is append-only in the
database itself, not only by convention: triggers refuse UPDATE and DELETE on it, on SQLite and
on PostgreSQL, so a bug or a hand-typed statement cannot rewrite history.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _row_id() -> sa.types.TypeEngine[int]:
    # SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit serial.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _when(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(), nullable=False),
        _when("created_at"),
        _when("disabled_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_people"),
        sa.UniqueConstraint("name", name="uq_people_name"),
    )
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("person_id", sa.String(32), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        _when("created_at"),
        _when("expires_at"),
        sa.PrimaryKeyConstraint("id", name="pk_web_sessions"),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name="fk_web_sessions_person_id_people"
        ),
    )
    op.create_index("ix_web_sessions_person_id", "web_sessions", ["person_id"])
    op.create_table(
        "annotation_projects",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("policy_text", sa.String(), nullable=False),
        sa.Column("policy_version", sa.String(), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("overlap", sa.Integer(), nullable=False),
        sa.Column("borderline_overlap", sa.Integer(), nullable=False),
        sa.Column("blind_share", sa.Float(), nullable=False),
        _when("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_annotation_projects"),
    )
    op.create_table(
        "project_members",
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("person_id", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "person_id", name="pk_project_members"),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["annotation_projects.id"],
            name="fk_project_members_project_id_annotation_projects",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name="fk_project_members_person_id_people"
        ),
    )
    op.create_table(
        "annotation_tasks",
        sa.Column("id", _row_id(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("item_id", sa.String(), nullable=False),
        sa.Column("text", sa.String(), nullable=False),
        sa.Column("media", sa.JSON(), nullable=False),
        sa.Column("item_metadata", sa.JSON(), nullable=False),
        sa.Column("borderline", sa.Boolean(), nullable=False),
        sa.Column("blind", sa.Boolean(), nullable=False),
        sa.Column("required", sa.Integer(), nullable=False),
        sa.Column("suggestions", sa.JSON(), nullable=False),
        sa.Column("gold", sa.JSON(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        _when("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_annotation_tasks"),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["annotation_projects.id"],
            name="fk_annotation_tasks_project_id_annotation_projects",
        ),
        sa.UniqueConstraint("project_id", "item_id", name="uq_annotation_tasks_project_id"),
    )
    op.create_index(
        "ix_annotation_tasks_project_state", "annotation_tasks", ["project_id", "state"]
    )
    op.create_table(
        "annotation_assignments",
        sa.Column("id", _row_id(), autoincrement=True, nullable=False),
        sa.Column("task_id", _row_id(), nullable=False),
        sa.Column("person_id", sa.String(32), nullable=False),
        _when("assigned_at"),
        _when("submitted_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_annotation_assignments"),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["annotation_tasks.id"],
            name="fk_annotation_assignments_task_id_annotation_tasks",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name="fk_annotation_assignments_person_id_people"
        ),
        sa.UniqueConstraint("task_id", "person_id", name="uq_annotation_assignments_task_id"),
    )
    op.create_index("ix_annotation_assignments_person_id", "annotation_assignments", ["person_id"])
    op.create_table(
        "annotations",
        sa.Column("id", _row_id(), autoincrement=True, nullable=False),
        sa.Column("task_id", _row_id(), nullable=False),
        sa.Column("person_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("category", sa.String(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        _when("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_annotations"),
        sa.ForeignKeyConstraint(
            ["task_id"], ["annotation_tasks.id"], name="fk_annotations_task_id_annotation_tasks"
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name="fk_annotations_person_id_people"
        ),
    )
    op.create_index("ix_annotations_task_id", "annotations", ["task_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", _row_id(), autoincrement=True, nullable=False),
        _when("at"),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=True),
        sa.Column("task_id", _row_id(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_project_id", "audit_log", ["project_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION audit_log_append_only()")
    else:
        op.execute("DROP TRIGGER audit_log_no_update")
        op.execute("DROP TRIGGER audit_log_no_delete")
    op.drop_index("ix_audit_log_project_id", table_name="audit_log")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_annotations_task_id", table_name="annotations")
    op.drop_table("annotations")
    op.drop_index("ix_annotation_assignments_person_id", table_name="annotation_assignments")
    op.drop_table("annotation_assignments")
    op.drop_index("ix_annotation_tasks_project_state", table_name="annotation_tasks")
    op.drop_table("annotation_tasks")
    op.drop_table("project_members")
    op.drop_table("annotation_projects")
    op.drop_index("ix_web_sessions_person_id", table_name="web_sessions")
    op.drop_table("web_sessions")
    op.drop_table("people")
