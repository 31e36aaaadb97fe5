"""Tasks, idempotent creates, series occurrences, and the outbox and inbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

from todo_kit.messaging import create_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # btree_gin lets one GIN index serve "this user's tasks matching these words".
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    # array_to_string is only STABLE; a generated column needs an IMMUTABLE
    # expression, and joining text[] with a space is immutable in fact.
    op.execute(
        "CREATE FUNCTION tags_text(tags text[]) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE "
        "RETURN array_to_string(tags, ' ')"
    )
    op.create_table(
        "tasks",
        sa.Column("task_id", pg.UUID(as_uuid=False), primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("status", sa.SmallInteger, nullable=False),
        sa.Column("priority", sa.SmallInteger, nullable=False),
        sa.Column("tags", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("due_local", sa.DateTime(timezone=False)),
        sa.Column("due_zone", sa.Text),
        sa.Column("due_at", sa.DateTime(timezone=True)),
        sa.Column("reminders", pg.JSONB, nullable=False, server_default="[]"),
        sa.Column("recurrence", pg.JSONB),
        sa.Column("series_id", pg.UUID(as_uuid=False)),
        sa.Column("occurrence_index", sa.Integer),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("complete_time", sa.DateTime(timezone=True)),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column(
            "search",
            pg.TSVECTOR,
            sa.Computed(
                "setweight(to_tsvector('english', title), 'A') || "
                "setweight(to_tsvector('simple', tags_text(tags)), 'A') || "
                "setweight(to_tsvector('english', description), 'B')",
                persisted=True,
            ),
            nullable=False,
        ),
    )
    op.create_index("tasks_user_due", "tasks", ["user_id", "due_at", "task_id"])
    op.create_index("tasks_user_created", "tasks", ["user_id", "create_time"])
    op.create_index("tasks_user_open_due", "tasks", ["user_id", "due_at"], postgresql_where=sa.text("status = 1"))
    op.create_index("tasks_user_search", "tasks", ["user_id", "search"], postgresql_using="gin")
    op.create_index("tasks_user_tags", "tasks", ["user_id", "tags"], postgresql_using="gin")
    op.create_index("tasks_series", "tasks", ["series_id", "occurrence_index"])
    op.create_table(
        "create_requests",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("client_request_id", sa.Text, primary_key=True),
        sa.Column("task_id", pg.UUID(as_uuid=False), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    # Every occurrence ever created, kept after its task is deleted, so a
    # repeated OccurrenceRequested never creates it a second time.
    op.create_table(
        "series_occurrences",
        sa.Column("series_id", pg.UUID(as_uuid=False), primary_key=True),
        sa.Column("occurrence_index", sa.Integer, primary_key=True),
        sa.Column("task_id", pg.UUID(as_uuid=False), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "ended_series",
        sa.Column("series_id", pg.UUID(as_uuid=False), primary_key=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    create_messaging_tables()


def downgrade() -> None:
    for table in ("processed_events", "outbox", "ended_series", "series_occurrences", "create_requests", "tasks"):
        op.drop_table(table)
    op.execute("DROP FUNCTION tags_text(text[])")
