"""SnoozeReminder's input: times beyond what a datetime holds and huge or malformed ids are INVALID_ARGUMENT."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from flow_client import Flow, eventually, in_utc
from google.protobuf import duration_pb2, timestamp_pb2

from todo_contracts.reminder.v1 import reminder_pb2
from todo_contracts.task.v1 import task_pb2
from todo_contracts.task.v1 import task_service_pb2 as ts
from todo_kit.testing import violated_fields


async def fired_reminder(flow: Flow) -> reminder_pb2.Reminder:
    rule = task_pb2.ReminderRule(at=in_utc(timedelta(seconds=-60)))
    task = task_pb2.Task(title="Pay rent", due=in_utc(timedelta(days=1)), reminders=[rule])
    made = (await flow.tasks.CreateTask(ts.CreateTaskRequest(task=task), metadata=flow.alice)).task

    async def fired() -> list[reminder_pb2.Reminder]:
        listed = await flow.reminders.ListReminders(
            reminder_pb2.ListRemindersRequest(task_id=made.task_id), metadata=flow.alice
        )
        return [r for r in listed.reminders if r.state == reminder_pb2.REMINDER_STATE_FIRED]

    [reminder] = await eventually(fired)
    return reminder


async def test_snooze_times_beyond_the_datetime_range_and_bad_ids_are_invalid_argument(flow: Flow) -> None:
    fired = await fired_reminder(flow)
    ten_years_thousand = duration_pb2.Duration(seconds=315_576_000_000)  # the longest Duration there is
    for request, field in [
        (reminder_pb2.SnoozeReminderRequest(reminder_id=fired.reminder_id, snooze_for=ten_years_thousand),
         "snooze_for"),
        (reminder_pb2.SnoozeReminderRequest(reminder_id=fired.reminder_id,
                                            snooze_for=duration_pb2.Duration(seconds=600, nanos=-1)), "snooze_for"),
        (reminder_pb2.SnoozeReminderRequest(reminder_id=fired.reminder_id,
                                            snooze_until=timestamp_pb2.Timestamp(seconds=253_402_300_800)),
         "snooze_until"),
        (reminder_pb2.SnoozeReminderRequest(reminder_id=fired.reminder_id,
                                            snooze_until=timestamp_pb2.Timestamp(seconds=-62_135_596_801)),
         "snooze_until"),
        (reminder_pb2.SnoozeReminderRequest(reminder_id="r" * 100_000, snooze_for=duration_pb2.Duration(seconds=600)),
         "reminder_id"),
        (reminder_pb2.SnoozeReminderRequest(reminder_id=fired.reminder_id + "\n",
                                            snooze_for=duration_pb2.Duration(seconds=600)), "reminder_id"),
        (reminder_pb2.SnoozeReminderRequest(snooze_for=duration_pb2.Duration(seconds=600)), "reminder_id"),
    ]:  # fmt: skip
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await flow.reminders.SnoozeReminder(request, metadata=flow.alice)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, raised.value.details())
        assert violated_fields(raised.value) == [field]
        assert len(raised.value.details() or "") < 2000
    ten_minutes = duration_pb2.Duration(seconds=600)
    still = await flow.reminders.SnoozeReminder(
        reminder_pb2.SnoozeReminderRequest(reminder_id=fired.reminder_id, snooze_for=ten_minutes), metadata=flow.alice
    )
    assert still.reminder.snoozed_from_reminder_id == fired.reminder_id


async def test_an_unknown_reminder_is_not_found_and_its_id_is_cut(flow: Flow) -> None:
    long_id = "r" * 500  # within the id limit, longer than an error message quotes
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await flow.reminders.SnoozeReminder(
            reminder_pb2.SnoozeReminderRequest(reminder_id=long_id, snooze_for=duration_pb2.Duration(seconds=600)),
            metadata=flow.alice,
        )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert long_id not in (raised.value.details() or "")


@pytest.mark.parametrize("form", ["{%s}", "urn:uuid:%s", "%s-"])
async def test_list_reminders_takes_only_a_canonical_task_id(flow: Flow, form: str) -> None:
    # uuid.UUID accepts "{...}" and "urn:uuid:...", the database does not: that was INTERNAL.
    task_id = "0190b2a4-7c1d-7000-8000-000000000001"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await flow.reminders.ListReminders(
            reminder_pb2.ListRemindersRequest(task_id=form % task_id), metadata=flow.alice
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(raised.value) == ["task_id"]
