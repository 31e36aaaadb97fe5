"""Series state and requested occurrences, plus the outbox and inbox.

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
    op.create_table(
        "series",
        sa.Column("series_id", pg.UUID(as_uuid=False), primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        # Why the series stopped: "deleted", "count", "until"; NULL while it runs.
        sa.Column("end_reason", sa.Text),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
    )
    # One row per occurrence this engine asked for: asking twice is impossible,
    # so reopening and completing again never makes a second occurrence.
    op.create_table(
        "requested_occurrences",
        sa.Column("series_id", pg.UUID(as_uuid=False), primary_key=True),
        sa.Column("occurrence_index", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request", sa.LargeBinary, nullable=False),
        sa.Column("publish_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    create_messaging_tables()


def downgrade() -> None:
    for table in ("processed_events", "outbox", "requested_occurrences", "series"):
        op.drop_table(table)
