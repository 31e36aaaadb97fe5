"""End-to-end flows across processes: every service its own process, events on Kafka, calls through the gateway.

create -> reminder -> notification (gRPC front), complete -> next occurrence (REST), and the activity log of both,
each effect exactly once.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from distributed_client import StackClient, utc_in
from google.protobuf import duration_pb2
from stack import Stack

from todo_contracts.task.v1 import task_pb2
from todo_contracts.task.v1 import task_service_pb2 as ts
from todo_kit.testing import eventually


async def test_a_task_created_through_the_grpc_front_reminds_and_notifies_once(stack: Stack) -> None:
    alice = StackClient(stack, f"alice-{uuid.uuid4().hex[:8]}")
    try:
        task = task_pb2.Task(
            title="Call the bank", due=utc_in(timedelta(seconds=64)),
            reminders=[task_pb2.ReminderRule(before_due=duration_pb2.Duration(seconds=60))],
        )  # fmt: skip
        created = await alice.create(ts.CreateTaskRequest(task=task, client_request_id="bank-1"))
        task_id = created.task.task_id

        notified = await eventually(alice.notifications_by_reminder, timeout=60, interval=0.5)
        assert list(notified.values()) == [1]
        assert next(iter(notified)).startswith(task_id)
        # The audit log sees the task's and the reminder's events, each once.
        activity = await eventually(
            lambda: _when(alice.activity(task_id), lambda a: a["ReminderDue"] >= 1), timeout=30, interval=0.5
        )
        assert activity["TaskCreated"] == 1
        assert activity["ReminderScheduled"] == 1
        assert activity["ReminderDue"] == 1
        await asyncio.sleep(2)  # a second delivery (another replica, a redelivery) would show by now
        assert list((await alice.notifications_by_reminder()).values()) == [1]
    finally:
        await alice.close()


async def test_completing_a_recurring_task_through_rest_creates_the_next_occurrence_once(stack: Stack) -> None:
    bob = StackClient(stack, f"bob-{uuid.uuid4().hex[:8]}")
    try:
        due = utc_in(timedelta(hours=-1))
        body = {"task": {"title": "Water the roses", "due": {"local_time": due.local_time, "time_zone": "UTC"},
                         "recurrence": {"rrule": "FREQ=DAILY"}}}  # fmt: skip
        created = await asyncio.to_thread(bob.rest, "POST", "/v1/tasks", body)
        first = created["task"]
        await asyncio.to_thread(bob.rest, "POST", f"/v1/tasks/{first['task_id']}:complete", {})

        async def next_occurrence() -> list[dict[str, object]]:
            listed = await asyncio.to_thread(bob.rest, "GET", "/v1/tasks?query=roses")
            return [t for t in listed["tasks"] if t["task_id"] != first["task_id"]]

        occurrences = await eventually(next_occurrence, timeout=60, interval=0.5)
        assert len(occurrences) == 1
        assert occurrences[0]["status"] == "TASK_STATUS_OPEN"
        assert occurrences[0]["recurrence"]["series_id"] == first["recurrence"]["series_id"]  # type: ignore[index]
        assert occurrences[0]["recurrence"]["occurrence_index"] == 2  # type: ignore[index]
        activity = await eventually(
            lambda: _when(bob.activity(first["task_id"]), lambda a: a["TaskCompleted"] >= 1), timeout=30, interval=0.5
        )
        assert activity["TaskCreated"] == 1
        assert activity["TaskCompleted"] == 1
        await asyncio.sleep(2)
        assert len(await next_occurrence()) == 1
    finally:
        await bob.close()


async def _when(counts_coro, accept):  # type: ignore[no-untyped-def]
    counts = await counts_coro
    return counts if accept(counts) else None
