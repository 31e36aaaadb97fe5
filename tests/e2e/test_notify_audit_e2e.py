"""Notifications and the activity log on the real embedded default process (what `make up` runs).

A reminder reaches its user on an open stream, in the list, by a signed webhook
to a local HTTP receiver and by e-mail to a local SMTP server, and no other user;
a receiver failing five times gets one success after five recorded failures;
kill -9 with 50 reminders due during the outage delivers each once per channel;
every event type of every topic is recorded once in the activity log, and an
entry altered behind the service's back is found by VerifyLog.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2
from host_process import HostProcess, utc_in
from notify_receivers import WebhookReceiver, smtp_server

from todo_contracts import topics
from todo_contracts.audit.v1 import audit_pb2, audit_pb2_grpc
from todo_contracts.notify.v1 import notify_pb2, notify_pb2_grpc
from todo_contracts.task.v1 import task_pb2, task_service_pb2_grpc
from todo_contracts.task.v1 import task_service_pb2 as ts
from todo_kit.testing import eventually, field_violations

Metadata = list[tuple[str, str]]


def allow_local_receivers(host: HostProcess, smtp_port: int) -> None:
    """The host may deliver to the tests' loopback receivers (refused by default), fast retries."""
    host.env.update(
        {
            "TODO_NOTIFY_WEBHOOK_ALLOW_HTTP_LOOPBACK": "true",
            "TODO_NOTIFY_WEBHOOK_ALLOW_PRIVATE": "true",
            "TODO_NOTIFY_SMTP_HOST": "127.0.0.1",
            "TODO_NOTIFY_SMTP_PORT": str(smtp_port),
            "TODO_NOTIFY_SMTP_SENDER": "todo@example.test",
            "TODO_NOTIFY_SMTP_STARTTLS": "false",
            "TODO_NOTIFY_RETRY_MAX_DELAY_SECONDS": "1",
        }
    )


async def push_to(
    channel: grpc.aio.Channel, md: Metadata, receiver: WebhookReceiver, address: str
) -> notify_pb2.UpdateChannelSettingsResponse:
    """Turns on webhook delivery to receiver (which learns the secret generated) and e-mail delivery to address."""
    stub = notify_pb2_grpc.NotificationServiceStub(channel)
    settings = notify_pb2.ChannelSettings(
        webhook=notify_pb2.WebhookSettings(enabled=True, url=receiver.url),
        email=notify_pb2.EmailSettings(enabled=True, address=address),
    )
    mask = field_mask_pb2.FieldMask(paths=["webhook.enabled", "webhook.url", "email"])
    reply: notify_pb2.UpdateChannelSettingsResponse = await stub.UpdateChannelSettings(
        notify_pb2.UpdateChannelSettingsRequest(settings=settings, update_mask=mask), metadata=md
    )
    assert reply.generated_signing_secret.startswith("whsec_")
    assert not reply.settings.webhook.signing_secret and reply.settings.webhook.signing_secret_set
    receiver.secret = reply.generated_signing_secret
    return reply


async def create_reminded_task(channel: grpc.aio.Channel, md: Metadata, title: str, fire_in: float) -> task_pb2.Task:
    """A task due 60 s after its reminder, which fires about fire_in seconds from now."""
    stub = task_service_pb2_grpc.TaskServiceStub(channel)
    task = task_pb2.Task(
        title=title,
        due=utc_in(timedelta(seconds=fire_in + 60)),
        reminders=[task_pb2.ReminderRule(before_due=duration_pb2.Duration(seconds=60))],
    )
    created: task_pb2.Task = (await stub.CreateTask(ts.CreateTaskRequest(task=task), metadata=md)).task
    return created


class OpenStream:
    """A StreamNotifications call read in the background."""

    def __init__(self, channel: grpc.aio.Channel, md: Metadata, resume_after: str = "") -> None:
        stub = notify_pb2_grpc.NotificationServiceStub(channel)
        request = notify_pb2.StreamNotificationsRequest(resume_after=resume_after)
        self.call = stub.StreamNotifications(request, metadata=md)
        self.notifications: list[notify_pb2.Notification] = []
        self.heartbeats = 0
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.call:
            if message.HasField("heartbeat"):
                self.heartbeats += 1
            else:
                self.notifications.append(message.notification)

    async def close(self) -> None:
        self.call.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver().running() as running:
        yield running


