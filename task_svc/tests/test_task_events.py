"""Task events through the outbox, and OccurrenceRequested through the inbox, on a real host."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc
import pytest
import sqlalchemy as sa

from task_svc.unit import unit as task_unit
from todo_contracts import envelope
from todo_contracts.common.v1 import common_pb2
from todo_contracts.task.v1 import events_pb2, task_pb2, task_service_pb2_grpc
from todo_contracts.task.v1 import task_service_pb2 as ts
from todo_kit.config import Settings
from todo_kit.embedded_host import EmbeddedHost
from todo_kit.messaging import OutgoingEvent, outbox_table, processed_events_table
from todo_kit.runtime.embedded import event_log
from todo_kit.testing import bearer, eventually, running_host


async def logged_events(host: EmbeddedHost) -> list[envelope.DecodedEvent]:
    async with host.databases["todo_runtime"].engine.connect() as conn:
        rows = (await conn.execute(sa.select(event_log.c.payload).order_by(event_log.c.seq))).all()
    return [envelope.decode(bytes(r.payload)) for r in rows]


async def wait_for_events(host: EmbeddedHost, count: int, timeout: float = 10.0) -> list[envelope.DecodedEvent]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        events = await logged_events(host)
        if len(events) >= count or asyncio.get_running_loop().time() > deadline:
            return events
        await asyncio.sleep(0.02)


async def unpublished(host: EmbeddedHost) -> int:
    async with host.databases["todo_task"].engine.connect() as conn:
        count = await conn.scalar(
            sa.select(sa.func.count()).select_from(outbox_table).where(outbox_table.c.published_at.is_(None))
        )
    return int(count or 0)


async def test_every_change_publishes_its_event_in_order(kit_settings: Settings) -> None:
    md = bearer(kit_settings, "alice")
    async with running_host(kit_settings, [task_unit]) as host, grpc.aio.insecure_channel(host.address) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        task = (await stub.CreateTask(ts.CreateTaskRequest(task=task_pb2.Task(title="Pay rent")), metadata=md)).task
        await stub.UpdateTask(
            ts.UpdateTaskRequest(
                task=task_pb2.Task(task_id=task.task_id, title="Pay the rent"), update_mask={"paths": ["title"]}
            ),
            metadata=md,
        )
        await stub.CompleteTask(ts.CompleteTaskRequest(task_id=task.task_id), metadata=md)
        await stub.ReopenTask(ts.ReopenTaskRequest(task_id=task.task_id), metadata=md)
        await stub.DeleteTask(ts.DeleteTaskRequest(task_id=task.task_id), metadata=md)
        events = await wait_for_events(host, 5)
    assert [e.type.rsplit(".", 1)[1] for e in events] == [
        "TaskCreated", "TaskUpdated", "TaskCompleted", "TaskReopened", "TaskDeleted",
    ]  # fmt: skip
    assert {e.subject for e in events} == {task.task_id}
    assert {e.partition_key for e in events} == {"alice"}
    updated = events[1].message
    assert isinstance(updated, events_pb2.TaskUpdated)
    assert list(updated.changed_fields) == ["title"] and updated.previous.title == "Pay rent"


class CrashingPublisher:
    """Stands for a process that dies at publish time: nothing gets out."""

    async def publish(self, events: Sequence[OutgoingEvent]) -> None:
        raise ConnectionError("process killed before publishing")


async def test_crash_between_commit_and_publish_still_publishes_once(
    kit_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    md = bearer(kit_settings, "alice")
    from todo_kit import hosting as embedded_host

    real_relay = embedded_host.OutboxRelay
    monkeypatch.setattr(
        embedded_host, "OutboxRelay", lambda db, outbox, _runtime: real_relay(db, outbox, CrashingPublisher())
    )
    async with running_host(kit_settings, [task_unit]) as host, grpc.aio.insecure_channel(host.address) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        created = [
            (await stub.CreateTask(ts.CreateTaskRequest(task=task_pb2.Task(title=f"T{i}")), metadata=md)).task
            for i in range(5)
        ]
        assert await unpublished(host) == 5
        assert await logged_events(host) == []
    monkeypatch.setattr(embedded_host, "OutboxRelay", real_relay)
    async with running_host(kit_settings, [task_unit]) as host:
        events = await wait_for_events(host, 5)
        await asyncio.sleep(0.3)
        events = await logged_events(host)
        assert await unpublished(host) == 0
    assert [e.message.task.task_id for e in events] == [t.task_id for t in created]  # type: ignore[attr-defined]
    assert len({e.id for e in events}) == 5


async def wait_processed(host: EmbeddedHost, event_ids: set[str]) -> None:
    """Waits until the task service's inbox holds every one of event_ids."""

    async def done() -> bool:
        async with host.databases["todo_task"].engine.connect() as conn:
            seen = set((await conn.execute(sa.select(processed_events_table.c.event_id))).scalars())
        return event_ids <= seen

    await eventually(done)


def occurrence_request(template: task_pb2.Task, index: int, local: str) -> events_pb2.OccurrenceRequested:
    return events_pb2.OccurrenceRequested(
        user_id="alice",
        series_id=template.recurrence.series_id,
        occurrence_index=index,
        due=common_pb2.ZonedDateTime(local_time=local, time_zone=template.due.time_zone),
        template=template,
        previous_task_id=template.task_id,
    )


def outgoing(event: events_pb2.OccurrenceRequested, event_id: str | None = None) -> OutgoingEvent:
    ce = envelope.wrap(event, source="/todo/recurrence_svc", event_id=event_id)
    return OutgoingEvent(ce.id, "task-events", "alice", ce.type, ce.SerializeToString())


