"""The Kafka runtime on a real broker and PostgreSQL: publish, consume, commits, order, dead letters, replicas, jobs."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from todo_contracts import envelope
from todo_contracts.envelope import DecodedEvent
from todo_contracts.task.v1 import events_pb2, task_pb2
from todo_kit import kafka_topics
from todo_kit.config import ConfigError, Settings
from todo_kit.db import Database, ensure_database
from todo_kit.kafka_broker import LocalKafka
from todo_kit.messaging import Outbox, OutboxRelay, OutgoingEvent, claim_event, outbox_table
from todo_kit.messaging import metadata as messaging_metadata
from todo_kit.runtime.jobstore import create_job_table
from todo_kit.runtime.kafka import KafkaRuntime
from todo_kit.runtime.port import DropEvent, EventHandler, Subscription
from todo_kit.supervision import Supervisor
from todo_kit.testing import eventually, kafka_settings, topic_records

effects = sa.Table(
    "effects",
    sa.MetaData(),
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("replica", sa.Text, nullable=False),
)


@pytest.fixture
async def db(kit_settings: Settings) -> AsyncIterator[Database]:
    """A database with an outbox, an inbox, a jobs table and an effects table."""
    name = kit_settings.database_prefix + "kafka"
    await ensure_database(kit_settings.database_url.format(database="postgres"), name)
    database = Database(kit_settings.database_url.format(database=name))
    async with database.engine.begin() as conn:
        await conn.run_sync(messaging_metadata.create_all)
        await conn.run_sync(effects.metadata.create_all)
    await create_job_table(database)
    yield database
    await database.close()


@pytest.fixture
def own_broker() -> Iterator[LocalKafka]:
    """A broker of the test's own, for tests that take it away."""
    broker = LocalKafka()
    broker.start()
    try:
        yield broker
    finally:
        broker.remove()


async def make_topic(broker: LocalKafka, partitions: int = 6) -> str:
    name = f"test-{uuid.uuid4().hex[:10]}"
    specs = [kafka_topics.TopicSpec(name, partitions), kafka_topics.TopicSpec(name + "-dlq", partitions)]
    assert await kafka_topics.create_topics(broker.bootstrap, specs=specs) == sorted(s.name for s in specs)
    return name


def event(user: str, number: int, topic: str) -> OutgoingEvent:
    """A TaskCreated of user as the outbox holds it (the title carries its number), published on topic."""
    task = task_pb2.Task(task_id=str(uuid.uuid4()), user_id=user, title=f"task {number}")
    ce = envelope.wrap(events_pb2.TaskCreated(user_id=user, task=task), source="/todo/test", subject=task.task_id)
    return OutgoingEvent(ce.id, topic, user, ce.type, ce.SerializeToString(deterministic=True))


def number_of(decoded: DecodedEvent) -> int:
    assert isinstance(decoded.message, events_pb2.TaskCreated)
    return int(decoded.message.task.title.split()[-1])


@asynccontextmanager
async def consuming(
    broker: LocalKafka, app_id: str, topic: str, handler: EventHandler, *, retry_for: float = 60.0, **env: str
) -> AsyncIterator[tuple[KafkaRuntime, Supervisor, list[frozenset[str]]]]:
    """A runtime with one subscription, its loops under a supervisor that records health changes."""
    runtime = KafkaRuntime(kafka_settings(broker, **env), retry_for=retry_for, max_retry_delay=0.2)
    runtime.revoke_wait = 2.0
    runtime.add_subscription(app_id, Subscription(topic, handler))
    health: list[frozenset[str]] = []

    async def on_health(down: frozenset[str]) -> None:
        health.append(down)

    supervisor = Supervisor(on_health)
    for name, owner, work in runtime.workers():
        supervisor.add(name, owner, work)
    await supervisor.start()
    try:
        yield runtime, supervisor, health
    finally:
        await supervisor.stop()
        await runtime.stop()


