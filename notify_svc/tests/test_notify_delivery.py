"""Webhook and e-mail delivery jobs on a real host, with scripted senders handed in through the unit's constructor:
one attempt per firing, retries with backoff, giving up, quiet hours, duplicate and lost jobs, failing endpoints."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from notify_fixtures import DOWN, OK, Answer, Notify, ScriptedSender, eventually, running_notify, scripted_channels

from notify_svc.settings import NotifySettings
from notify_svc.storage import deliveries, endpoint_backoff
from notify_svc.unit import build_unit
from todo_contracts import topics
from todo_contracts.notify.v1 import events_pb2, notify_pb2
from todo_kit.config import Settings

WEBHOOK = notify_pb2.CHANNEL_WEBHOOK
EMAIL = notify_pb2.CHANNEL_EMAIL
PENDING = notify_pb2.DELIVERY_STATE_PENDING
SENT = notify_pb2.DELIVERY_STATE_SENT
FAILED = notify_pb2.DELIVERY_STATE_FAILED
SENT_EVENT = topics.event_type_name(events_pb2.NotificationSent)
FAILED_EVENT = topics.event_type_name(events_pb2.NotificationFailed)


@asynccontextmanager
async def delivering(
    kit_settings: Settings, webhook: ScriptedSender, email: ScriptedSender | None = None, **settings: object
) -> AsyncIterator[Notify]:
    notify_settings = NotifySettings(**{"retry_max_delay_seconds": 1, **settings})  # type: ignore[arg-type]
    unit = build_unit(settings=notify_settings, channels=scripted_channels(webhook, email))
    async with running_notify(kit_settings, unit) as notify:
        yield notify


def events_of(notify: Notify, type_name: str, channel: int) -> list[events_pb2.NotificationSent]:
    return [e.message for e in notify.recorder.events(type_name) if e.message.channel == channel]  # type: ignore[attr-defined]


async def test_a_webhook_is_posted_once_with_the_users_secret_a_stable_id_and_the_notification(
    kit_settings: Settings,
) -> None:
    webhook = ScriptedSender([OK])
    async with delivering(kit_settings, webhook) as notify:
        secret = await notify.enable_webhook(url="https://hooks.test/alice")
        reminder = await notify.due(task_title="Pay rent")
        delivery = await notify.delivery_in("alice", reminder.reminder_id, WEBHOOK, SENT)
        assert delivery.attempts == 1 and not delivery.HasField("next_attempt_time")
        [call] = webhook.calls
        [notification] = await notify.notifications()
        assert (call["url"], call["secret"], call["message_id"]) == (
            "https://hooks.test/alice", secret, f"{notification.notification_id}-webhook",
        )  # fmt: skip
        body = json.loads(call["body"])  # type: ignore[arg-type]
        assert body["type"] == "notification.created"
        assert body["data"]["notificationId"] == notification.notification_id
        assert body["data"]["title"] == "Reminder: Pay rent"
        [sent] = await eventually(lambda: events_of(notify, SENT_EVENT, WEBHOOK))
        assert sent.attempt == 1 and sent.notification.notification_id == notification.notification_id
        # The job delivered again (late, twice): nothing more is sent.
        handler = notify.host.wirings["notify_svc"].job_handlers["webhook/"]
        await handler(f"webhook/{notification.notification_id}", notification.notification_id.encode())
        assert len(webhook.calls) == 1


async def test_an_email_goes_to_the_users_address_with_the_title_as_subject(kit_settings: Settings) -> None:
    email = ScriptedSender([Answer(True, response_code=250)])
    async with delivering(kit_settings, ScriptedSender(), email) as notify:
        await notify.set_channels(
            "alice",
            notify_pb2.ChannelSettings(email=notify_pb2.EmailSettings(enabled=True, address="alice@example.test")),
            ["email"],
        )
        reminder = await notify.due(task_title="Call mom")
        await notify.delivery_in("alice", reminder.reminder_id, EMAIL, SENT)
        [notification] = await notify.notifications()
        [call] = email.calls
        assert (call["to"], call["subject"], call["message_id"]) == (
            "alice@example.test", "Reminder: Call mom", f"{notification.notification_id}-email",
        )  # fmt: skip
        assert notification.body in str(call["text"])


async def test_a_failing_webhook_is_retried_with_backoff_until_it_succeeds(kit_settings: Settings) -> None:
    webhook = ScriptedSender([DOWN, Answer(False, "HTTP 503", 503), DOWN, OK])
    async with delivering(kit_settings, webhook) as notify:
        await notify.enable_webhook()
        reminder = await notify.due()
        delivery = await notify.delivery_in("alice", reminder.reminder_id, WEBHOOK, SENT)
        assert delivery.attempts == 4 and len(webhook.calls) == 4
        assert [(a.attempt, a.succeeded, a.response_code) for a in delivery.recent_attempts] == [
            (4, True, 200), (3, False, 0), (2, False, 503), (1, False, 0),
        ]  # fmt: skip
        assert delivery.recent_attempts[1].error == "connection refused"
        times = [a.attempt_time.ToDatetime() for a in reversed(delivery.recent_attempts)]
        # Each retry waited for the endpoint's pause (at least half of 1 s, doubling up to the 1 s maximum).
        assert all(later - earlier >= timedelta(seconds=0.5) for earlier, later in itertools.pairwise(times))
        failed = await eventually(lambda: len(events_of(notify, FAILED_EVENT, WEBHOOK)) == 3)
        assert failed
        assert [(e.attempt, e.will_retry) for e in events_of(notify, FAILED_EVENT, WEBHOOK)] == [
            (1, True), (2, True), (3, True),
        ]  # fmt: skip
        [sent] = await eventually(lambda: events_of(notify, SENT_EVENT, WEBHOOK))
        assert sent.attempt == 4


async def test_a_permanent_error_fails_the_delivery_at_once(kit_settings: Settings) -> None:
    webhook = ScriptedSender([Answer(False, "HTTP 410: the endpoint is gone", 410, permanent=True)])
    async with delivering(kit_settings, webhook) as notify:
        await notify.enable_webhook()
        reminder = await notify.due()
        delivery = await notify.delivery_in("alice", reminder.reminder_id, WEBHOOK, FAILED)
        assert (delivery.attempts, delivery.last_error) == (1, "HTTP 410: the endpoint is gone")
        [failed] = await eventually(lambda: events_of(notify, FAILED_EVENT, WEBHOOK))
        assert (failed.attempt, failed.will_retry) == (1, False)
        assert len(webhook.calls) == 1


async def test_delivery_gives_up_when_the_retry_period_is_over(kit_settings: Settings) -> None:
    async with delivering(kit_settings, ScriptedSender([DOWN]), retry_hours=0) as notify:
        await notify.enable_webhook()
        reminder = await notify.due()
        delivery = await notify.delivery_in("alice", reminder.reminder_id, WEBHOOK, FAILED)
        assert delivery.attempts == 1 and delivery.last_error == "connection refused"
        [failed] = await eventually(lambda: events_of(notify, FAILED_EVENT, WEBHOOK))
        assert not failed.will_retry


def quiet_now() -> tuple[notify_pb2.QuietHours, datetime]:
    """Quiet hours from an hour ago to an hour from now (UTC), and when they end."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start, end = now - timedelta(hours=1), now + timedelta(hours=1)
    hours = notify_pb2.QuietHours(enabled=True, start=f"{start:%H:%M}", end=f"{end:%H:%M}", time_zone="UTC")
    return hours, end


