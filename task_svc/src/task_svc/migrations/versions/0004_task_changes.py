"""The live feed's history: every committed change of a user's tasks, numbered per user.

change_counters holds each user's last change number; the transaction that
records a change takes the next number and holds the user's row until it
commits, so a user's changes become visible in the order of their numbers and
the numbers have no gaps. A reader of "seq > n" therefore never passes over a
change that commits late, and a missing number means it was pruned. The
counters are kept when the changes are pruned (one row per user), so an old
change id can be told apart from one that never existed.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "change_counters",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "task_changes",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("kind", sa.SmallInteger, nullable=False),
        sa.Column("task_id", pg.UUID(as_uuid=False), nullable=False),
        sa.Column("task", sa.LargeBinary, nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("task_changes_changed_at", "task_changes", ["changed_at"])


def downgrade() -> None:
    op.drop_index("task_changes_changed_at", table_name="task_changes")
    op.drop_table("task_changes")
    op.drop_table("change_counters")
