"""Task plans and reminders, plus the outbox and inbox.

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
    # What this service last learned of each task: enough to plan its
    # reminders and to ignore events that arrive late or twice.
    op.create_table(
        "task_plans",
        sa.Column("task_id", pg.UUID(as_uuid=False), primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("task_version", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Text, nullable=False),  # open, completed, deleted
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("plan_key", sa.Text, nullable=False),  # due time and rules, as planned
        sa.Column("plan_version", sa.Integer, nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "reminders",
        sa.Column("reminder_id", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("task_id", pg.UUID(as_uuid=False), nullable=False),
        sa.Column("rule_id", sa.Text, nullable=False),
        sa.Column("task_title", sa.Text, nullable=False),
        sa.Column("due_local", sa.DateTime(timezone=False)),
        sa.Column("due_zone", sa.Text),
        sa.Column("due_at", sa.DateTime(timezone=True)),
        sa.Column("fire_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.SmallInteger, nullable=False),
        sa.Column("plan_version", sa.Integer, nullable=False),
        sa.Column("fired_time", sa.DateTime(timezone=True)),
        sa.Column("lateness_ms", sa.BigInteger),
        sa.Column("late", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("snoozed_from", sa.Text),
        sa.Column("job_name", sa.Text, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("reminders_user_fire", "reminders", ["user_id", "fire_time", "reminder_id"])
    op.create_index("reminders_task", "reminders", ["task_id", "state"])
    create_messaging_tables()


def downgrade() -> None:
    for table in ("processed_events", "outbox", "reminders", "task_plans"):
        op.drop_table(table)
