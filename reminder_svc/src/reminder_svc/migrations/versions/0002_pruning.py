"""When each reminder last changed, and the indexes pruning and snooze counting filter on.

Fired and cancelled reminders, and the plans of closed tasks, are pruned once
their last change is old enough; reminders had no time of their last change, so
it is added (existing rows count from this migration).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "reminders",
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    # Pruning: one state's rows older than a cut-off, oldest first.
    op.create_index("reminders_state_update", "reminders", ["state", "update_time"])
    op.create_index("task_plans_status_update", "task_plans", ["status", "update_time"])
    # Counting a reminder's snoozes; most reminders are no snooze.
    op.create_index(
        "reminders_snoozed_from", "reminders", ["snoozed_from"], postgresql_where=sa.text("snoozed_from IS NOT NULL")
    )


def downgrade() -> None:
    op.drop_index("reminders_snoozed_from", "reminders")
    op.drop_index("task_plans_status_update", "task_plans")
    op.drop_index("reminders_state_update", "reminders")
    op.drop_column("reminders", "update_time")