async def test_a_reminder_reaches_its_user_live_in_the_list_by_webhook_and_by_email_and_no_one_else(
    host_process: HostProcess, receiver: WebhookReceiver
) -> None:
    with smtp_server() as (mail, smtp_port):
        allow_local_receivers(host_process, smtp_port)
        host_process.start()
        await host_process.wait_serving()
        alice, bob = host_process.bearer("alice"), host_process.bearer("bob")
        async with grpc.aio.insecure_channel(host_process.address) as channel:
            await push_to(channel, alice, receiver, "alice@example.test")
            alice_stream, bob_stream = OpenStream(channel, alice), OpenStream(channel, bob)
            try:
                await eventually(lambda: alice_stream.heartbeats and bob_stream.heartbeats)  # both streams are open
                task = await create_reminded_task(channel, alice, "Pay rent", fire_in=2)
                [live] = await eventually(lambda: alice_stream.notifications, timeout=30)
                await eventually(lambda: receiver.succeeded_ids() and mail.messages, timeout=30)
                await asyncio.sleep(1)  # room for a wrong second delivery
            finally:
                await alice_stream.close()
                await bob_stream.close()
            assert live.task_id == task.task_id and live.title == "Reminder: Pay rent"
            assert live.body.startswith("Due ") and live.body.endswith("(UTC)")  # the due time in the task's zone
            assert bob_stream.notifications == []

            [request] = receiver.requests
            assert request.verified and request.body["data"]["taskId"] == task.task_id
            [message] = mail.messages
            assert message["To"] == "alice@example.test" and "Pay rent" in message["Subject"]

            notifications = notify_pb2_grpc.NotificationServiceStub(channel)
            listed = await notifications.ListNotifications(notify_pb2.ListNotificationsRequest(), metadata=alice)
            [stored] = listed.notifications
            assert stored.notification_id == live.notification_id and listed.unread_count == 1
            states = {d.channel: d.state for d in stored.deliveries}
            assert states == {
                notify_pb2.CHANNEL_IN_APP: notify_pb2.DELIVERY_STATE_SENT,
                notify_pb2.CHANNEL_WEBHOOK: notify_pb2.DELIVERY_STATE_SENT,
                notify_pb2.CHANNEL_EMAIL: notify_pb2.DELIVERY_STATE_SENT,
            }
            others = await notifications.ListNotifications(notify_pb2.ListNotificationsRequest(), metadata=bob)
            assert list(others.notifications) == [] and others.unread_count == 0

            # The task's history, in the activity log of its owner only.
            audit = audit_pb2_grpc.AuditServiceStub(channel)

            async def history() -> list[str]:
                found = await audit.ListActivity(audit_pb2.ListActivityRequest(task_id=task.task_id), metadata=alice)
                types = [e.event_type for e in found.entries]
                return types if types.count("todo.notify.v1.NotificationSent") == 3 else []

            types = await eventually(history, timeout=30)
            assert {"todo.task.v1.TaskCreated", "todo.reminder.v1.ReminderDue"} <= set(types)
            foreign = await audit.ListActivity(audit_pb2.ListActivityRequest(task_id=task.task_id), metadata=bob)
            assert list(foreign.entries) == []
        host_process.kill(signal.SIGTERM)


async def test_a_webhook_failing_five_times_gets_one_success_after_five_recorded_failures(
    host_process: HostProcess, receiver: WebhookReceiver
) -> None:
    receiver.failures = 5
    with smtp_server() as (_, smtp_port):
        allow_local_receivers(host_process, smtp_port)
        host_process.start()
        await host_process.wait_serving()
        alice = host_process.bearer("alice")
        async with grpc.aio.insecure_channel(host_process.address) as channel:
            await push_to(channel, alice, receiver, "alice@example.test")
            await create_reminded_task(channel, alice, "Renew passport", fire_in=1)
            await eventually(receiver.succeeded_ids, timeout=60)
            await asyncio.sleep(1)
            notifications = notify_pb2_grpc.NotificationServiceStub(channel)
            [stored] = (
                await notifications.ListNotifications(notify_pb2.ListNotificationsRequest(), metadata=alice)
            ).notifications
    assert [r.status for r in receiver.requests] == [500] * 5 + [204]
    assert len({r.webhook_id for r in receiver.requests}) == 1  # the same id on every attempt: the receiver's key
    assert all(r.verified for r in receiver.requests)
    [webhook] = [d for d in stored.deliveries if d.channel == notify_pb2.CHANNEL_WEBHOOK]
    assert webhook.state == notify_pb2.DELIVERY_STATE_SENT and webhook.attempts == 6
    attempts = sorted(webhook.recent_attempts, key=lambda a: a.attempt)
    assert [(a.attempt, a.succeeded, a.response_code) for a in attempts] == [(n, False, 500) for n in range(1, 6)] + [
        (6, True, 204)
    ]
    host_process.kill(signal.SIGTERM)