async def test_quiet_hours_delay_a_push_to_their_end_but_not_the_in_app_notification(kit_settings: Settings) -> None:
    webhook = ScriptedSender()
    async with delivering(kit_settings, webhook) as notify:
        await notify.enable_webhook()
        hours, end = quiet_now()
        await notify.set_channels("alice", notify_pb2.ChannelSettings(quiet_hours=hours), ["quiet_hours"])
        reminder = await notify.due()
        [notification] = await notify.notifications()
        states = {d.channel: d for d in notification.deliveries}
        assert states[notify_pb2.CHANNEL_IN_APP].state == SENT
        assert states[WEBHOOK].state == PENDING
        assert states[WEBHOOK].next_attempt_time.ToDatetime(tzinfo=UTC) == end
        # A job that fires during quiet hours anyway (early, or twice) waits for their end.
        handler = notify.host.wirings["notify_svc"].job_handlers["webhook/"]
        await handler(f"webhook/{notification.notification_id}", notification.notification_id.encode())
        assert webhook.calls == []
        assert (await notify.delivery("alice", reminder.reminder_id, WEBHOOK)).state == PENDING  # type: ignore[union-attr]
        assert f"webhook/{notification.notification_id}" in await notify.host.runtime.pending_jobs("notify_svc")  # type: ignore[union-attr]


async def test_a_channel_turned_off_before_delivery_fails_it_without_an_attempt(kit_settings: Settings) -> None:
    webhook = ScriptedSender()
    async with delivering(kit_settings, webhook) as notify:
        await notify.enable_webhook()
        hours, _ = quiet_now()
        await notify.set_channels("alice", notify_pb2.ChannelSettings(quiet_hours=hours), ["quiet_hours"])
        reminder = await notify.due()
        [notification] = await notify.notifications()
        await notify.set_channels("alice", notify_pb2.ChannelSettings(), ["webhook.enabled"])
        handler = notify.host.wirings["notify_svc"].job_handlers["webhook/"]
        for _ in range(2):  # twice: the second finds it failed already
            await handler(f"webhook/{notification.notification_id}", notification.notification_id.encode())
        delivery = await notify.delivery("alice", reminder.reminder_id, WEBHOOK)
        assert delivery is not None
        assert (delivery.state, delivery.attempts, delivery.last_error) == (
            FAILED,
            0,
            "webhook delivery was turned off",
        )
        assert webhook.calls == []
        [failed] = await eventually(lambda: events_of(notify, FAILED_EVENT, WEBHOOK))
        assert not failed.will_retry
        assert len(events_of(notify, FAILED_EVENT, WEBHOOK)) == 1


