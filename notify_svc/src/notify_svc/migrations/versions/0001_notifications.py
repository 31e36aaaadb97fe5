"""Notifications, their deliveries and attempts, channel settings, endpoint backoff, plus the outbox and inbox.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
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

PENDING = 1  # notify.v1.DeliveryState.DELIVERY_STATE_PENDING


def upgrade() -> None:
    # A user's choice of channels; the webhook secret is kept as given (it is the HMAC key).
    op.create_table(
        "channel_settings",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("webhook_enabled", sa.Boolean, nullable=False),
        sa.Column("webhook_url", sa.Text, nullable=False),
        sa.Column("webhook_secret", sa.Text, nullable=False),
        sa.Column("email_enabled", sa.Boolean, nullable=False),
        sa.Column("email_address", sa.Text, nullable=False),
        sa.Column("quiet_enabled", sa.Boolean, nullable=False),
        sa.Column("quiet_start", sa.Text, nullable=False),
        sa.Column("quiet_end", sa.Text, nullable=False),
        sa.Column("quiet_zone", sa.Text, nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )
    # Each user's last notification number: taken under the row's lock, so numbers commit in order.
    op.create_table(
        "user_sequences",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "notifications",
        sa.Column("notification_id", pg.UUID(as_uuid=False), primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("task_id", sa.Text, nullable=False),
        sa.Column("reminder_id", sa.Text),
        sa.Column("late", sa.Boolean, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read_time", sa.DateTime(timezone=True)),
    )
    # Listing newest first, streams reading "seq > n", resume ids: all by (user, seq).
    op.create_index("notifications_user_seq", "notifications", ["user_id", "seq"], unique=True)
    op.create_index(
        "notifications_user_unread", "notifications", ["user_id", "seq"], postgresql_where=sa.text("read_time IS NULL")
    )
    # One notification per reminder firing.
    op.create_index(
        "notifications_user_reminder",
        "notifications",
        ["user_id", "reminder_id"],
        unique=True,
        postgresql_where=sa.text("reminder_id IS NOT NULL"),
    )
    op.create_index("notifications_create_time", "notifications", ["create_time"])
    op.create_table(
        "deliveries",
        sa.Column(
            "notification_id",
            pg.UUID(as_uuid=False),
            sa.ForeignKey("notifications.notification_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("channel", sa.SmallInteger, primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("state", sa.SmallInteger, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_time", sa.DateTime(timezone=True)),
        sa.Column("retry_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempt_lease_until", sa.DateTime(timezone=True)),
        sa.Column("needs_job", sa.Boolean, nullable=False),
    )
    # A user's pending deliveries on a channel, woken when the endpoint works again.
    op.create_index(
        "deliveries_pending",
        "deliveries",
        ["user_id", "channel", "next_attempt_time"],
        postgresql_where=sa.text(f"state = {PENDING}"),
    )
    # Deliveries whose job may not exist (the sweep).
    op.create_index("deliveries_needs_job", "deliveries", ["update_time"], postgresql_where=sa.text("needs_job"))
    op.create_table(
        "delivery_attempts",
        sa.Column("notification_id", pg.UUID(as_uuid=False), primary_key=True),
        sa.Column("channel", sa.SmallInteger, primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("attempt_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("succeeded", sa.Boolean, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("response_code", sa.Integer, nullable=False),
        sa.ForeignKeyConstraint(
            ["notification_id", "channel"],
            ["deliveries.notification_id", "deliveries.channel"],
            ondelete="CASCADE",
        ),
    )
    # A user's endpoint (webhook URL, e-mail address) that failed: deliveries wait for its pause to end.
    op.create_table(
        "endpoint_backoff",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("channel", sa.SmallInteger, primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("probing_until", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text, nullable=False),
    )
    op.create_index("endpoint_backoff_blocked_until", "endpoint_backoff", ["blocked_until"])
    create_messaging_tables()
    create_messaging_indexes()


def downgrade() -> None:
    for table in (
        "processed_events",
        "outbox",
        "endpoint_backoff",
        "delivery_attempts",
        "deliveries",
        "notifications",
        "user_sequences",
        "channel_settings",
    ):
        op.drop_table(table)