def effect_recorder(db: Database, replica: str, seen: list[str] | None = None) -> EventHandler:
    """A handler whose effect and inbox claim commit in one transaction (as a service's do)."""

    async def handle(decoded: DecodedEvent) -> None:
        if seen is not None:
            seen.append(decoded.id)
        async with db.transaction() as conn:
            if await claim_event(conn, "svc", decoded.id):
                await conn.execute(sa.insert(effects).values(event_id=decoded.id, replica=replica))

    return handle


async def effect_counts(db: Database) -> dict[str, int]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(sa.select(effects.c.event_id, sa.func.count()).group_by(effects.c.event_id))
        return {r[0]: r[1] for r in rows}


async def test_publish_returns_after_the_broker_has_the_records_in_dapr_raw_payload_form(
    kafka_broker: LocalKafka,
) -> None:
    topic = await make_topic(kafka_broker)
    runtime = KafkaRuntime(kafka_settings(kafka_broker))
    sent = [event("alice", n, topic) for n in range(3)]
    try:
        await runtime.publish(sent)
    finally:
        await runtime.stop()
    records = await topic_records(kafka_broker.bootstrap, topic, lambda r: True, count=3, timeout=10)
    assert sorted(r.value for r in records) == sorted(e.payload for e in sent)
    assert {r.key for r in records} == {b"alice"}
    assert all(list(r.headers) == [("content-type", b"application/cloudevents+protobuf")] for r in records)
    assert len({r.partition for r in records}) == 1  # one key, one partition: in order
    assert [r.value for r in sorted(records, key=lambda r: r.offset)] == [e.payload for e in sent]


async def test_the_relay_marks_events_published_only_after_the_broker_acknowledged_them(
    own_broker: LocalKafka, db: Database
) -> None:
    topic = await make_topic(own_broker)
    runtime = KafkaRuntime(kafka_settings(own_broker, TODO_KAFKA_PUBLISH_TIMEOUT_SECONDS="2"))
    outbox = Outbox(source="/todo/test")
    relay = OutboxRelay(db, outbox, runtime.for_unit("svc"))
    first = event("bob", 1, topic)
    try:
        own_broker.stop()
        async with db.transaction() as conn:
            await conn.execute(sa.insert(outbox_table).values(
                event_id=first.event_id, topic=topic, partition_key="bob", event_type=first.event_type,
                payload=first.payload,
            ))  # fmt: skip
        with pytest.raises(Exception):  # noqa: B017 - whichever error the client raises, the relay must not mark
            await relay.publish_pending()
        async with db.engine.connect() as conn:
            assert await conn.scalar(sa.select(outbox_table.c.published_at)) is None
        own_broker.start()
        published = await eventually(_retrying(relay.publish_pending), timeout=30)
        assert published == 1
    finally:
        await runtime.stop()
    async with db.engine.connect() as conn:
        assert await conn.scalar(sa.select(outbox_table.c.published_at)) is not None
    records = await topic_records(own_broker.bootstrap, topic, lambda r: True, count=1)
    assert [r.value for r in records] == [first.payload]


def _retrying(call: Any) -> Any:
    async def attempt() -> Any:
        try:
            return await call()
        except Exception:
            return None

    return attempt