async def test_a_job_lost_between_commit_and_scheduling_is_scheduled_again(kit_settings: Settings) -> None:
    webhook = ScriptedSender()
    async with delivering(kit_settings, webhook) as notify:
        await notify.enable_webhook()
        hours, _ = quiet_now()
        await notify.set_channels("alice", notify_pb2.ChannelSettings(quiet_hours=hours), ["quiet_hours"])
        reminder = await notify.due()
        [notification] = await notify.notifications()
        name = f"webhook/{notification.notification_id}"
        runtime = notify.host.runtime
        assert runtime is not None
        db = notify.host.databases["todo_notify"]

        async def scheduled() -> bool:
            async with db.transaction() as conn:
                waiting = await conn.scalar(sa.select(deliveries.c.needs_job).where(deliveries.c.channel == WEBHOOK))
            return waiting is False and name in await runtime.pending_jobs("notify_svc")

        await eventually(scheduled)  # the creator scheduled it after its commit
        # As after a crash right after the commit of a delivery due now: no job, and none recorded.
        await runtime.for_unit("notify_svc").delete_job(name)
        async with db.transaction() as conn:
            await conn.execute(
                sa.update(deliveries)
                .where(deliveries.c.notification_id == notification.notification_id)
                .values(
                    needs_job=True,
                    update_time=datetime.now(UTC) - timedelta(minutes=5),
                    next_attempt_time=datetime.now(UTC),
                )
            )
        await notify.set_channels("alice", notify_pb2.ChannelSettings(), ["quiet_hours.enabled"])
        assert name not in await runtime.pending_jobs("notify_svc")
        jobs = notify.host.wirings["notify_svc"].job_handlers["webhook/"].__self__  # type: ignore[attr-defined]
        assert await jobs.sweep() == 1
        await notify.delivery_in("alice", reminder.reminder_id, WEBHOOK, SENT)
        assert len(webhook.calls) == 1
        assert await jobs.sweep() == 0


async def test_a_failing_endpoint_is_tried_by_one_delivery_at_a_time_and_the_rest_follow_when_it_works(
    kit_settings: Settings,
) -> None:
    webhook = ScriptedSender([DOWN])
    async with delivering(kit_settings, webhook, retry_max_delay_seconds=2) as notify:
        await notify.enable_webhook()
        first = await notify.due()
        await notify.delivery_in("alice", first.reminder_id, WEBHOOK, PENDING)
        await eventually(lambda: len(webhook.calls) >= 1)
        later = [await notify.due(task_title=f"later {n}") for n in range(8)]
        await notify.notifications(count=9)
        await eventually(lambda: len(webhook.calls) >= 4, timeout=30)
        db = notify.host.databases["todo_notify"]
        async with db.transaction() as conn:
            # Locked: no attempt ends while the counts are compared.
            failures = await conn.scalar(sa.select(endpoint_backoff.c.failures).with_for_update())
            attempts = await conn.scalar(
                sa.select(sa.func.sum(deliveries.c.attempts)).where(deliveries.c.channel == WEBHOOK)
            )
            calls = len(webhook.calls)
        # Every attempt was a probe whose failure doubled the pause: none was made beside it. One probe may be
        # in flight (sent, its failure not yet recorded behind the lock), never two.
        assert attempts == failures
        assert calls - failures in (0, 1)
        webhook.answers = [OK]
        for reminder in [first, *later]:
            await notify.delivery_in("alice", reminder.reminder_id, WEBHOOK, SENT)
        async with db.transaction() as conn:
            assert await conn.scalar(sa.select(sa.func.count()).select_from(endpoint_backoff)) == 0
            total = await conn.scalar(
                sa.select(sa.func.sum(deliveries.c.attempts)).where(deliveries.c.channel == WEBHOOK)
            )
        # Each call is one recorded attempt; after the endpoint came back, one success per notification.
        assert total == len(webhook.calls)
        assert total - 9 in (failures, failures + 1)


async def test_one_users_failing_endpoint_does_not_hold_up_another_users(kit_settings: Settings) -> None:
    webhook = ScriptedSender([OK], by_target={"https://hooks.test/bob": DOWN})
    async with delivering(kit_settings, webhook, retry_max_delay_seconds=600) as notify:
        await notify.enable_webhook("bob", url="https://hooks.test/bob")
        await notify.enable_webhook("alice", url="https://hooks.test/alice")
        bobs = await notify.due("bob")
        await eventually(lambda: [c for c in webhook.calls if c["url"] == "https://hooks.test/bob"])
        alices = await notify.due("alice")
        delivery = await notify.delivery_in("alice", alices.reminder_id, WEBHOOK, SENT)
        assert delivery.attempts == 1
        assert (await notify.delivery("bob", bobs.reminder_id, WEBHOOK)).state == PENDING  # type: ignore[union-attr]
