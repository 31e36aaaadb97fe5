"""ListReminders pages: signed keyset tokens, pages that neither skip nor repeat while reminders change."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from flow_client import Flow, eventually

from todo_contracts.common.v1 import common_pb2
from todo_contracts.reminder.v1 import reminder_pb2
from todo_contracts.task.v1 import task_pb2
from todo_contracts.task.v1 import task_service_pb2 as ts

SCHEDULED = reminder_pb2.REMINDER_STATE_SCHEDULED
BASE = (datetime.now(UTC) + timedelta(days=2)).replace(second=0, microsecond=0)


def at(minutes: int) -> task_pb2.ReminderRule:
    moment = BASE + timedelta(minutes=minutes)
    return task_pb2.ReminderRule(
        at=common_pb2.ZonedDateTime(local_time=moment.strftime("%Y-%m-%dT%H:%M"), time_zone="UTC")
    )


async def create(flow: Flow, title: str, minutes: list[int]) -> task_pb2.Task:
    task = task_pb2.Task(title=title, reminders=[at(m) for m in minutes])
    return (await flow.tasks.CreateTask(ts.CreateTaskRequest(task=task), metadata=flow.alice)).task


async def scheduled_of(flow: Flow, task_id: str, count: int) -> list[reminder_pb2.Reminder]:
    """The task's scheduled reminders, once there are count of them."""
    found: list[reminder_pb2.Reminder] = []

    async def check() -> bool:
        request = reminder_pb2.ListRemindersRequest(task_id=task_id, states=[SCHEDULED])
        found[:] = (await flow.reminders.ListReminders(request, metadata=flow.alice)).reminders
        return len(found) == count

    await eventually(check)
    return found


async def refused(flow: Flow, md: list[tuple[str, str]], request: reminder_pb2.ListRemindersRequest) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await flow.reminders.ListReminders(request, metadata=md)
    return raised.value.code()


async def test_reminder_pages_neither_skip_nor_repeat_while_reminders_change(flow: Flow) -> None:
    # Two reminders of a task at the same minute: their order is by reminder id.
    rent = await create(flow, "Pay rent", [0, 1, 1, 2, 3, 4])
    mom = await create(flow, "Call mom", [10, 11, 11, 12, 13, 14])
    await scheduled_of(flow, rent.task_id, 6)
    moms = [r.reminder_id for r in await scheduled_of(flow, mom.task_id, 6)]
    listing = reminder_pb2.ListRemindersRequest(states=[SCHEDULED], page_size=4)
    first = await flow.reminders.ListReminders(listing, metadata=flow.alice)
    assert {r.task_id for r in first.reminders} == {rent.task_id} and first.next_page_token
    # Between pages: the reminders of the first page's task are cancelled (the
    # task is completed) and reminders come before and after the position.
    await flow.tasks.CompleteTask(ts.CompleteTaskRequest(task_id=rent.task_id), metadata=flow.alice)
    await scheduled_of(flow, rent.task_id, 0)
    later = await create(flow, "Water plants", [-60, 20])
    planned = {r.fire_time.ToDatetime(tzinfo=UTC): r.reminder_id for r in await scheduled_of(flow, later.task_id, 2)}
    walked = [r.reminder_id for r in first.reminders]
    token = first.next_page_token
    while token:
        listing.page_token = token
        page = await flow.reminders.ListReminders(listing, metadata=flow.alice)
        walked += [r.reminder_id for r in page.reminders]
        token = page.next_page_token
    assert walked[4:] == [*moms, planned[BASE + timedelta(minutes=20)]]


async def test_a_reminder_page_token_is_refused_when_edited_reused_elsewhere_or_nested(flow: Flow) -> None:
    task = await create(flow, "Pay rent", [0, 1, 2])
    await scheduled_of(flow, task.task_id, 3)
    token = (
        await flow.reminders.ListReminders(reminder_pb2.ListRemindersRequest(page_size=1), metadata=flow.alice)
    ).next_page_token
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    for index in range(len(raw)):
        edited = base64.urlsafe_b64encode(raw[:index] + bytes([raw[index] ^ 1]) + raw[index + 1 :]).decode()
        request = reminder_pb2.ListRemindersRequest(page_size=1, page_token=edited.rstrip("="))
        assert await refused(flow, flow.alice, request) == invalid, index
    other_listing = reminder_pb2.ListRemindersRequest(page_size=1, page_token=token, task_id=task.task_id)
    assert await refused(flow, flow.alice, other_listing) == invalid
    other_user = reminder_pb2.ListRemindersRequest(page_size=1, page_token=token)
    assert await refused(flow, flow.bob, other_user) == invalid
    nested = base64.urlsafe_b64encode(b"[" * 100_000 + b"]" * 100_000).decode().rstrip("=")
    assert await refused(flow, flow.alice, reminder_pb2.ListRemindersRequest(page_token=nested)) == invalid
    # A token of the task listing, signed with the same key, is not a reminder listing's.
    await create(flow, "Call mom", [])
    tasks_token = (await flow.tasks.ListTasks(ts.ListTasksRequest(page_size=1), metadata=flow.alice)).next_page_token
    assert await refused(flow, flow.alice, reminder_pb2.ListRemindersRequest(page_token=tasks_token)) == invalid
