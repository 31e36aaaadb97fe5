"""Reminders and recurrence on the real embedded default process (what `make up` runs).

- a reminder comes due and is published once, on time;
- completing a weekly recurring task makes next week's task appear;
- kill -9 while reminders are about to come due: after the restart every one is
  delivered exactly once, flagged late with how late.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta

import grpc
from google.protobuf import duration_pb2
from host_process import HostProcess, utc_in

from todo_contracts.common.v1 import common_pb2
from todo_contracts.reminder.v1 import reminder_pb2, reminder_pb2_grpc
from todo_contracts.task.v1 import task_pb2, task_service_pb2_grpc
from todo_contracts.task.v1 import task_service_pb2 as ts
from todo_kit.testing import eventually


async def fired_reminders(channel: grpc.aio.Channel, md: list[tuple[str, str]]) -> list[reminder_pb2.Reminder]:
    stub = reminder_pb2_grpc.ReminderServiceStub(channel)
    request = reminder_pb2.ListRemindersRequest(states=[reminder_pb2.REMINDER_STATE_FIRED], page_size=1000)
    return list((await stub.ListReminders(request, metadata=md)).reminders)


async def test_reminder_on_time_and_next_weeks_task(host_process: HostProcess) -> None:
    host_process.start()
    await host_process.wait_serving()
    md = host_process.bearer("alice")
    async with grpc.aio.insecure_channel(host_process.address) as channel:
        tasks = task_service_pb2_grpc.TaskServiceStub(channel)
        reminded = (
            await tasks.CreateTask(
                ts.CreateTaskRequest(
                    task=task_pb2.Task(
                        title="Call the bank",
                        due=utc_in(timedelta(seconds=6)),
                        reminders=[task_pb2.ReminderRule(before_due=duration_pb2.Duration(seconds=3))],
                    )
                ),
                metadata=md,
            )
        ).task
        weekly = (
            await tasks.CreateTask(
                ts.CreateTaskRequest(
                    task=task_pb2.Task(
                        title="Water plants",
                        due=common_pb2.ZonedDateTime(local_time="2026-12-07T09:00", time_zone="Europe/Berlin"),
                        recurrence=task_pb2.Recurrence(rrule="FREQ=WEEKLY"),
                    )
                ),
                metadata=md,
            )
        ).task
        await tasks.CompleteTask(ts.CompleteTaskRequest(task_id=weekly.task_id), metadata=md)

        async def next_week() -> list[task_pb2.Task]:
            found = await tasks.ListTasks(
                ts.ListTasksRequest(series_id=weekly.recurrence.series_id, statuses=[task_pb2.TASK_STATUS_OPEN]),
                metadata=md,
            )
            return list(found.tasks)

        [following] = await eventually(next_week)  # type: ignore[misc]
        assert following.due.local_time == "2026-12-14T09:00:00"

        [fired] = await eventually(lambda: fired_reminders(channel, md))  # type: ignore[misc]
    assert fired.task_id == reminded.task_id and not fired.late
    assert fired.fired_time.ToDatetime() >= fired.fire_time.ToDatetime()


async def test_kill_9_before_reminders_come_due_delivers_each_once_late(host_process: HostProcess) -> None:
    host_process.env["TODO_REMINDER_LATE_AFTER_SECONDS"] = "1"
    host_process.start()
    await host_process.wait_serving()
    md = host_process.bearer("alice")
    count = 20
    async with grpc.aio.insecure_channel(host_process.address) as channel:
        tasks = task_service_pb2_grpc.TaskServiceStub(channel)
        for i in range(count):
            await tasks.CreateTask(
                ts.CreateTaskRequest(
                    task=task_pb2.Task(
                        title=f"Reminder {i}",
                        due=utc_in(timedelta(seconds=4)),
                        reminders=[task_pb2.ReminderRule(before_due=duration_pb2.Duration(seconds=1))],
                    )
                ),
                metadata=md,
            )
        reminders = reminder_pb2_grpc.ReminderServiceStub(channel)

        async def all_planned() -> bool:
            listed = await reminders.ListReminders(reminder_pb2.ListRemindersRequest(page_size=1000), metadata=md)
            return len(listed.reminders) == count

        await eventually(all_planned)
    host_process.kill()  # SIGKILL: down before any reminder is due
    await asyncio.sleep(5)
    host_process.start()
    await host_process.wait_serving()
    async with grpc.aio.insecure_channel(host_process.address) as channel:

        async def all_fired() -> list[reminder_pb2.Reminder]:
            found = await fired_reminders(channel, md)
            return found if len(found) == count else []

        fired = await eventually(all_fired)
        await asyncio.sleep(0.5)
        assert len(await fired_reminders(channel, md)) == count
    assert all(r.late and r.lateness.ToTimedelta() >= timedelta(seconds=1) for r in fired)  # type: ignore[union-attr]
    host_process.kill(signal.SIGTERM)