async def test_offsets_are_committed_only_behind_handled_records_so_a_crash_redelivers_and_the_inbox_absorbs(
    kafka_broker: LocalKafka, db: Database
) -> None:
    topic = await make_topic(kafka_broker, partitions=1)
    runtime = KafkaRuntime(kafka_settings(kafka_broker))
    await runtime.publish([event("carol", n, topic) for n in range(5)])
    await runtime.stop()
    seen: list[str] = []
    stuck = asyncio.Event()
    record = effect_recorder(db, "first", seen)

    async def handler_that_hangs_after_its_commit(decoded: DecodedEvent) -> None:
        await record(decoded)
        if number_of(decoded) == 2:
            stuck.set()
            await asyncio.Event().wait()  # committed, then the process "dies" before the offset moves

    async with consuming(kafka_broker, "svc", topic, handler_that_hangs_after_its_commit):
        await eventually(stuck.is_set, timeout=30)
    # The consumer is gone: event 2 had its effect, its offset was not committed.
    assert len(await effect_counts(db)) == 3
    again: list[str] = []
    async with consuming(kafka_broker, "svc", topic, effect_recorder(db, "second", again)):
        await eventually(lambda: len(again) >= 3, timeout=30)
    assert again[0] == seen[2]  # redelivered from the first unfinished record, not before it, not after it
    counts = await effect_counts(db)
    assert len(counts) == 5 and set(counts.values()) == {1}


async def test_each_users_events_stay_in_order_while_users_are_handled_at_once(
    kafka_broker: LocalKafka,
) -> None:
    topic = await make_topic(kafka_broker, partitions=2)
    users = [f"user{u}" for u in range(8)]
    runtime = KafkaRuntime(kafka_settings(kafka_broker))
    await runtime.publish([event(user, n, topic) for n in range(15) for user in users])
    await runtime.stop()
    order: dict[str, list[int]] = defaultdict(list)
    running = 0
    most = 0

    async def slow(decoded: DecodedEvent) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(random.uniform(0, 0.02))
        order[decoded.partition_key].append(number_of(decoded))
        running -= 1

    async with consuming(kafka_broker, "svc", topic, slow):
        await eventually(lambda: sum(len(v) for v in order.values()) >= 120, timeout=30)
    assert {u: order[u] for u in users} == {u: list(range(15)) for u in users}
    assert most > 1


async def test_a_poison_record_goes_to_the_dead_letter_topic_at_once_and_the_next_is_handled(
    kafka_broker: LocalKafka,
) -> None:
    topic = await make_topic(kafka_broker, partitions=1)
    runtime = KafkaRuntime(kafka_settings(kafka_broker))
    good = event("dave", 1, topic)
    dropped = event("dave", 2, topic)
    after = event("dave", 3, topic)
    header = [("content-type", b"application/cloudevents+protobuf")]
    await runtime.produce([(topic, b"dave", b"\x00 not a cloud event", header)])
    await runtime.publish([good, dropped, after])
    await runtime.stop()
    handled: list[int] = []

    async def handler(decoded: DecodedEvent) -> None:
        if number_of(decoded) == 2:
            raise DropEvent("impossible")
        handled.append(number_of(decoded))

    async with consuming(kafka_broker, "svc", topic, handler):
        await eventually(lambda: handled == [1, 3], timeout=30)
    letters = await topic_records(kafka_broker.bootstrap, topic + "-dlq", lambda r: True, count=2)
    assert [r.value for r in letters] == [b"\x00 not a cloud event", dropped.payload]
    assert all(r.key == b"dave" for r in letters)
    headers = [dict(r.headers) for r in letters]
    assert [h["original-offset"] for h in headers] == [b"0", b"2"]
    assert {h["original-topic"] for h in headers} == {topic.encode()}
    assert {h["original-partition"] for h in headers} == {b"0"}
    assert {h["consumer-group"] for h in headers} == {f"svc.{topic}".encode()}
    assert headers[0]["error"].startswith(b"undecodable") and b"impossible" in headers[1]["error"]
    listed = await kafka_topics.dead_letters(kafka_broker.bootstrap, [topic + "-dlq"])
    assert [(d["original_offset"], d["event_type"], d["event_id"]) for d in listed] == [
        ("0", "(undecodable)", ""),
        ("2", dropped.event_type, dropped.event_id),
    ]


