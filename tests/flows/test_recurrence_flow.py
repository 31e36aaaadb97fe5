"""Recurring tasks end to end on the embedded default, and RecurrenceService's checks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from flow_client import Flow, eventually, in_utc
from google.protobuf import duration_pb2

from todo_contracts.common.v1 import common_pb2
from todo_contracts.recurrence.v1 import recurrence_pb2
from todo_contracts.task.v1 import task_pb2
from todo_contracts.task.v1 import task_service_pb2 as ts


async def create_recurring(flow: Flow, rule: str, due: common_pb2.ZonedDateTime, **options: object) -> task_pb2.Task:
    recurrence = task_pb2.Recurrence(rrule=rule, **options)  # type: ignore[arg-type]
    request = ts.CreateTaskRequest(
        task=task_pb2.Task(title="Water plants", tags=["home"], due=due, recurrence=recurrence)
    )
    return (await flow.tasks.CreateTask(request, metadata=flow.alice)).task


async def series(flow: Flow, series_id: str) -> list[task_pb2.Task]:
    every_status = [task_pb2.TASK_STATUS_OPEN, task_pb2.TASK_STATUS_COMPLETED]
    request = ts.ListTasksRequest(series_id=series_id, order_by=ts.TASK_ORDER_BY_DUE_TIME, statuses=every_status)
    listed = await flow.tasks.ListTasks(request, metadata=flow.alice)
    return list(listed.tasks)


async def complete(flow: Flow, task_id: str) -> None:
    await flow.tasks.CompleteTask(ts.CompleteTaskRequest(task_id=task_id), metadata=flow.alice)


async def wait_for_series(flow: Flow, series_id: str, size: int) -> list[task_pb2.Task]:
    async def check() -> list[task_pb2.Task]:
        found = await series(flow, series_id)
        return found if len(found) >= size else []

    return list(await eventually(check))


async def test_completing_a_weekly_task_makes_next_weeks_task_appear(flow: Flow) -> None:
    first = await create_recurring(
        flow, "FREQ=WEEKLY;BYDAY=MO", common_pb2.ZonedDateTime(local_time="2026-12-07T09:00", time_zone="Europe/Berlin")
    )
    await complete(flow, first.task_id)
    tasks = await wait_for_series(flow, first.recurrence.series_id, 2)
    second = tasks[1]
    assert second.due.local_time == "2026-12-14T09:00:00" and second.due.time_zone == "Europe/Berlin"
    assert second.status == task_pb2.TASK_STATUS_OPEN
    assert second.recurrence.occurrence_index == 2 and second.title == "Water plants" and list(second.tags) == ["home"]


async def test_reopening_and_completing_again_makes_no_second_occurrence(flow: Flow) -> None:
    first = await create_recurring(
        flow, "FREQ=DAILY", common_pb2.ZonedDateTime(local_time="2026-12-07T09:00", time_zone="UTC")
    )
    await complete(flow, first.task_id)
    await wait_for_series(flow, first.recurrence.series_id, 2)
    await flow.tasks.ReopenTask(ts.ReopenTaskRequest(task_id=first.task_id), metadata=flow.alice)
    await complete(flow, first.task_id)

    async def both_completions() -> list[object]:
        found = [e for e in await flow.events("todo.task.v1.TaskCompleted") if e.subject == first.task_id]
        return found if len(found) == 2 else []

    completions = await eventually(both_completions)

    async def recurrence_handled_both() -> bool:
        async with flow.host.databases["todo_recurrence"].engine.connect() as conn:
            from todo_kit.messaging import processed_events_table

            rows = (await conn.execute(processed_events_table.select())).all()
        return {e.id for e in completions} <= {r.event_id for r in rows}

    await eventually(recurrence_handled_both)
    await asyncio.sleep(0.3)
    assert len(await series(flow, first.recurrence.series_id)) == 2
    assert len(await flow.events("todo.task.v1.OccurrenceRequested")) == 1


async def test_a_series_ends_at_its_count(flow: Flow) -> None:
    first = await create_recurring(
        flow, "FREQ=DAILY;COUNT=2", common_pb2.ZonedDateTime(local_time="2026-12-07T09:00", time_zone="UTC")
    )
    await complete(flow, first.task_id)
    second = (await wait_for_series(flow, first.recurrence.series_id, 2))[1]
    await complete(flow, second.task_id)
    await eventually(lambda: _completed_seen(flow, second.task_id))
    await asyncio.sleep(0.5)
    assert len(await series(flow, first.recurrence.series_id)) == 2


async def _completed_seen(flow: Flow, task_id: str) -> bool:
    return any(e.subject == task_id for e in await flow.events("todo.task.v1.TaskCompleted"))


async def test_lead_time_holds_the_next_occurrence_back(flow: Flow) -> None:
    # Due in 2 h, daily: the next is due in 26 h and appears 26 h less 2 s before that, 2 s from now.
    first = await create_recurring(
        flow, "FREQ=DAILY", in_utc(timedelta(hours=2)), create_lead_time=duration_pb2.Duration(seconds=26 * 3600 - 2)
    )
    await complete(flow, first.task_id)
    await asyncio.sleep(0.7)
    assert len(await series(flow, first.recurrence.series_id)) == 1, "appeared before its lead time"
    tasks = await wait_for_series(flow, first.recurrence.series_id, 2)
    gap = tasks[1].due.instant.ToDatetime(tzinfo=UTC) - first.due.instant.ToDatetime(tzinfo=UTC)
    assert gap == timedelta(days=1)


async def test_deleting_the_series_cancels_a_waiting_occurrence(flow: Flow) -> None:
    # Due in 2 h, daily: the next would appear 7 to 8 s from now.
    first = await create_recurring(
        flow, "FREQ=DAILY", in_utc(timedelta(hours=2)), create_lead_time=duration_pb2.Duration(seconds=26 * 3600 - 8)
    )
    await complete(flow, first.task_id)
    await flow.tasks.DeleteTask(ts.DeleteTaskRequest(task_id=first.task_id, end_series=True), metadata=flow.alice)

    async def deletion_handled() -> bool:
        deleted = [e.id for e in await flow.events("todo.task.v1.TaskDeleted") if e.subject == first.task_id]
        if not deleted:
            return False
        async with flow.host.databases["todo_recurrence"].engine.connect() as conn:
            from todo_kit.messaging import processed_events_table

            rows = (await conn.execute(processed_events_table.select())).all()
        return deleted[0] in {r.event_id for r in rows}

    await eventually(deletion_handled)
    appear_at = first.due.instant.ToDatetime(tzinfo=UTC) + timedelta(days=1) - timedelta(seconds=26 * 3600 - 8)
    await asyncio.sleep(max(0.0, (appear_at - datetime.now(UTC)).total_seconds()) + 1.5)
    assert await series(flow, first.recurrence.series_id) == []
    assert await flow.events("todo.task.v1.OccurrenceRequested") == []


async def test_validate_rule(flow: Flow) -> None:
    good = await flow.recurrence.ValidateRule(
        recurrence_pb2.ValidateRuleRequest(rrule="FREQ=MONTHLY;BYDAY=2MO;COUNT=10"), metadata=flow.alice
    )
    assert good.valid and good.description == "every month on the 2nd Monday, 10 times"
    for rule, part in [
        ("FREQ=DAILY;COUNT=3;UNTIL=20270101T000000Z", "UNTIL"),
        ("FREQ=FORTNIGHTLY", "FREQ"),
        ("BYDAY=MO", "FREQ"),
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", ""),
        ("FREQ=WEEKLY;BYDAY=XX", "BYDAY"),
    ]:
        bad = await flow.recurrence.ValidateRule(recurrence_pb2.ValidateRuleRequest(rrule=rule), metadata=flow.alice)
        assert not bad.valid and bad.problems and bad.problems[0].part == part, rule


async def test_preview_rejects_bad_input(flow: Flow) -> None:
    start = common_pb2.ZonedDateTime(local_time="2026-12-07T09:00", time_zone="UTC")
    for request in [
        recurrence_pb2.PreviewOccurrencesRequest(rrule="FREQ=NEVER", start=start),
        recurrence_pb2.PreviewOccurrencesRequest(rrule="FREQ=DAILY"),
        recurrence_pb2.PreviewOccurrencesRequest(rrule="FREQ=DAILY", start=start, count=1_000_000),
        recurrence_pb2.PreviewOccurrencesRequest(
            rrule="FREQ=DAILY", start=common_pb2.ZonedDateTime(local_time="2026-12-07T09:00", time_zone="Moon/Base")
        ),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await flow.recurrence.PreviewOccurrences(request, metadata=flow.alice)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
