"""Indexes for pruning: requested occurrences by publish time, series by end time.

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
    # Partial: pruning looks only at rows that were published or ended.
    op.create_index(
        "requested_occurrences_published_at",
        "requested_occurrences",
        ["published_at"],
        postgresql_where=sa.text("published_at IS NOT NULL"),
    )
    op.create_index("series_ended_at", "series", ["ended_at"], postgresql_where=sa.text("ended_at IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("series_ended_at", table_name="series")
    op.drop_index("requested_occurrences_published_at", table_name="requested_occurrences")
