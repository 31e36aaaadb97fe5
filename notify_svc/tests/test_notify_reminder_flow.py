"""A task's reminder, fired by the reminder service, reaches the open stream of its user and no other's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf import duration_pb2
from notify_fixtures import Notify, notify_unit, open_stream

from reminder_svc.unit import unit as reminder_unit
from task_svc.unit import unit as task_unit
from todo_contracts.common.v1 import common_pb2
from todo_contracts.notify.v1 import notify_pb2_grpc
from todo_contracts.task.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc
from todo_kit.config import Settings
from todo_kit.testing import EventRecorder, bearer, running_host


def due_in(seconds: float) -> common_pb2.ZonedDateTime:
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return common_pb2.ZonedDateTime(local_time=moment.strftime("%Y-%m-%dT%H:%M:%S"), time_zone="UTC")


async def test_a_tasks_reminder_reaches_its_users_open_stream_and_no_other(kit_settings: Settings) -> None:
    units = [task_unit, reminder_unit, notify_unit()]
    async with (
        running_host(kit_settings, units) as host,
        grpc.aio.insecure_channel(host.address) as channel,
    ):
        notify = Notify(
            host, notify_pb2_grpc.NotificationServiceStub(channel), kit_settings, EventRecorder(),
            bearer(kit_settings, "alice"), bearer(kit_settings, "bob"),
        )  # fmt: skip
        tasks = task_service_pb2_grpc.TaskServiceStub(channel)
        alice, bob = open_stream(notify, "alice"), open_stream(notify, "bob")
        await alice.next()
        await bob.next()
        reminder = task_pb2.ReminderRule(before_due=duration_pb2.Duration(seconds=2))
        created = await tasks.CreateTask(
            task_service_pb2.CreateTaskRequest(
                task=task_pb2.Task(title="Pay rent", due=due_in(4), reminders=[reminder])
            ),
            metadata=notify.alice,
        )
        received = await alice.next_notification(timeout=30)
        assert received.title == "Reminder: Pay rent"
        assert received.task_id == created.task.task_id
        assert received.body.startswith("Due ") and received.body.endswith("(UTC)")
        bobs = await tasks.CreateTask(
            task_service_pb2.CreateTaskRequest(
                task=task_pb2.Task(title="Water plants", due=due_in(3), reminders=[reminder])
            ),
            metadata=notify.bob,
        )
        # Bob's stream's first notification is bob's own: alice's never reached it.
        assert (await bob.next_notification(timeout=30)).task_id == bobs.task.task_id
        alice.close()
        bob.close()
