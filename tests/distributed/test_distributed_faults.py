"""Faults of the distributed mode, each ending with nothing lost and nothing doubled.

Load: one user creates tasks (through the gateway's gRPC front) with a reminder a few seconds ahead; a create that
fails because something is down is sent again with the same client_request_id, as a client would. After the fault
and the recovery, every created task must have exactly one notification (its reminder fired once and was notified
once) and exactly one TaskCreated, ReminderScheduled and ReminderDue in the activity log; none may be missing.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from distributed_client import StackClient, utc_in
from google.protobuf import duration_pb2
from stack import Child, Stack

from todo_contracts.task.v1 import task_pb2
from todo_contracts.task.v1 import task_service_pb2 as ts
from todo_kit.testing import eventually, topic_records

SETTLE_TIMEOUT = 180.0


class Load:
    """Creates tasks with a reminder lead seconds ahead, one every pause seconds, until stopped."""

    def __init__(self, client: StackClient, lead: float = 5.0, pause: float = 0.15) -> None:
        self.client = client
        self.lead = lead
        self.pause = pause
        self.created: list[str] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def request(self, number: int, lead: float | None = None) -> ts.CreateTaskRequest:
        ahead = timedelta(seconds=60 + (self.lead if lead is None else lead))
        task = task_pb2.Task(
            title=f"load {number}", due=utc_in(ahead),
            reminders=[task_pb2.ReminderRule(before_due=duration_pb2.Duration(seconds=60))],
        )  # fmt: skip
        return ts.CreateTaskRequest(task=task, client_request_id=f"load-{number}")

    async def create(self, lead: float | None = None) -> None:
        reply = await self.client.create(self.request(len(self.created) + 1, lead))
        self.created.append(reply.task.task_id)

    async def _run(self) -> None:
        while not self._stop.is_set():
            await self.create()
            await asyncio.sleep(self.pause)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[StackClient]:
    user = StackClient(stack, f"load-{uuid.uuid4().hex[:8]}")
    try:
        yield user
    finally:
        await user.close()
        # The next test starts on a stack whose every process serves again.
        await asyncio.to_thread(lambda: [stack.wait_serving(child) for child in stack.services])


async def assert_each_task_notified_once(client: StackClient, task_ids: list[str]) -> None:
    """Every task's reminder notified exactly once, and the activity log holds its events once each."""
    assert task_ids, "the load created nothing"

    def per_task(counts: Counter[str]) -> Counter[str]:
        return Counter(reminder_id.split("/", 1)[0] for reminder_id in counts.elements())

    async def all_notified() -> Counter[str] | None:
        counts = per_task(await client.notifications_by_reminder())
        return counts if all(counts[t] for t in task_ids) else None

    await eventually(all_notified, timeout=SETTLE_TIMEOUT, interval=1.0)
    await asyncio.sleep(3)  # a late second delivery would show by now
    counts = await client.notifications_by_reminder()
    assert [rid for rid, n in counts.items() if n != 1] == [], "a reminder notified more than once"
    assert {t: per_task(counts)[t] for t in task_ids} == dict.fromkeys(task_ids, 1)
    assert len(counts) == len(task_ids), "a notification for a task nobody created"

    for task_id in task_ids:

        async def logged(task_id: str = task_id) -> Counter[str] | None:
            activity = await client.activity(task_id)
            return activity if activity["ReminderDue"] else None

        activity = await eventually(logged, timeout=SETTLE_TIMEOUT, interval=0.5)
        assert (activity["TaskCreated"], activity["ReminderScheduled"], activity["ReminderDue"]) == (1, 1, 1), (
            task_id, activity,
        )  # fmt: skip


async def test_killing_each_service_in_turn_during_load_loses_and_doubles_nothing(
    stack: Stack, client: StackClient
) -> None:
    load = Load(client)
    load.start()
    await asyncio.sleep(1)
    victims: list[Child] = []
    for app_id in sorted({child.app_id for child in stack.services}):
        victims.append(stack.replicas_of(app_id)[-1])
    for child in victims:
        child.signal(signal.SIGKILL)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(stack.restart, child)
        await asyncio.sleep(0.5)
    await load.stop()
    await assert_each_task_notified_once(client, load.created)


async def test_a_replica_killed_mid_batch_hands_its_work_to_the_other(stack: Stack, client: StackClient) -> None:
    load = Load(client)
    # Thirty reminders due in the same second: both replicas of reminder_svc fire them and both of notify_svc turn
    # them into notifications when one replica of each is killed.
    for _ in range(30):
        await load.create(lead=6)
    await asyncio.sleep(5.8)
    reminder, notify = stack.replicas_of("reminder_svc")[1], stack.replicas_of("notify_svc")[1]
    reminder.signal(signal.SIGKILL)
    await asyncio.sleep(0.4)
    notify.signal(signal.SIGKILL)
    await asyncio.sleep(8)  # the group rebalances to the replicas left (session timeout 6 s)
    await asyncio.to_thread(stack.restart, reminder)
    await asyncio.to_thread(stack.restart, notify)
    await assert_each_task_notified_once(client, load.created)


async def test_the_broker_stopped_for_20_seconds_loses_and_doubles_nothing(stack: Stack, client: StackClient) -> None:
    load = Load(client, lead=4)
    load.start()
    await asyncio.sleep(1)
    await asyncio.to_thread(stack.stop_kafka)
    # Creates still commit (with their events in the outboxes) while the broker is away.
    await asyncio.sleep(20)
    await asyncio.to_thread(stack.start_kafka)
    await asyncio.sleep(1)
    await load.stop()
    await assert_each_task_notified_once(client, load.created)


async def test_postgresql_restarted_loses_and_doubles_nothing(stack: Stack, client: StackClient) -> None:
    assert stack.postgres is not None
    load = Load(client, lead=4)
    load.start()
    await asyncio.sleep(1)
    await asyncio.to_thread(stack.postgres.stop)
    await asyncio.sleep(5)
    await asyncio.to_thread(stack.postgres.start)
    await asyncio.sleep(2)
    await load.stop()
    await assert_each_task_notified_once(client, load.created)


async def test_a_poison_record_goes_to_the_dead_letter_topic_and_nothing_waits_behind_it(
    stack: Stack, client: StackClient
) -> None:
    from aiokafka import AIOKafkaProducer

    poison = f"not a cloud event {uuid.uuid4()}".encode()
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
    await producer.start()
    try:
        # The user's key: the same partition as the user's next events, which must not wait behind it.
        await producer.send_and_wait("task-events", poison, key=client.user.encode(),
                                     headers=[("content-type", b"application/cloudevents+protobuf")])  # fmt: skip
    finally:
        await producer.stop()
    load = Load(client, lead=3)
    for _ in range(3):
        await load.create()
    await assert_each_task_notified_once(client, load.created)
    dead = await topic_records(stack.bootstrap, "task-events-dlq", lambda r: r.value == poison, timeout=60)
    assert dead and all(record.key == client.user.encode() for record in dead)
