"""The trace of a user's command follows it into every event it causes, across services."""

from __future__ import annotations

from flow_client import Flow, eventually

from todo_contracts.common.v1 import common_pb2
from todo_contracts.task.v1 import task_pb2
from todo_contracts.task.v1 import task_service_pb2 as ts

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE_ID = TRACEPARENT.split("-")[1]


async def create_recurring(flow: Flow, rule: str, due: common_pb2.ZonedDateTime) -> task_pb2.Task:
    task = task_pb2.Task(title="Water plants", due=due, recurrence=task_pb2.Recurrence(rrule=rule))
    return (await flow.tasks.CreateTask(ts.CreateTaskRequest(task=task), metadata=flow.alice)).task


async def complete_with(flow: Flow, task_id: str, metadata: list[tuple[str, str]]) -> None:
    await flow.tasks.CompleteTask(ts.CompleteTaskRequest(task_id=task_id), metadata=metadata)


async def test_a_completion_and_the_occurrence_it_causes_carry_the_callers_trace(flow: Flow) -> None:
    first = await create_recurring(
        flow, "FREQ=DAILY", common_pb2.ZonedDateTime(local_time="2026-12-07T09:00", time_zone="UTC")
    )
    await complete_with(flow, first.task_id, [*flow.alice, ("traceparent", TRACEPARENT)])

    async def caused() -> list[object]:
        requested = await flow.events("todo.task.v1.OccurrenceRequested")
        created = [e for e in await flow.events("todo.task.v1.TaskCreated") if e.subject != first.task_id]
        return [*requested, *created] if requested and created else []

    await eventually(caused)
    [completed] = [e for e in await flow.events("todo.task.v1.TaskCompleted") if e.subject == first.task_id]
    [requested] = await flow.events("todo.task.v1.OccurrenceRequested")
    [created] = [e for e in await flow.events("todo.task.v1.TaskCreated") if e.subject != first.task_id]
    # task_svc (the RPC) -> recurrence_svc (an event handler) -> task_svc (another event handler)
    for event in (completed, requested, created):
        assert event.traceparent.split("-")[1] == TRACE_ID, event.type
    [created_first] = [e for e in await flow.events("todo.task.v1.TaskCreated") if e.subject == first.task_id]
    assert not created_first.traceparent  # a call without trace context starts none


async def test_a_malformed_traceparent_is_not_passed_on(flow: Flow) -> None:
    first = await create_recurring(
        flow, "FREQ=DAILY", common_pb2.ZonedDateTime(local_time="2026-12-07T09:00", time_zone="UTC")
    )
    await complete_with(flow, first.task_id, [*flow.alice, ("traceparent", "00-not-a-trace-id-01")])
    found = await eventually(lambda: _completed(flow, first.task_id))
    assert not found[0].traceparent


async def _completed(flow: Flow, task_id: str) -> list[object]:
    return [e for e in await flow.events("todo.task.v1.TaskCompleted") if e.subject == task_id]
