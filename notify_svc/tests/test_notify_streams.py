"""StreamNotifications on a real host: heartbeat first, live delivery to the right user only, resume without gaps
or repeats, order under concurrency, limits, shutdown."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
import sqlalchemy as sa
from notify_fixtures import Notify, Stream, eventually, notify_unit, open_stream, running_notify

from notify_svc.live import LISTENER_NAME
from notify_svc.settings import NotifySettings
from notify_svc.storage import NotificationRepository
from todo_contracts import envelope
from todo_contracts.notify.v1 import notify_pb2, notify_pb2_grpc
from todo_contracts.reminder.v1 import events_pb2 as reminder_events
from todo_contracts.reminder.v1 import reminder_pb2
from todo_kit.config import Settings
from todo_kit.embedded_host import EmbeddedHost
from todo_kit.testing import bearer


async def test_a_stream_starts_with_a_heartbeat_naming_the_newest_notification(notify: Notify) -> None:
    empty = open_stream(notify)
    first = await empty.next()
    assert first.HasField("heartbeat") and not first.HasField("notification")
    assert first.heartbeat.last_notification_id == ""
    assert first.heartbeat.server_time.seconds > 0
    empty.close()
    await notify.due()
    [newest] = await notify.notifications()
    later = open_stream(notify)
    assert (await later.next()).heartbeat.last_notification_id == newest.notification_id
    later.close()


async def test_a_new_notification_reaches_every_open_stream_of_its_user_and_no_other(notify: Notify) -> None:
    alice_streams = [open_stream(notify, "alice") for _ in range(2)]
    bob = open_stream(notify, "bob")
    for stream in [*alice_streams, bob]:
        assert (await stream.next()).HasField("heartbeat")
    reminder = await notify.due("alice", task_title="Pay rent")
    for stream in alice_streams:
        received = await stream.next_notification()
        assert (received.reminder_id, received.title, received.user_id) == (
            reminder.reminder_id, "Reminder: Pay rent", "alice",
        )  # fmt: skip
    # Bob's stream carries bob's notification first: alice's never came to it.
    bobs = await notify.due("bob", task_title="Water plants")
    received = await bob.next_notification()
    assert (received.reminder_id, received.user_id) == (bobs.reminder_id, "bob")
    for stream in [*alice_streams, bob]:
        stream.close()


async def test_a_reconnecting_stream_gets_what_it_missed_once_in_order_then_live_ones(notify: Notify) -> None:
    stream = open_stream(notify)
    await stream.next()
    await notify.due(task_title="first")
    seen = await stream.next_notification()
    stream.close()
    missed = [await notify.due(task_title=f"missed {n}") for n in range(7)]
    await notify.notifications(count=8)
    resumed = open_stream(notify, resume_after=seen.notification_id)
    heartbeat = await resumed.next()
    assert heartbeat.heartbeat.last_notification_id == seen.notification_id
    replayed = [await resumed.next_notification() for _ in missed]
    assert [n.reminder_id for n in replayed] == [r.reminder_id for r in missed]
    live = await notify.due(task_title="live")
    # The next one is the live one: nothing replayed twice.
    assert (await resumed.next_notification()).reminder_id == live.reminder_id
    resumed.close()


async def test_the_replay_reads_in_pages_and_misses_nothing_past_a_page(notify: Notify) -> None:
    await notify.due()
    [start] = await notify.notifications()
    creator = notify.host.wirings["notify_svc"].subscriptions[0].handler
    count = 520  # more than one page of 500
    for number in range(count):
        reminder = reminder_pb2.Reminder(reminder_id=f"bulk/{number}", user_id="alice", task_title=f"t{number}")
        event = reminder_events.ReminderDue(user_id="alice", reminder=reminder)
        await creator(envelope.unwrap(envelope.wrap(event, source="/todo/reminder_svc")))
    replay = open_stream(notify, resume_after=start.notification_id)
    await replay.next()
    got = [(await replay.next_notification()).reminder_id for _ in range(count)]
    assert got == [f"bulk/{n}" for n in range(count)]
    replay.close()


async def test_notifications_created_concurrently_reach_a_stream_in_their_order_without_gaps(notify: Notify) -> None:
    stream = open_stream(notify)
    await stream.next()
    creator = notify.host.wirings["notify_svc"].subscriptions[0].handler

    async def fire(number: int) -> None:
        reminder = reminder_pb2.Reminder(reminder_id=f"race/{number}", user_id="alice", task_title=f"t{number}")
        event = reminder_events.ReminderDue(user_id="alice", reminder=reminder)
        await creator(envelope.unwrap(envelope.wrap(event, source="/todo/reminder_svc")))

    await asyncio.gather(*(fire(n) for n in range(24)))
    received = [await stream.next_notification() for _ in range(24)]
    listed = await notify.notifications(count=24)
    # The stream's order is the users's numbering (newest first in the listing), each once.
    assert [n.notification_id for n in received] == [n.notification_id for n in reversed(listed)]
    assert sorted(n.reminder_id for n in received) == sorted(f"race/{n}" for n in range(24))
    stream.close()


async def test_a_quiet_stream_gets_heartbeats_with_the_last_id_it_sent(kit_settings: Settings) -> None:
    unit = notify_unit(NotifySettings(heartbeat_seconds=1))
    async with running_notify(kit_settings, unit) as notify:
        stream = open_stream(notify)
        await stream.next()
        await notify.due()
        sent = await stream.next_notification()
        beat = await stream.next()
        assert beat.HasField("heartbeat") and beat.heartbeat.last_notification_id == sent.notification_id
        stream.close()


async def test_an_idle_stream_reads_the_database_only_when_woken(
    kit_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten thousand idle streams must cost heartbeats, not a query per heartbeat each."""
    reads: list[str] = []
    original = NotificationRepository.after

    async def counted(self: NotificationRepository, user: str, *args: object, **kwargs: object) -> object:
        reads.append(user)
        return await original(self, user, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(NotificationRepository, "after", counted)
    async with running_notify(kit_settings, notify_unit(NotifySettings(heartbeat_seconds=1))) as notify:
        stream = open_stream(notify)
        for _ in range(4):  # the first message and three heartbeats
            assert (await stream.next()).HasField("heartbeat")
        assert reads == ["alice"]  # the first read only
        await notify.due()
        await stream.next_notification()
        assert len(reads) == 2  # woken once by the new notification
        stream.close()


async def test_resume_after_takes_only_the_users_own_notification_ids(notify: Notify) -> None:
    await notify.due("bob")
    [bobs] = await notify.notifications("bob")
    for resume_after, code in [
        (bobs.notification_id, grpc.StatusCode.NOT_FOUND),
        (str(uuid.uuid4()), grpc.StatusCode.NOT_FOUND),
        ("not-an-id", grpc.StatusCode.INVALID_ARGUMENT),
    ]:
        stream = open_stream(notify, "alice", resume_after=resume_after)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stream.next()
        assert caught.value.code() == code


async def test_a_user_holds_at_most_the_stream_limit_and_a_closed_one_frees_its_place(notify: Notify) -> None:
    # The test unit allows 3 streams per user.
    open_ones = [open_stream(notify) for _ in range(3)]
    for stream in open_ones:
        await stream.next()
    extra = open_stream(notify)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await extra.next()
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    bobs = open_stream(notify, "bob")
    assert (await bobs.next()).HasField("heartbeat")  # another user is not affected
    open_ones[0].close()

    async def reopened() -> Stream | None:
        stream = open_stream(notify)
        try:
            await stream.next()
        except grpc.aio.AioRpcError:
            return None
        return stream

    again = await eventually(reopened)
    for stream in [*open_ones[1:], bobs, again]:
        stream.close()


async def test_a_host_holds_at_most_its_stream_limit(kit_settings: Settings) -> None:
    unit = notify_unit(NotifySettings(max_streams=2))
    async with running_notify(kit_settings, unit) as notify:
        held = [open_stream(notify, user) for user in ("alice", "bob")]
        for stream in held:
            await stream.next()
        carol = open_stream(notify, "carol")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await carol.next()
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        for stream in held:
            stream.close()


async def test_a_stream_outlives_the_default_deadline_of_unary_calls(kit_settings: Settings) -> None:
    settings = Settings(**{**kit_settings.__dict__, "default_deadline_seconds": 1})
    unit = notify_unit(NotifySettings(heartbeat_seconds=1))
    async with running_notify(settings, unit) as notify:
        stream = open_stream(notify)
        for _ in range(3):  # about three seconds, past the 1 s default deadline
            assert (await stream.next()).HasField("heartbeat")
        stream.close()


async def test_stopping_the_host_ends_open_streams(kit_settings: Settings) -> None:
    host = EmbeddedHost(kit_settings, [notify_unit()])
    await host.start()
    try:
        async with grpc.aio.insecure_channel(host.address) as channel:
            stub = notify_pb2_grpc.NotificationServiceStub(channel)
            streams = [
                Stream(
                    stub.StreamNotifications(notify_pb2.StreamNotificationsRequest(), metadata=bearer(kit_settings, u))
                )
                for u in ("alice", "bob")
            ]
            for stream in streams:
                await stream.next()
            async with asyncio.timeout(30):  # a guard against a hang, not a measure of speed
                await host.stop(grace=3)
                for stream in streams:
                    with pytest.raises(grpc.aio.AioRpcError) as caught:
                        await stream.next()
                    # Ended by the service with a word on what to do, not cut by the server's grace period.
                    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
                    assert "resume_after" in (caught.value.details() or "")
    finally:
        await host.stop(grace=0)


async def test_a_stream_misses_nothing_while_the_listening_connection_is_replaced(kit_settings: Settings) -> None:
    # No heartbeat within the test: only the listener can wake the stream.
    async with running_notify(kit_settings, notify_unit(NotifySettings(heartbeat_seconds=3600))) as notify:
        stream = open_stream(notify)
        await stream.next()
        db = notify.host.databases["todo_notify"]
        restarts = notify.host.supervisor.restarts
        async with db.transaction() as conn:
            # The listener's connection dies (a database restart, a network cut): NOTIFYs meanwhile are lost.
            killed = await conn.scalar(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name = :name"
                ),
                {"name": LISTENER_NAME},
            )
        assert killed == 1
        reminder = await notify.due(task_title="while nobody listened")
        assert (await stream.next_notification(timeout=20)).reminder_id == reminder.reminder_id
        await eventually(lambda: notify.host.supervisor.restarts > restarts)
        after = await notify.due(task_title="after")
        assert (await stream.next_notification(timeout=20)).reminder_id == after.reminder_id
        stream.close()
