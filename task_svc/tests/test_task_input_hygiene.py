"""Bad input to TaskService is INVALID_ARGUMENT naming the field, never INTERNAL; its logs carry no titles."""

from __future__ import annotations

import logging
from collections.abc import Awaitable

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2
from task_fixtures import TaskClient

from todo_contracts import envelope
from todo_contracts.common.v1 import common_pb2
from todo_contracts.task.v1 import events_pb2, task_pb2
from todo_contracts.task.v1 import task_service_pb2 as ts
from todo_kit.messaging import OutgoingEvent
from todo_kit.testing import eventually, violated_fields


def zdt(local: str, zone: str = "Europe/Berlin") -> common_pb2.ZonedDateTime:
    return common_pb2.ZonedDateTime(local_time=local, time_zone=zone)


async def refused(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    return raised.value


def create(c: TaskClient, task: task_pb2.Task, request_id: str = "") -> Awaitable[ts.CreateTaskResponse]:
    return c.stub.CreateTask(ts.CreateTaskRequest(task=task, client_request_id=request_id), metadata=c.alice)


@pytest.mark.parametrize(
    ("task", "request_id", "field"),
    [
        (task_pb2.Task(title="Pay\x00rent"), "", "task.title"),
        (task_pb2.Task(title="Pay rent", description="\x00"), "", "task.description"),
        (task_pb2.Task(title="Pay rent", tags=["fin\x00ance"]), "", "task.tags[0]"),
        (task_pb2.Task(title="Pay rent"), "req\x00", "client_request_id"),
        (task_pb2.Task(title="Pay rent", due=zdt("2026-12-01T09:00", "UTC\x00")), "", "task.due.time_zone"),
    ],
)
async def test_nul_characters_are_invalid_argument_not_internal(
    tasks: TaskClient, task: task_pb2.Task, request_id: str, field: str
) -> None:
    error = await refused(create(tasks, task, request_id))
    assert violated_fields(error) == [field]


@pytest.mark.parametrize(
    ("local", "zone"),
    [("9999-12-31T23:00", "Pacific/Pago_Pago"), ("0999-06-01T09:00", "UTC"), ("0001-01-01T00:00", "Asia/Tokyo")],
)
async def test_due_years_outside_1000_to_9999_are_invalid_argument(tasks: TaskClient, local: str, zone: str) -> None:
    error = await refused(create(tasks, task_pb2.Task(title="Pay rent", due=zdt(local, zone))))
    assert violated_fields(error) == ["task.due.local_time"]


@pytest.mark.parametrize("zone", ["localtime", "Factory", "posixrules"])
async def test_zones_that_are_no_place_are_invalid_argument(tasks: TaskClient, zone: str) -> None:
    error = await refused(create(tasks, task_pb2.Task(title="Pay rent", due=zdt("2026-12-01T09:00", zone))))
    assert violated_fields(error) == ["task.due.time_zone"]


@pytest.mark.parametrize("rule_id", ["x/1/snooze", "a b", "r\u00e9", "r" * 65, "../r"])
async def test_rule_ids_that_could_collide_with_generated_ids_are_refused(tasks: TaskClient, rule_id: str) -> None:
    rule = task_pb2.ReminderRule(rule_id=rule_id, at=zdt("2026-12-01T09:00"))
    error = await refused(create(tasks, task_pb2.Task(title="Pay rent", reminders=[rule])))
    assert violated_fields(error) == ["task.reminders[0].rule_id"]


async def test_safe_rule_ids_are_kept(tasks: TaskClient) -> None:
    rule = task_pb2.ReminderRule(rule_id="Before-work_1", at=zdt("2026-12-01T09:00"))
    made = (await create(tasks, task_pb2.Task(title="Pay rent", reminders=[rule]))).task
    assert [r.rule_id for r in made.reminders] == ["Before-work_1"]


@pytest.mark.parametrize(
    "offset",
    [
        duration_pb2.Duration(seconds=60, nanos=2_000_000_000),
        duration_pb2.Duration(seconds=60, nanos=-5),
        duration_pb2.Duration(seconds=315_576_000_001),
    ],
)
async def test_durations_out_of_range_are_invalid_argument(tasks: TaskClient, offset: duration_pb2.Duration) -> None:
    task = task_pb2.Task(
        title="Pay rent", due=zdt("2026-12-01T09:00"), reminders=[task_pb2.ReminderRule(before_due=offset)]
    )
    error = await refused(create(tasks, task))
    assert violated_fields(error) == ["task.reminders[0].before_due"]


async def test_a_huge_value_is_not_echoed_whole_in_the_error(tasks: TaskClient) -> None:
    made = (await create(tasks, task_pb2.Task(title="Pay rent"))).task
    huge = "x" * 100_000
    update = tasks.stub.UpdateTask(
        ts.UpdateTaskRequest(task=made, update_mask=field_mask_pb2.FieldMask(paths=[huge])), metadata=tasks.alice
    )
    error = await refused(update)
    assert violated_fields(error) == ["update_mask"] and len(error.details() or "") < 2000
    error = await refused(tasks.stub.GetTask(ts.GetTaskRequest(task_id=huge), metadata=tasks.alice))
    assert violated_fields(error) == ["task_id"] and len(error.details() or "") < 2000


async def test_an_occurrence_created_is_logged_with_its_ids_and_without_its_title(
    tasks: TaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="task_svc.handlers")
    first = (
        await tasks.stub.CreateTask(
            ts.CreateTaskRequest(
                task=task_pb2.Task(
                    title="Water the secret plants",
                    due=zdt("2026-12-07T09:00"),
                    recurrence=task_pb2.Recurrence(rrule="FREQ=WEEKLY;BYDAY=MO"),
                )
            ),
            metadata=tasks.alice,
        )
    ).task
    request = events_pb2.OccurrenceRequested(
        user_id="alice",
        series_id=first.recurrence.series_id,
        occurrence_index=2,
        due=zdt("2026-12-14T09:00"),
        template=first,
        previous_task_id=first.task_id,
    )
    event = envelope.wrap(request, source="/todo/recurrence_svc")
    assert tasks.host.runtime is not None
    await tasks.host.runtime.publish(
        [OutgoingEvent(event.id, "task-events", "alice", event.type, event.SerializeToString())]
    )

    def created() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage() == "occurrence created"]

    [line] = await eventually(created)
    assert line.levelno == logging.INFO
    assert (line.series_id, line.occurrence_index) == (first.recurrence.series_id, 2)  # type: ignore[attr-defined]
    listed = await tasks.stub.ListTasks(ts.ListTasksRequest(series_id=first.recurrence.series_id), metadata=tasks.alice)
    assert line.task_id in {t.task_id for t in listed.tasks} - {first.task_id}  # type: ignore[attr-defined]
    assert "secret" not in str(line.__dict__)
