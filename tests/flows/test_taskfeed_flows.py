"""The live feed of task changes across services: the recurrence engine's next occurrence reaches the user's open
stream as a created task, and no other user's."""

from __future__ import annotations

import asyncio

import grpc
from flow_client import Flow

from todo_contracts.common.v1 import common_pb2
from todo_contracts.task.v1 import task_pb2
from todo_contracts.task.v1 import task_service_pb2 as ts


async def next_change(call: grpc.aio.UnaryStreamCall) -> ts.TaskChange:
    """The next change of an open StreamTaskChanges call, passing over heartbeats."""
    while True:
        async with asyncio.timeout(30):  # a guard against a hang, not a measure of speed
            message = await call.read()
        assert message is not grpc.aio.EOF, "the stream ended"
        assert isinstance(message, ts.StreamTaskChangesResponse)
        if message.HasField("change"):
            return message.change


async def test_the_next_occurrence_of_a_completed_recurring_task_reaches_the_stream_as_created(flow: Flow) -> None:
    alice = flow.tasks.StreamTaskChanges(ts.StreamTaskChangesRequest(), metadata=flow.alice)
    bob = flow.tasks.StreamTaskChanges(ts.StreamTaskChangesRequest(), metadata=flow.bob)
    for call in (alice, bob):
        assert (await call.read()).HasField("heartbeat")
    due = common_pb2.ZonedDateTime(local_time="2026-12-07T09:00", time_zone="Europe/Berlin")
    request = ts.CreateTaskRequest(
        task=task_pb2.Task(title="Water plants", due=due, recurrence=task_pb2.Recurrence(rrule="FREQ=WEEKLY;BYDAY=MO"))
    )
    first = (await flow.tasks.CreateTask(request, metadata=flow.alice)).task
    await flow.tasks.CompleteTask(ts.CompleteTaskRequest(task_id=first.task_id), metadata=flow.alice)
    created, completed, occurrence = [await next_change(alice) for _ in range(3)]
    assert (created.kind, created.task.task_id) == (ts.TASK_CHANGE_KIND_CREATED, first.task_id)
    assert (completed.kind, completed.task.task_id) == (ts.TASK_CHANGE_KIND_COMPLETED, first.task_id)
    # Made by the recurrence engine through OccurrenceRequested, not by a call of the user's.
    assert occurrence.kind == ts.TASK_CHANGE_KIND_CREATED and occurrence.task.task_id != first.task_id
    assert occurrence.task.recurrence.series_id == first.recurrence.series_id
    assert occurrence.task.recurrence.occurrence_index == 2
    assert occurrence.task.due.local_time == "2026-12-14T09:00:00"
    assert occurrence.task.status == task_pb2.TASK_STATUS_OPEN
    # Bob's stream carries bob's change first: none of alice's came to it.
    bobs = (await flow.tasks.CreateTask(ts.CreateTaskRequest(task=task_pb2.Task(title="Walk")), metadata=flow.bob)).task
    assert (await next_change(bob)).task.task_id == bobs.task_id
    alice.cancel()
    bob.cancel()