async def test_a_handler_that_keeps_failing_is_retried_then_dead_lettered_and_the_partition_moves_on(
    kafka_broker: LocalKafka,
) -> None:
    topic = await make_topic(kafka_broker, partitions=1)
    runtime = KafkaRuntime(kafka_settings(kafka_broker))
    await runtime.publish([event("erin", 1, topic), event("erin", 2, topic)])
    await runtime.stop()
    attempts: dict[int, int] = defaultdict(int)

    async def handler(decoded: DecodedEvent) -> None:
        attempts[number_of(decoded)] += 1
        if number_of(decoded) == 1:
            raise RuntimeError("database unavailable")

    async with consuming(kafka_broker, "svc", topic, handler, retry_for=1.0):
        await eventually(lambda: attempts[2] == 1, timeout=30)
    assert attempts[1] > 2  # retried before it was given up
    letters = await topic_records(kafka_broker.bootstrap, topic + "-dlq", lambda r: True, count=1)
    assert len(letters) == 1 and b"kept failing" in dict(letters[0].headers)["error"]


async def test_two_replicas_share_a_topic_and_each_event_has_one_effect_when_one_stops_mid_stream(
    kafka_broker: LocalKafka, db: Database
) -> None:
    topic = await make_topic(kafka_broker, partitions=6)
    publisher = KafkaRuntime(kafka_settings(kafka_broker))
    sent = [event(f"u{n % 30}", n, topic) for n in range(600)]
    seen_a: list[str] = []
    seen_b: list[str] = []

    async def slow_a(decoded: DecodedEvent) -> None:
        await asyncio.sleep(0.005)
        await effect_recorder(db, "a", seen_a)(decoded)

    try:
        async with consuming(kafka_broker, "svc", topic, slow_a) as (runtime_a, _, _):
            async with consuming(kafka_broker, "svc", topic, effect_recorder(db, "b", seen_b)) as (runtime_b, _, _):
                # Both own partitions before anything is published: on a loaded machine the second member's join
                # can take longer than the first member needs for the whole batch.
                assert await runtime_a.wait_joined(60) and await runtime_b.wait_joined(60)
                await publisher.publish(sent[:300])
                await eventually(lambda: len(seen_b) >= 20 and len(seen_a) >= 20, timeout=30)
                await publisher.publish(sent[300:450])
            # b left mid-stream (clean stop): a takes its partitions over.
            await publisher.publish(sent[450:])
            await eventually(lambda: len(_counts_sync(seen_a, seen_b)) >= 600, timeout=60)
    finally:
        await publisher.stop()
    counts = await effect_counts(db)
    assert set(counts) == {e.event_id for e in sent}
    assert set(counts.values()) == {1}
    assert seen_a and seen_b


def _counts_sync(*seen: list[str]) -> set[str]:
    return {event_id for ids in seen for event_id in ids}


async def test_a_job_scheduled_once_fires_once_with_two_replicas_on_one_jobs_table(
    kafka_broker: LocalKafka, db: Database
) -> None:
    fired: list[tuple[str, str]] = []

    def handler_of(replica: str) -> Any:
        async def fire(name: str, data: bytes) -> None:
            fired.append((replica, name))

        return fire

    replicas = []
    supervisor = Supervisor(_ignore)
    for replica in ("a", "b"):
        runtime = KafkaRuntime(kafka_settings(kafka_broker))
        runtime.attach_database("svc", db)
        runtime.add_job_handlers("svc", {"remind/": handler_of(replica)})
        for name, owner, work in runtime.workers():
            supervisor.add(f"{name} {replica}", owner, work)
        replicas.append(runtime)
    await supervisor.start()
    try:
        due = datetime.now(UTC) + timedelta(milliseconds=300)
        for n in range(40):
            await replicas[n % 2].for_unit("svc").schedule_job(f"remind/{n}", due, b"")
        await eventually(lambda: len(fired) >= 40, timeout=30)
        await asyncio.sleep(0.5)  # room for a wrong second firing
    finally:
        await supervisor.stop()
        for runtime in replicas:
            await runtime.stop()
    assert sorted(name for _, name in fired) == sorted(f"remind/{n}" for n in range(40))
    assert await replicas[0].pending_jobs("svc") == []