async def test_private_and_metadata_webhook_targets_are_refused_by_default(host_process: HostProcess) -> None:
    host_process.start()
    await host_process.wait_serving()
    alice = host_process.bearer("alice")
    async with grpc.aio.insecure_channel(host_process.address) as channel:
        stub = notify_pb2_grpc.NotificationServiceStub(channel)
        before = await stub.GetChannelSettings(notify_pb2.GetChannelSettingsRequest(), metadata=alice)
        for url in (
            "https://169.254.169.254/latest/meta-data/",
            "https://10.0.0.8/hook",
            "https://[::1]/hook",
            "https://127.0.0.1/hook",
            "http://127.0.0.1:8080/hook",  # loopback http only where the host allows it
            "http://example.com/hook",
            "https://user:secret@example.com/hook",
            "ftp://example.com/hook",
        ):
            settings = notify_pb2.ChannelSettings(webhook=notify_pb2.WebhookSettings(enabled=True, url=url))
            request = notify_pb2.UpdateChannelSettingsRequest(
                settings=settings, update_mask=field_mask_pb2.FieldMask(paths=["webhook"])
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.UpdateChannelSettings(request, metadata=alice)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, url
            assert [f for f, _ in field_violations(refused.value)] == ["settings.webhook.url"], url
        after = await stub.GetChannelSettings(notify_pb2.GetChannelSettingsRequest(), metadata=alice)
    assert after == before
    host_process.kill(signal.SIGTERM)


async def test_kill_9_with_50_reminders_due_during_the_outage_delivers_each_once_per_channel(
    host_process: HostProcess, receiver: WebhookReceiver
) -> None:
    count = 50
    with smtp_server() as (mail, smtp_port):
        allow_local_receivers(host_process, smtp_port)
        host_process.env["TODO_REMINDER_LATE_AFTER_SECONDS"] = "1"
        host_process.start()
        await host_process.wait_serving()
        alice = host_process.bearer("alice")
        async with grpc.aio.insecure_channel(host_process.address) as channel:
            await push_to(channel, alice, receiver, "alice@example.test")
            for i in range(count):
                await create_reminded_task(channel, alice, f"Outage {i}", fire_in=5)
        host_process.kill()  # SIGKILL, before any is due
        await asyncio.sleep(7)
        host_process.start()
        await host_process.wait_serving()
        async with grpc.aio.insecure_channel(host_process.address) as channel:
            stream = OpenStream(channel, alice)
            try:
                await eventually(lambda: len(set(receiver.succeeded_ids())) == count, timeout=90)
                await eventually(lambda: len(mail.messages) >= count, timeout=90)
                await asyncio.sleep(2)  # room for a wrong second delivery
            finally:
                await stream.close()
            notifications = notify_pb2_grpc.NotificationServiceStub(channel)
            listed = await notifications.ListNotifications(
                notify_pb2.ListNotificationsRequest(page_size=1000), metadata=alice
            )
    assert len(listed.notifications) == count
    assert sorted(n.title for n in listed.notifications) == sorted(f"Reminder: Outage {i}" for i in range(count))
    assert all(n.late for n in listed.notifications)
    # Once per channel: one webhook success per notification, one e-mail each.
    assert Counter(receiver.succeeded_ids()).most_common(1)[0][1] == 1
    assert len(mail.messages) == count
    assert len({m["Subject"] for m in mail.messages}) == count
    host_process.kill(signal.SIGTERM)


async def test_every_event_type_is_recorded_once_and_a_tampered_entry_is_found(
    host_process: HostProcess, receiver: WebhookReceiver
) -> None:
    receiver.failures = 10**6  # webhook deliveries fail: NotificationFailed
    host_process.env["TODO_NOTIFY_RETRY_HOURS"] = "0"  # ... and give up at once
    with smtp_server() as (_, smtp_port):
        allow_local_receivers(host_process, smtp_port)
        host_process.start()
        await host_process.wait_serving()
        alice = host_process.bearer("alice")
        async with grpc.aio.insecure_channel(host_process.address) as channel:
            await push_to(channel, alice, receiver, "alice@example.test")
            tasks = task_service_pb2_grpc.TaskServiceStub(channel)
            reminded = await create_reminded_task(channel, alice, "Water plants", fire_in=1)
            weekly = (
                await tasks.CreateTask(
                    ts.CreateTaskRequest(
                        task=task_pb2.Task(
                            title="Team sync",
                            due=utc_in(timedelta(days=1)),
                            recurrence=task_pb2.Recurrence(rrule="FREQ=WEEKLY"),
                            reminders=[task_pb2.ReminderRule(before_due=duration_pb2.Duration(seconds=600))],
                        )
                    ),
                    metadata=alice,
                )
            ).task
            mask = field_mask_pb2.FieldMask(paths=["title"])
            await tasks.UpdateTask(
                ts.UpdateTaskRequest(task=task_pb2.Task(task_id=weekly.task_id, title="Team sync (weekly)"),
                                     update_mask=mask),
                metadata=alice,
            )  # fmt: skip
            await tasks.CompleteTask(ts.CompleteTaskRequest(task_id=weekly.task_id), metadata=alice)  # next + cancel
            await tasks.ReopenTask(ts.ReopenTaskRequest(task_id=weekly.task_id), metadata=alice)
            await tasks.DeleteTask(ts.DeleteTaskRequest(task_id=weekly.task_id), metadata=alice)
            audit = audit_pb2_grpc.AuditServiceStub(channel)
            wanted = {
                t for topic in topics.ALL_TOPICS for t in topic.type_names if topic is not topics.AUDIT_EVENTS
            }  # the chat's events exist once the chat does

            async def recorded() -> list[audit_pb2.ActivityEntry]:
                found = await audit.ListActivity(audit_pb2.ListActivityRequest(page_size=1000), metadata=alice)
                entries = list(found.entries)
                return entries if wanted <= {e.event_type for e in entries} else []

            entries = await eventually(recorded, timeout=60)
            assert reminded.task_id in {e.task_id for e in entries}
            # One entry per event id, sequences 1..n without gaps.
            assert len({e.event_id for e in entries}) == len(entries)
            assert sorted(e.sequence for e in entries) == list(range(1, len(entries) + 1))
            assert all(e.summary and len(e.summary) <= 200 for e in entries)
            verified = await audit.VerifyLog(audit_pb2.VerifyLogRequest(), metadata=alice)
            assert verified.intact and verified.entries_checked >= len(entries)

            # Behind the service's back: the database owner switches the guard off and rewrites one summary.
            victim = sorted(entries, key=lambda e: e.sequence)[len(entries) // 2]
            owner = await asyncpg.connect(host_process.database_url("todo_audit"))
            try:
                await owner.execute("ALTER TABLE activity_log DISABLE TRIGGER activity_log_append_only")
                await owner.execute(
                    "UPDATE activity_log SET summary = 'nothing happened' WHERE user_id = 'alice' AND sequence = $1",
                    victim.sequence,
                )
                await owner.execute("ALTER TABLE activity_log ENABLE ALWAYS TRIGGER activity_log_append_only")
            finally:
                await owner.close()
            broken = await audit.VerifyLog(audit_pb2.VerifyLogRequest(), metadata=alice)
            others = await audit.VerifyLog(audit_pb2.VerifyLogRequest(), metadata=host_process.bearer("bob"))
    assert not broken.intact and broken.first_broken_sequence == victim.sequence and broken.problem
    assert others.intact and others.entries_checked == 0
    host_process.kill(signal.SIGTERM)


async def test_a_burst_of_3000_streams_opened_at_once_all_open(host_process: HostProcess) -> None:
    """Thousands of pages reconnecting at the same moment (after a restart, say) all get their stream.

    gRPC's default backlog of calls not yet taken up by the server (1,000, then
    randomly refused up to 3,000) cancelled a quarter of such a burst before
    any handler saw it.
    """
    count = 3000
    host_process.start()
    await host_process.wait_serving()
    tokens = [host_process.bearer(f"reader-{i}") for i in range(count)]
    channels = [grpc.aio.insecure_channel(host_process.address) for _ in range(count // 100)]
    try:

        async def first_message(i: int) -> str:
            stub = notify_pb2_grpc.NotificationServiceStub(channels[i % len(channels)])
            call = stub.StreamNotifications(notify_pb2.StreamNotificationsRequest(), metadata=tokens[i])
            try:
                async for message in call:
                    return "heartbeat" if message.HasField("heartbeat") else "notification"
                return "ended"
            except grpc.aio.AioRpcError as error:
                return error.code().name
            finally:
                call.cancel()

        outcomes = Counter(await asyncio.gather(*(first_message(i) for i in range(count))))
    finally:
        for channel in channels:
            await channel.close()
    assert outcomes == {"heartbeat": count}
    host_process.kill(signal.SIGTERM)
