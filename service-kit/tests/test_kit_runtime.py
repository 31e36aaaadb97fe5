"""The embedded runtime against a real PostgreSQL: jobs, event delivery, retries and dead letters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from todo_contracts import envelope
from todo_contracts.envelope import DecodedEvent
from todo_contracts.task.v1 import events_pb2, task_pb2
from todo_kit.config import Settings
from todo_kit.db import Database, ensure_database
from todo_kit.messaging import OutgoingEvent
from todo_kit.runtime.embedded import EmbeddedRuntime, dead_letters
from todo_kit.runtime.port import Subscription
from todo_kit.testing import eventually


@pytest.fixture
async def runtime_db(kit_settings: Settings) -> AsyncIterator[Database]:
    name = kit_settings.database_prefix + "runtime"
    await ensure_database(kit_settings.database_url.format(database="postgres"), name)
    db = Database(kit_settings.database_url.format(database=name))
    yield db
    await db.close()


async def new_runtime(db: Database) -> EmbeddedRuntime:
    runtime = EmbeddedRuntime(db, server_address="127.0.0.1:1")
    await runtime.create_schema()
    return runtime


async def test_job_due_in_200_ms_fires_once_and_not_early(runtime_db: Database) -> None:
    runtime = await new_runtime(runtime_db)
    fired: list[tuple[str, bytes, datetime]] = []

    async def handler(name: str, data: bytes) -> None:
        fired.append((name, data, datetime.now(UTC)))

    runtime.add_job_handlers("svc", {"remind/": handler})
    await runtime.start()
    try:
        due = datetime.now(UTC) + timedelta(milliseconds=200)
        await runtime.schedule_job("svc", "remind/1", due, b"payload")
        await eventually(lambda: fired)
        await asyncio.sleep(0.5)  # room for a wrong second firing
    finally:
        await runtime.stop()
    assert [(n, d) for n, d, _ in fired] == [("remind/1", b"payload")]
    assert fired[0][2] >= due


async def test_job_due_while_down_fires_after_restart(runtime_db: Database) -> None:
    first = await new_runtime(runtime_db)
    await first.start()
    await first.schedule_job("svc", "remind/late", datetime.now(UTC) + timedelta(milliseconds=300), b"x")
    await first.stop()  # the process is gone before the job is due
    await asyncio.sleep(0.6)
    fired: list[str] = []

    async def handler(name: str, data: bytes) -> None:
        fired.append(name)

    second = await new_runtime(runtime_db)
    second.add_job_handlers("svc", {"remind/": handler})
    await second.start()
    try:
        await eventually(lambda: fired)
        await asyncio.sleep(0.3)
    finally:
        await second.stop()
    assert fired == ["remind/late"]


async def test_rescheduling_replaces_and_deleting_cancels(runtime_db: Database) -> None:
    runtime = await new_runtime(runtime_db)
    fired: list[bytes] = []

    async def handler(name: str, data: bytes) -> None:
        fired.append(data)

    runtime.add_job_handlers("svc", {"": handler})
    await runtime.start()
    try:
        soon = datetime.now(UTC) + timedelta(milliseconds=150)
        await runtime.schedule_job("svc", "a", soon, b"old")
        await runtime.schedule_job("svc", "a", soon + timedelta(milliseconds=100), b"new")
        await runtime.schedule_job("svc", "b", soon, b"cancelled")
        await runtime.delete_job("svc", "b")
        await eventually(lambda: fired)
        await asyncio.sleep(0.4)
    finally:
        await runtime.stop()
    assert fired == [b"new"]


async def test_failing_job_fires_again_until_it_succeeds(runtime_db: Database) -> None:
    runtime = await new_runtime(runtime_db)
    attempts: list[int] = []

    async def flaky(name: str, data: bytes) -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("downstream unavailable")

    runtime.add_job_handlers("svc", {"": flaky})
    await runtime.start()
    try:
        await runtime.schedule_job("svc", "j", datetime.now(UTC), b"")
        await eventually(lambda: len(attempts) >= 3)
        await asyncio.sleep(0.5)
    finally:
        await runtime.stop()
    assert len(attempts) == 3


def task_event(user: str, title: str) -> OutgoingEvent:
    payload = events_pb2.TaskCreated(user_id=user, task=task_pb2.Task(task_id=title, title=title))
    ce = envelope.wrap(payload, source="/test")
    return OutgoingEvent(ce.id, "task-events", user, ce.type, ce.SerializeToString())


async def test_events_are_delivered_in_order_and_survive_restart(runtime_db: Database) -> None:
    received: list[str] = []

    async def handler(event: DecodedEvent) -> None:
        assert isinstance(event.message, events_pb2.TaskCreated)
        received.append(event.message.task.title)

    runtime = await new_runtime(runtime_db)
    runtime.add_subscription("consumer", Subscription("task-events", handler))
    await runtime.start()
    await runtime.publish([task_event("alice", f"t{i}") for i in range(50)])
    await eventually(lambda: len(received) == 50)
    await runtime.stop()
    # Published while the consumer is down: delivered when it is back, after the first 50.
    publisher = await new_runtime(runtime_db)
    await publisher.publish([task_event("alice", f"t{i}") for i in range(50, 60)])
    again = await new_runtime(runtime_db)
    again.add_subscription("consumer", Subscription("task-events", handler))
    await again.start()
    try:
        await eventually(lambda: len(received) == 60)
        await asyncio.sleep(0.2)
    finally:
        await again.stop()
    assert received == [f"t{i}" for i in range(60)]


async def test_undecodable_event_is_dead_lettered_and_blocks_nothing(runtime_db: Database) -> None:
    received: list[str] = []

    async def handler(event: DecodedEvent) -> None:
        received.append(event.id)

    runtime = await new_runtime(runtime_db)
    runtime.add_subscription("consumer", Subscription("task-events", handler))
    await runtime.start()
    good = task_event("alice", "after the poison")
    try:
        await runtime.publish([OutgoingEvent("poison-1", "task-events", "alice", "?", b"\xffnot a cloudevent"), good])
        await eventually(lambda: received)
    finally:
        await runtime.stop()
    assert received == [good.event_id]
    async with runtime_db.engine.connect() as conn:
        rows = (await conn.execute(sa.select(dead_letters.c.event_id, dead_letters.c.error))).all()
    assert [r.event_id for r in rows] == ["poison-1"]
    assert "undecodable" in rows[0].error


async def test_handler_that_keeps_failing_is_dead_lettered_after_retries(
    runtime_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("todo_kit.runtime.embedded.RETRY_DELAYS", (0.01, 0.01))
    calls: list[str] = []

    async def handler(event: DecodedEvent) -> None:
        calls.append(event.id)
        assert isinstance(event.message, events_pb2.TaskCreated)
        if event.message.task.title == "bad":
            raise ValueError("cannot handle this one")

    runtime = await new_runtime(runtime_db)
    runtime.add_subscription("consumer", Subscription("task-events", handler))
    await runtime.start()
    bad, good = task_event("alice", "bad"), task_event("alice", "good")
    try:
        await runtime.publish([bad, good])
        await eventually(lambda: good.event_id in calls)
    finally:
        await runtime.stop()
    assert calls == [bad.event_id] * 3 + [good.event_id]
    async with runtime_db.engine.connect() as conn:
        errors = (await conn.execute(sa.select(dead_letters.c.event_id, dead_letters.c.error))).all()
    assert [(e.event_id, "cannot handle" in e.error) for e in errors] == [(bad.event_id, True)]
