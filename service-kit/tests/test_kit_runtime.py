"""The embedded runtime against a real PostgreSQL: jobs, event delivery, retries and dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from todo_contracts import envelope
from todo_contracts.envelope import DecodedEvent
from todo_contracts.task.v1 import events_pb2, task_pb2
from todo_kit.config import Settings
from todo_kit.db import Database, ensure_database
from todo_kit.messaging import OutgoingEvent
from todo_kit.runtime.embedded import EmbeddedRuntime, dead_letters, jobs
from todo_kit.runtime.port import DropEvent, FailurePolicy, HandlerOutcome, JobExists, JobOptions, Subscription
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
        await runtime.for_unit("svc").schedule_job("remind/1", due, b"payload")
        await eventually(lambda: fired)
        await asyncio.sleep(0.5)  # room for a wrong second firing
    finally:
        await runtime.stop()
    assert [(n, d) for n, d, _ in fired] == [("remind/1", b"payload")]
    assert fired[0][2] >= due


async def test_job_due_while_down_fires_after_restart(runtime_db: Database) -> None:
    first = await new_runtime(runtime_db)
    await first.start()
    await first.for_unit("svc").schedule_job("remind/late", datetime.now(UTC) + timedelta(milliseconds=300), b"x")
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
        await runtime.for_unit("svc").schedule_job("a", soon, b"old")
        await runtime.for_unit("svc").schedule_job("a", soon + timedelta(milliseconds=100), b"new")
        await runtime.for_unit("svc").schedule_job("b", soon, b"cancelled")
        await runtime.for_unit("svc").delete_job("b")
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
        await runtime.for_unit("svc").schedule_job("j", datetime.now(UTC), b"")
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


async def test_handler_that_keeps_failing_is_dead_lettered_when_its_retry_time_is_over(runtime_db: Database) -> None:
    calls: list[str] = []

    async def handler(event: DecodedEvent) -> None:
        calls.append(event.id)
        assert isinstance(event.message, events_pb2.TaskCreated)
        if event.message.task.title == "bad":
            raise ValueError("cannot handle this one")

    runtime = EmbeddedRuntime(runtime_db, server_address="127.0.0.1:1", retry_for=0.3, max_retry_delay=0.05)
    await runtime.create_schema()
    runtime.add_subscription("consumer", Subscription("task-events", handler))
    await runtime.start()
    bad, good = task_event("alice", "bad"), task_event("alice", "good")
    try:
        await runtime.publish([bad, good])
        await eventually(lambda: good.event_id in calls)
    finally:
        await runtime.stop()
    assert calls.count(bad.event_id) >= 3 and calls[-1] == good.event_id
    async with runtime_db.engine.connect() as conn:
        errors = (await conn.execute(sa.select(dead_letters.c.event_id, dead_letters.c.error))).all()
    assert [(e.event_id, "cannot handle" in e.error) for e in errors] == [(bad.event_id, True)]


async def test_a_handler_failing_for_longer_than_the_old_retry_window_is_delivered_not_dead_lettered(
    runtime_db: Database,
) -> None:
    # A dependency down for a while (a database restart) must delay events, never lose them: the
    # old dispatcher gave up after about 8 s of failures.
    failing_until = asyncio.get_running_loop().time() + 9.0
    calls: list[float] = []
    handled: list[str] = []

    async def handler(event: DecodedEvent) -> None:
        now = asyncio.get_running_loop().time()
        calls.append(now)
        if now < failing_until:
            raise ConnectionError("database is restarting")
        handled.append(event.id)

    runtime = EmbeddedRuntime(runtime_db, server_address="127.0.0.1:1", max_retry_delay=1.0)
    await runtime.create_schema()
    runtime.add_subscription("consumer", Subscription("task-events", handler))
    await runtime.start()
    event = task_event("alice", "during the outage")
    try:
        await runtime.publish([event])
        await eventually(lambda: handled, timeout=20)
    finally:
        await runtime.stop()
    assert handled == [event.event_id]
    async with runtime_db.engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(dead_letters)) == 0


@pytest.mark.parametrize("how", ["raise DropEvent", "return DROP"])
async def test_an_event_its_handler_drops_is_dead_lettered_at_once_with_a_log_line(
    runtime_db: Database, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    async def handler(event: DecodedEvent) -> HandlerOutcome | None:
        calls.append(event.id)
        assert isinstance(event.message, events_pb2.TaskCreated)
        if event.message.task.title == "impossible":
            if how == "raise DropEvent":
                raise DropEvent("the rule can never be evaluated")
            return HandlerOutcome.DROP
        return None

    runtime = await new_runtime(runtime_db)
    runtime.add_subscription("consumer", Subscription("task-events", handler))
    await runtime.start()
    bad, good = task_event("alice", "impossible"), task_event("alice", "fine")
    try:
        await runtime.publish([bad, good])
        await eventually(lambda: good.event_id in calls)
    finally:
        await runtime.stop()
    assert calls == [bad.event_id, good.event_id]  # no retry of the dropped one
    async with runtime_db.engine.connect() as conn:
        rows = (await conn.execute(sa.select(dead_letters.c.event_id, dead_letters.c.event_type))).all()
    assert [(r.event_id, r.event_type) for r in rows] == [(bad.event_id, bad.event_type)]
    assert any(r.getMessage() == "event dead-lettered" and r.levelname == "ERROR" for r in caplog.records)


async def test_a_handler_asking_to_retry_gets_the_event_again(runtime_db: Database) -> None:
    calls: list[str] = []

    async def handler(event: DecodedEvent) -> HandlerOutcome:
        calls.append(event.id)
        return HandlerOutcome.RETRY if len(calls) < 3 else HandlerOutcome.SUCCESS

    runtime = await new_runtime(runtime_db)
    runtime.add_subscription("consumer", Subscription("task-events", handler))
    await runtime.start()
    event = task_event("alice", "later")
    try:
        await runtime.publish([event])
        await eventually(lambda: len(calls) >= 3)
        await asyncio.sleep(0.3)
    finally:
        await runtime.stop()
    assert calls == [event.event_id] * 3


class SlowCommitDatabase(Database):
    """A database whose transactions wait a random moment before they commit: out-of-order commits made likely."""

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        async with super().transaction() as conn:
            yield conn
            await asyncio.sleep(random.uniform(0, 0.03))


async def test_concurrent_publishers_on_one_topic_lose_no_event(runtime_db: Database) -> None:
    # Two services publish to task-events in their own transactions. With sequence numbers handed
    # out at insert and a dispatcher reading "seq > position", an append that commits after a
    # later one was read was never delivered.
    slow = SlowCommitDatabase(runtime_db.url)
    runtime = EmbeddedRuntime(slow, server_address="127.0.0.1:1")
    await runtime.create_schema()
    received: list[str] = []

    async def handler(event: DecodedEvent) -> None:
        received.append(event.id)

    runtime.add_subscription("consumer", Subscription("task-events", handler))
    await runtime.start()
    published: list[list[str]] = [[] for _ in range(8)]

    async def publish_many(number: int) -> None:
        for i in range(25):
            event = task_event(f"user{number}", f"{number}-{i}")
            await runtime.publish([event])
            published[number].append(event.event_id)

    try:
        await asyncio.gather(*(publish_many(n) for n in range(8)))
        expected = {e for events in published for e in events}
        # Long enough for every event to arrive; a lost one never does.
        with contextlib.suppress(AssertionError):
            await eventually(lambda: len(set(received)) >= len(expected), timeout=8)
        await asyncio.sleep(0.3)
    finally:
        await runtime.stop()
        await slow.close()
    assert len(received) == len(expected), f"{len(expected) - len(set(received))} events never delivered"
    assert set(received) == expected
    # Each publisher's events arrive in the order it published them.
    for events in published:
        assert [e for e in received if e in set(events)] == events


async def test_two_hosts_on_one_database_fire_each_job_once(runtime_db: Database) -> None:
    fired: list[tuple[str, str]] = []

    def handler_of(host: str) -> Any:
        async def handler(name: str, data: bytes) -> None:
            fired.append((host, name))
            await asyncio.sleep(0.001)

        return handler

    first, second = await new_runtime(runtime_db), await new_runtime(runtime_db)
    first.add_job_handlers("svc", {"": handler_of("first")})
    second.add_job_handlers("svc", {"": handler_of("second")})
    await first.start()
    await second.start()
    try:
        due = datetime.now(UTC) + timedelta(milliseconds=300)
        names = [f"job/{i}" for i in range(400)]
        for name in names:
            await first.for_unit("svc").schedule_job(name, due, b"")
        await eventually(lambda: len(fired) >= len(names))
        await asyncio.sleep(0.5)
    finally:
        await first.stop()
        await second.stop()
    assert sorted(name for _, name in fired) == sorted(names)
    assert {host for host, _ in fired} <= {"first", "second"}


async def test_job_options_overwrite_and_failure_policy(runtime_db: Database) -> None:
    runtime = await new_runtime(runtime_db)
    attempts: list[str] = []

    async def always_failing(name: str, data: bytes) -> None:
        attempts.append(name)
        raise RuntimeError("never works")

    runtime.add_job_handlers("svc", {"": always_failing})
    unit = runtime.for_unit("svc")
    policy = JobOptions(failure_policy=FailurePolicy(max_retries=2, interval=timedelta(milliseconds=20)))
    await unit.schedule_job("bounded", datetime.now(UTC) + timedelta(hours=1), b"", policy)
    with pytest.raises(JobExists):
        await unit.schedule_job("bounded", datetime.now(UTC), b"", JobOptions(overwrite=False))
    await unit.schedule_job("bounded", datetime.now(UTC), b"", policy)  # overwrite: due now
    await runtime.start()
    try:
        await eventually(lambda: len(attempts) >= 3)
        await asyncio.sleep(0.3)
    finally:
        await runtime.stop()
    assert attempts == ["bounded"] * 3  # the first firing and two retries, then dropped
    async with runtime_db.engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(jobs)) == 0


async def test_one_subscription_per_topic_per_unit(runtime_db: Database) -> None:
    runtime = await new_runtime(runtime_db)

    async def handler(event: DecodedEvent) -> None:
        return None

    runtime.add_subscription("svc", Subscription("task-events", handler))
    with pytest.raises(ValueError, match="twice"):
        runtime.add_subscription("svc", Subscription("task-events", handler))


async def test_stopping_right_after_a_wake_up_never_hangs(runtime_db: Database) -> None:
    # asyncio.wait_for on Python 3.11 swallows a cancellation that arrives as the awaited event is set:
    # a loop that used it to sleep could then never be stopped (a host that ignored SIGTERM).
    async def handler(event: DecodedEvent) -> None:
        return None

    for round_number in range(20):
        runtime = await new_runtime(runtime_db)
        runtime.add_subscription("consumer", Subscription("task-events", handler))
        await runtime.start()
        await asyncio.sleep(0.05)  # every loop asleep, waiting for its wake-up
        await runtime.for_unit("svc").schedule_job(f"j{round_number}", datetime.now(UTC) + timedelta(hours=1), b"")
        await runtime.publish([task_event("alice", f"t{round_number}")])
        await asyncio.wait_for(runtime.stop(), timeout=5)


async def test_a_lane_of_stuck_jobs_neither_delays_another_handler_nor_outlives_its_leases(
    runtime_db: Database,
) -> None:
    """Jobs of a handler that hangs (a webhook that does not answer) fill only that handler's lane.

    Another handler's job still fires at once, and the stuck lane claims no
    more than it can run, so nothing claimed waits for a place while its
    lease runs out (which would fire it twice).
    """
    from todo_kit.runtime.embedded import JOB_LANE_SIZE

    runtime = await new_runtime(runtime_db)
    release = asyncio.Event()
    started: list[str] = []
    reminded: list[datetime] = []

    async def hangs(name: str, data: bytes) -> None:
        started.append(name)
        await release.wait()

    async def reminds(name: str, data: bytes) -> None:
        reminded.append(datetime.now(UTC))

    runtime.add_job_handlers("notify", {"webhook/": hangs})
    runtime.add_job_handlers("remind", {"reminder/": reminds})
    await runtime.start()
    try:
        now = datetime.now(UTC)
        for i in range(JOB_LANE_SIZE * 2):
            await runtime.for_unit("notify").schedule_job(f"webhook/{i}", now, b"")
        await eventually(lambda: len(started) == JOB_LANE_SIZE)
        due = datetime.now(UTC) + timedelta(milliseconds=100)
        await runtime.for_unit("remind").schedule_job("reminder/1", due, b"")
        await eventually(lambda: reminded)
        async with runtime_db.engine.connect() as conn:
            leased = await conn.scalar(
                sa.select(sa.func.count()).select_from(jobs).where(jobs.c.app_id == "notify", jobs.c.claim.is_not(None))
            )
        assert leased == JOB_LANE_SIZE  # the second half waits unclaimed
        assert len(started) == JOB_LANE_SIZE
        release.set()
        await eventually(lambda: len(started) == JOB_LANE_SIZE * 2)
    finally:
        release.set()
        await runtime.stop()
    assert reminded[0] - due < timedelta(seconds=1)
    assert sorted(started) == sorted(f"webhook/{i}" for i in range(JOB_LANE_SIZE * 2))


async def test_a_slow_users_events_keep_their_order_and_delay_no_other_user(runtime_db: Database) -> None:
    """One consumer handles different partition keys (users) at once and each key's events in order.

    Alice's first event takes a while; Bob's events, published after it in
    the same batch, are handled meanwhile, and Alice's stay in her order.
    """
    received: list[tuple[str, str]] = []
    alice_started = asyncio.Event()
    release_alice = asyncio.Event()

    async def handler(event: DecodedEvent) -> None:
        assert isinstance(event.message, events_pb2.TaskCreated)
        if event.message.task.title == "a0":
            alice_started.set()
            await release_alice.wait()
        received.append((event.partition_key, event.message.task.title))

    runtime = await new_runtime(runtime_db)
    runtime.add_subscription("consumer", Subscription("task-events", handler))
    await runtime.start()
    try:
        await runtime.publish([task_event("alice", f"a{i}") for i in range(5)] + [task_event("bob", "b0")])
        await runtime.publish([task_event("bob", "b1")])
        await alice_started.wait()
        await eventually(lambda: ("bob", "b0") in received)
        assert not any(user == "alice" for user, _ in received)
        release_alice.set()
        await eventually(lambda: len(received) == 7)
    finally:
        release_alice.set()
        await runtime.stop()
    assert [title for user, title in received if user == "alice"] == [f"a{i}" for i in range(5)]
    assert [title for user, title in received if user == "bob"] == ["b0", "b1"]