async def test_occurrence_is_created_once_however_often_it_is_requested(kit_settings: Settings) -> None:
    md = bearer(kit_settings, "alice")
    async with running_host(kit_settings, [task_unit]) as host, grpc.aio.insecure_channel(host.address) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        first = (
            await stub.CreateTask(
                ts.CreateTaskRequest(
                    task=task_pb2.Task(
                        title="Water plants",
                        tags=["home"],
                        due=common_pb2.ZonedDateTime(local_time="2026-12-07T09:00", time_zone="Europe/Berlin"),
                        recurrence=task_pb2.Recurrence(rrule="FREQ=WEEKLY;BYDAY=MO"),
                    )
                ),
                metadata=md,
            )
        ).task
        request = occurrence_request(first, 2, "2026-12-14T09:00")
        redelivered = outgoing(request, event_id="occ-2")
        assert host.runtime is not None
        # The same event twice (redelivery) and another event for the same occurrence.
        another = outgoing(request)
        await host.runtime.publish([redelivered, redelivered, another])
        await wait_processed(host, {redelivered.event_id, another.event_id})
        listed = await stub.ListTasks(ts.ListTasksRequest(series_id=first.recurrence.series_id), metadata=md)
        # 1 TaskCreated, 3 OccurrenceRequested, then the occurrence's TaskCreated.
        events = await wait_for_events(host, 5)
    assert listed.total_size == 2
    second = next(t for t in listed.tasks if t.task_id != first.task_id)
    assert second.recurrence.occurrence_index == 2
    assert second.recurrence.series_start == first.recurrence.series_start
    assert second.due.local_time == "2026-12-14T09:00:00" and list(second.tags) == ["home"]
    created = [e for e in events if e.type == "todo.task.v1.TaskCreated"]
    assert len(created) == 2


async def test_deleting_with_end_series_stops_further_occurrences(kit_settings: Settings) -> None:
    md = bearer(kit_settings, "alice")
    async with running_host(kit_settings, [task_unit]) as host, grpc.aio.insecure_channel(host.address) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        first = (
            await stub.CreateTask(
                ts.CreateTaskRequest(
                    task=task_pb2.Task(
                        title="Standup",
                        due=common_pb2.ZonedDateTime(local_time="2026-12-07T09:00", time_zone="UTC"),
                        recurrence=task_pb2.Recurrence(rrule="FREQ=DAILY"),
                    )
                ),
                metadata=md,
            )
        ).task
        await stub.DeleteTask(ts.DeleteTaskRequest(task_id=first.task_id, end_series=True), metadata=md)
        assert host.runtime is not None
        late = outgoing(occurrence_request(first, 2, "2026-12-08T09:00"))
        await host.runtime.publish([late])
        await wait_processed(host, {late.event_id})
        listed = await stub.ListTasks(ts.ListTasksRequest(), metadata=md)
    assert listed.total_size == 0


async def test_old_events_are_pruned_but_not_before_every_consumer_passed_them(kit_settings: Settings) -> None:
    md = bearer(kit_settings, "alice")
    async with running_host(kit_settings, [task_unit]) as host, grpc.aio.insecure_channel(host.address) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        for i in range(3):
            await stub.CreateTask(ts.CreateTaskRequest(task=task_pb2.Task(title=f"T{i}")), metadata=md)
        events = await wait_for_events(host, 3)
        assert len(events) == 3
        await wait_processed_position(host, 3)
        runtime_db, task_db = host.databases["todo_runtime"], host.databases["todo_task"]
        async with runtime_db.engine.begin() as conn:
            await conn.execute(sa.text("UPDATE event_log SET published_at = now() - interval '8 days'"))
            # As if the task service had not yet passed the newest event.
            max_seq = await conn.scalar(sa.text("SELECT max(seq) FROM event_log"))
            await conn.execute(sa.text("UPDATE consumer_positions SET position = :p"), {"p": max_seq - 1})
        async with task_db.engine.begin() as conn:
            await conn.execute(sa.text("UPDATE outbox SET published_at = now() - interval '8 days'"))
            await conn.execute(
                sa.text(
                    "INSERT INTO processed_events (consumer, event_id, processed_at) VALUES "
                    "('task_svc', 'old', now() - interval '20 days'), ('task_svc', 'recent', now())"
                )
            )
        counts = await host.prune()
        assert counts["event_log"] == 2
        assert counts["task_svc.outbox"] == 3
        assert counts["task_svc.processed_events"] == 1
        async with task_db.engine.connect() as conn:
            kept = (await conn.execute(sa.text("SELECT event_id FROM processed_events"))).scalars().all()
        assert kept == ["recent"]


async def wait_processed_position(host: EmbeddedHost, position: int) -> None:
    async def reached() -> bool:
        async with host.databases["todo_runtime"].engine.connect() as conn:
            found = await conn.scalar(sa.text("SELECT max(position) FROM consumer_positions"))
        return (found or 0) >= position

    await eventually(reached)


async def test_client_request_ids_are_forgotten_after_the_retention_period(kit_settings: Settings) -> None:
    md = bearer(kit_settings, "alice")
    async with running_host(kit_settings, [task_unit]) as host, grpc.aio.insecure_channel(host.address) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)

        async def create(request_id: str) -> str:
            request = ts.CreateTaskRequest(task=task_pb2.Task(title="Pay rent"), client_request_id=request_id)
            return (await stub.CreateTask(request, metadata=md)).task.task_id

        old, recent = await create("old"), await create("recent")
        async with host.databases["todo_task"].engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "UPDATE create_requests SET created_at = now() - interval '8 days' WHERE client_request_id = :r"
                ),
                {"r": "old"},
            )
        counts = await host.prune()
        assert counts["task_svc.create_requests"] == 1
        assert await create("recent") == recent  # still remembered: a retry returns the same task
        assert await create("old") != old  # forgotten: the id may be used again
