"""Pruning: old read notifications go with their deliveries and attempts; unread ones stay ten times as long;
nothing with a delivery still pending goes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from notify_fixtures import Notify

from notify_svc.storage import deliveries, delivery_attempts, endpoint_backoff, notifications
from todo_contracts.notify.v1 import notify_pb2


async def test_pruning_keeps_unread_longer_and_pending_deliveries_always(notify: Notify) -> None:
    await notify.enable_webhook()
    # Quiet all day long, so the webhook deliveries stay pending.
    hours = notify_pb2.QuietHours(enabled=True, start="00:00", end="23:59", time_zone="UTC")
    await notify.set_channels("alice", notify_pb2.ChannelSettings(quiet_hours=hours), ["quiet_hours"])
    pending = await notify.due(task_title="pending")
    await notify.notifications()
    await notify.set_channels("alice", notify_pb2.ChannelSettings(), ["webhook.enabled"])
    titles = ["read old", "unread old", "unread ancient", "read new"]
    for title in titles:
        await notify.due(task_title=title)
    found = {n.title.removeprefix("Reminder: "): n for n in await notify.notifications(count=5)}
    read = [found[t].notification_id for t in ("read old", "read new", "pending")]
    await notify.stub.MarkNotificationsRead(
        notify_pb2.MarkNotificationsReadRequest(notification_ids=read), metadata=notify.alice
    )
    now = datetime.now(UTC)
    ages = {"read old": 8, "unread old": 8, "unread ancient": 71, "pending": 400}
    db = notify.host.databases["todo_notify"]
    async with db.transaction() as conn:
        for title, days in ages.items():
            await conn.execute(
                sa.update(notifications)
                .where(notifications.c.notification_id == found[title].notification_id)
                .values(create_time=now - timedelta(days=days))
            )
        await conn.execute(
            sa.insert(endpoint_backoff).values(
                user_id="alice", channel=notify_pb2.CHANNEL_WEBHOOK, failures=3,
                blocked_until=now - timedelta(days=8), last_error="old",
            )
        )  # fmt: skip
    counts = await notify.host.prune()
    assert counts["notify_svc.notifications"] == 2
    assert counts["notify_svc.endpoint_backoff"] == 1
    left = {n.title.removeprefix("Reminder: ") for n in await notify.notifications(count=3)}
    assert left == {"pending", "unread old", "read new"}
    gone = [found[t].notification_id for t in ("read old", "unread ancient")]
    async with db.transaction() as conn:
        for table in (deliveries, delivery_attempts):
            assert (
                await conn.scalar(
                    sa.select(sa.func.count()).select_from(table).where(table.c.notification_id.in_(gone))
                )
                == 0
            )
    kept = await notify.delivery("alice", pending.reminder_id, notify_pb2.CHANNEL_WEBHOOK)
    assert kept is not None and kept.state == notify_pb2.DELIVERY_STATE_PENDING
