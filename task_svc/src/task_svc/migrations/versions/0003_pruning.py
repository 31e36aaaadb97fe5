"""Indexes what pruning filters on: when each client request id was first used; publish and process times.

Client request ids make creates idempotent for as long as a client may retry;
they are kept for the retention period and then pruned, so the table no longer
grows without bound.

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
    op.create_index("create_requests_created_at", "create_requests", ["created_at"])
    create_messaging_indexes()


def downgrade() -> None:
    op.drop_index("processed_events_processed_at", table_name="processed_events")
    op.drop_index("outbox_published_at", table_name="outbox")
    op.drop_index("create_requests_created_at", table_name="create_requests")
