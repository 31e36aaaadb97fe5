"""kafka_host processes end to end on a real Kafka broker and PostgreSQL: publish, consume, jobs, health, SIGTERM."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf import duration_pb2

from todo_contracts import envelope
from todo_contracts.common.v1 import common_pb2
from todo_contracts.task.v1 import task_pb2, task_service_pb2_grpc
from todo_contracts.task.v1 import task_service_pb2 as ts
from todo_kit.auth import issue_token
from todo_kit.config import ConfigError, Settings
from todo_kit.kafka_broker import LocalKafka
from todo_kit.kafka_host import units_named
from todo_kit.runtime.kafka import KafkaSettings
from todo_kit.testing import (
    TEST_SIGNING_KEY,
    EventRecorder,
    KafkaHostProcess,
    eventually,
    kafka_env,
    kafka_settings,
    running_kafka_host,
    topic_records,
)


@pytest.fixture
async def two_services(kafka_broker: LocalKafka, postgres_url_template: str) -> AsyncIterator[dict[str, Any]]:
    """task_svc and reminder_svc, each its own kafka_host process, on their own databases."""
    folder = Path(tempfile.mkdtemp(prefix="todo-kh-"))
    prefix = f"kh{os.getpid()}_{uuid.uuid4().hex[:6]}_"
    env = kafka_env(
        kafka_broker,
        TODO_DATABASE_URL=postgres_url_template,
        TODO_DATABASE_PREFIX=prefix,
        TODO_JWT_SECRET=TEST_SIGNING_KEY,
        TODO_LOG_LEVEL="WARNING",
    )
    task = KafkaHostProcess(["task_svc"], env, folder / "task.log")
    env = {**env, "TODO_SERVICE_ADDRESSES": f"task_svc={task.address}"}
    reminder = KafkaHostProcess(["reminder_svc"], env, folder / "reminder.log")
    task.start()
    reminder.start()
    try:
        await asyncio.gather(task.wait_serving(), reminder.wait_serving())
        yield {"task": task, "reminder": reminder, "prefix": prefix, "broker": kafka_broker}
    finally:
        task.kill()
        reminder.kill()


async def test_a_task_with_a_reminder_goes_through_two_kafka_hosts_and_the_reminder_fires_once(
    two_services: dict[str, Any], postgres_url_template: str
) -> None:
    task_host: KafkaHostProcess = two_services["task"]
    broker: LocalKafka = two_services["broker"]
    user = f"user-{uuid.uuid4().hex[:8]}"
    token = [("authorization", f"Bearer {issue_token(TEST_SIGNING_KEY, user)}")]
    due = datetime.now(UTC) + timedelta(seconds=4)
    async with grpc.aio.insecure_channel(task_host.address) as chan:
        stub = task_service_pb2_grpc.TaskServiceStub(chan)
        created = await stub.CreateTask(
            ts.CreateTaskRequest(
                task=task_pb2.Task(
                    title="Pay rent",
                    due=common_pb2.ZonedDateTime(local_time=due.strftime("%Y-%m-%dT%H:%M:%S"), time_zone="UTC"),
                    reminders=[task_pb2.ReminderRule(before_due=duration_pb2.Duration(seconds=1))],
                )
            ),
            metadata=token,
        )
    task_id = created.task.task_id

    # The record on task-events is exactly the outbox's bytes, keyed by the user, with the content-type header.
    records = await topic_records(broker.bootstrap, "task-events", lambda r: r.key == user.encode(), count=1)
    record = records[0]
    conn = await asyncpg.connect(
        postgres_url_template.format(database=two_services["prefix"] + "todo_task").replace("+asyncpg", "")
    )

    # The relay marks the row once the broker acknowledged it: a consumer may see the record a moment earlier.
    async def published_row() -> Any:
        row = await conn.fetchrow("SELECT payload, published_at FROM outbox WHERE event_id = $1",
                                  envelope.decode(record.value).id)  # fmt: skip
        return row if row is not None and row["published_at"] is not None else None

    try:
        row = await eventually(published_row, timeout=10, interval=0.05)
    finally:
        await conn.close()
    assert record.value == bytes(row["payload"])
    assert dict(record.headers) == {"content-type": b"application/cloudevents+protobuf"}

    # reminder_svc consumed it, planned the reminder as a job, and the job fired once.
    def due_of_task(r: Any) -> bool:
        event = envelope.decode(r.value)
        return event.type == "todo.reminder.v1.ReminderDue" and event.subject == task_id

    fired = await topic_records(broker.bootstrap, "reminder-events", due_of_task, count=1, timeout=30)
    assert envelope.decode(fired[0].value).time is not None
    await asyncio.sleep(1.0)  # room for a wrong second firing
    again = await topic_records(broker.bootstrap, "reminder-events", due_of_task, count=1, timeout=5)
    assert len(again) == 1


async def test_a_kafka_host_serves_health_and_stops_cleanly_on_sigterm(two_services: dict[str, Any]) -> None:
    reminder: KafkaHostProcess = two_services["reminder"]
    task: KafkaHostProcess = two_services["task"]
    assert reminder.stop() == 0, reminder.log_tail()
    assert task.stop() == 0, task.log_tail()


async def test_an_in_process_kafka_host_hands_its_units_events_to_an_observer(
    kafka_broker: LocalKafka, kit_settings: Settings
) -> None:
    from task_svc.unit import unit as task_unit

    settings = dataclasses.replace(kit_settings, runtime="kafka", jwt_secret=TEST_SIGNING_KEY)
    recorder = EventRecorder(["task-events"])
    user = f"user-{uuid.uuid4().hex[:8]}"
    async with running_kafka_host(settings, [task_unit], kafka_settings(kafka_broker), recorder=recorder) as host:
        async with grpc.aio.insecure_channel(host.address) as chan:
            stub = task_service_pb2_grpc.TaskServiceStub(chan)
            token = [("authorization", f"Bearer {issue_token(TEST_SIGNING_KEY, user)}")]
            await stub.CreateTask(ts.CreateTaskRequest(task=task_pb2.Task(title="Call mum")), metadata=token)
        created = await eventually(
            lambda: [e for e in recorder.events("todo.task.v1.TaskCreated") if e.partition_key == user]
        )
    assert len(created) == 1


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "TODO_KAFKA_BOOTSTRAP is required"),
        ({"TODO_KAFKA_BOOTSTRAP": "nohostport"}, "TODO_KAFKA_BOOTSTRAP must be host:port"),
        ({"TODO_SERVICE_ADDRESSES": "task_svc=127.0.0.1"}, "TODO_SERVICE_ADDRESSES must be app_id=host:port"),
        ({"TODO_KAFKA_REPLICATION_FACTOR": "0"}, "TODO_KAFKA_REPLICATION_FACTOR must be between 1 and 16"),
        ({"TODO_KAFKA_CREATE_TOPICS": "perhaps"}, "TODO_KAFKA_CREATE_TOPICS must be true or false"),
        ({"TODO_KAFKA_HEARTBEAT_MS": "5000"}, "TODO_KAFKA_HEARTBEAT_MS must be at most a third"),
    ],
)
def test_a_bad_kafka_setting_stops_the_process_naming_it(env: dict[str, str], message: str) -> None:
    base = {"TODO_KAFKA_BOOTSTRAP": "127.0.0.1:9092"} if "TODO_KAFKA_BOOTSTRAP" not in env and env else {}
    with pytest.raises(ConfigError, match=message):
        KafkaSettings.from_env({**base, **env})


def test_service_addresses_are_read_per_app_id() -> None:
    settings = KafkaSettings.from_env(
        {"TODO_KAFKA_BOOTSTRAP": "a:1,b:2", "TODO_SERVICE_ADDRESSES": " task_svc=h1:50061, reminder_svc=h2:50062,"}
    )
    assert settings.service_addresses == {"task_svc": "h1:50061", "reminder_svc": "h2:50062"}


def test_kafka_host_refuses_an_app_id_that_is_not_installed() -> None:
    with pytest.raises(ConfigError, match="no installed service unit named nobody_svc"):
        units_named(["task_svc", "nobody_svc"])
