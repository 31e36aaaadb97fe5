"""Conversations with their memory, their messages, answered request ids, plus the outbox and inbox.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

from todo_kit.messaging import create_messaging_indexes, create_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per conversation: its owner, how many messages it has, and what the next message may refer to
    # (the question the assistant is waiting on, the tasks last listed or acted on).
    op.create_table(
        "conversations",
        sa.Column("conversation_id", pg.UUID(as_uuid=False), primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message_count", sa.BigInteger, nullable=False),
        sa.Column("pending", pg.JSONB),
        sa.Column("last_task_ids", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
    )
    op.create_index("conversations_user", "conversations", ["user_id", "update_time"])
    op.create_table(
        "messages",
        sa.Column("conversation_id", pg.UUID(as_uuid=False), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("message_id", pg.UUID(as_uuid=False), nullable=False, unique=True),
        sa.Column("role", sa.SmallInteger, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("actions", sa.LargeBinary, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )
    # The response each (user, client_request_id) got, so a retry gets it again without acting twice.
    op.create_table(
        "answered_requests",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("client_request_id", sa.Text, primary_key=True),
        sa.Column("response", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("answered_requests_created_at", "answered_requests", ["created_at"])
    create_messaging_tables()
    create_messaging_indexes()


def downgrade() -> None:
    for table in ("processed_events", "outbox", "answered_requests", "messages", "conversations"):
        op.drop_table(table)