async def _ignore(down: frozenset[str]) -> None:
    return None


async def test_creating_the_registry_topics_twice_makes_them_once(kafka_broker: LocalKafka) -> None:
    first = await kafka_topics.create_topics(kafka_broker.bootstrap)
    second = await kafka_topics.create_topics(kafka_broker.bootstrap)
    present = await kafka_topics.existing_topics(kafka_broker.bootstrap)
    assert second == []
    wanted = {spec.name: spec.partitions for spec in kafka_topics.registry_topics()}
    assert {name: present.get(name) for name in wanted} == wanted
    assert set(first) <= set(wanted)


def test_the_topics_command_creates_then_finds_everything_there(
    kafka_broker: LocalKafka, capsys: pytest.CaptureFixture[str]
) -> None:
    assert kafka_topics.main(["--bootstrap", kafka_broker.bootstrap, "create"]) == 0
    assert kafka_topics.main(["--bootstrap", kafka_broker.bootstrap, "create"]) == 0
    out = capsys.readouterr().out.splitlines()
    total = len(kafka_topics.registry_topics())
    assert out[-1] == f"0 topic(s) created, {total} already there"
    assert kafka_topics.main(["--bootstrap", kafka_broker.bootstrap, "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == total and not any("missing" in line for line in listed)


async def test_a_consumer_whose_broker_stays_away_reports_not_serving_and_resumes_by_itself(
    own_broker: LocalKafka, db: Database
) -> None:
    topic = await make_topic(own_broker, partitions=1)
    seen: list[str] = []
    publisher = KafkaRuntime(kafka_settings(own_broker))
    try:
        async with consuming(own_broker, "svc", topic, effect_recorder(db, "a", seen)) as (_, _s, health):
            await publisher.publish([event("frank", 1, topic)])
            await eventually(lambda: len(seen) == 1, timeout=30)
            own_broker.stop()
            await eventually(lambda: health and "svc" in health[-1], timeout=40)
            own_broker.start()
            await eventually(lambda: health and "svc" not in health[-1], timeout=60)
            late = event("frank", 2, topic)

            async def publish_late() -> bool:
                await publisher.publish([late])
                return True

            await eventually(_retrying(publish_late), timeout=30)
            await eventually(lambda: late.event_id in seen, timeout=60)
    finally:
        await publisher.stop()
    assert set((await effect_counts(db)).values()) == {1}


async def test_a_command_to_a_service_that_is_starting_is_retried_and_carries_the_callers_identity(
    kafka_broker: LocalKafka,
) -> None:
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    from todo_kit.kafka_broker import free_port
    from todo_kit.request_context import bind_authorization

    port = free_port()
    seen: list[str | None] = []

    class RecordingHealth(health.aio.HealthServicer):  # type: ignore[misc]
        async def Check(self, request: Any, context: Any) -> Any:
            seen.append(dict(context.invocation_metadata()).get("authorization"))
            return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(RecordingHealth(), server)
    runtime = KafkaRuntime(kafka_settings(kafka_broker, TODO_SERVICE_ADDRESSES=f"task_svc=127.0.0.1:{port}"))

    async def start_later() -> None:
        await asyncio.sleep(0.4)  # the first attempts find nothing listening (connection refused: UNAVAILABLE)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()

    starting = asyncio.create_task(start_later())
    try:
        bind_authorization("Bearer for-alice")
        stub = health_pb2_grpc.HealthStub(runtime.for_unit("chat_svc").channel("task_svc"))
        reply = await stub.Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert seen == ["Bearer for-alice"]
        with pytest.raises(ConfigError, match="TODO_SERVICE_ADDRESSES has no address for audit_svc"):
            runtime.for_unit("chat_svc").channel("audit_svc")
    finally:
        await starting
        await runtime.stop()
        await server.stop(0)
