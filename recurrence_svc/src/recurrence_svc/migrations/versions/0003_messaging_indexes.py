"""Indexes on the outbox's publish time and the inbox's process time, which pruning filters on.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

from todo_kit.messaging import create_messaging_indexes

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_messaging_indexes()


def downgrade() -> None:
    op.drop_index("processed_events_processed_at", table_name="processed_events")
    op.drop_index("outbox_published_at", table_name="outbox")
