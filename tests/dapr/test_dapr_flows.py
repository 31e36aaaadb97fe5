"""End-to-end flows on the Dapr runtime across processes: each service its own `python -m todo_kit.dapr_host`
process beside its sidecar, PostgreSQL from todo_kit.pg_server.

create -> reminder (a job) -> notification; complete -> next occurrence; the audit log sees each event once. The
JWT key and every database URL come from the secret store (settings given as secret:<name>), and both Dapr tokens
are on. The sidecars are doubles sharing one bus; with a real `daprd` (and the scheduler) installed, the same flows
run against real sidecars, a Kafka broker and a scheduler (test_the_same_flow_with_real_daprd, real_daprd.py).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import grpc
import pytest
import pytest_asyncio
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from todo_contracts.audit.v1 import audit_pb2, audit_pb2_grpc
from todo_contracts.common.v1 import common_pb2
from todo_contracts.notify.v1 import notify_pb2, notify_pb2_grpc
from todo_contracts.task.v1 import task_pb2, task_service_pb2_grpc
from todo_contracts.task.v1 import task_service_pb2 as ts
from todo_kit.auth import issue_token
from todo_kit.embedded_host import installed_units
from todo_kit.kafka_topics import create_topics
from todo_kit.pg_server import PostgresServer
from todo_kit.runtime.dapr import dapr_app_id
from todo_kit.testing import eventually

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from host_process import free_port
from real_daprd import ChildProcess, Sidecar, find_dapr_binaries, start_scheduler, write_secrets
from sidecar_double import Bus, SidecarDouble

pytestmark = pytest.mark.asyncio(loop_scope="module")

APPS = ("task_svc", "reminder_svc", "recurrence_svc", "notify_svc", "audit_svc")
JWT_KEY = "dapr-flow-signing-key-" + uuid.uuid4().hex


@dataclass
class Service:
    app_id: str
    port: int
    double: SidecarDouble
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class DaprStack:
    services: dict[str, Service]
    bus: Bus

    def address(self, app_id: str) -> str:
        return f"127.0.0.1:{self.services[app_id].port}"

    def call_metadata(self, app_id: str) -> tuple[tuple[str, str], ...]:
        return ()


def utc_in(delta: timedelta) -> common_pb2.ZonedDateTime:
    moment = datetime.now(UTC) + delta
    return common_pb2.ZonedDateTime(local_time=moment.strftime("%Y-%m-%dT%H:%M:%S"), time_zone="UTC")


async def _wait_serving(
    name: str, port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 90.0
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            assert loop.time() < deadline, f"{name} did not become SERVING: {log.read_text()[-3000:]}"
            await asyncio.sleep(0.2)


async def _provisioned_postgres(folder: Path) -> tuple[PostgresServer, dict[str, str]]:
    """A started PostgreSQL with a role per service, and the secret store's content: the JWT key, each database URL."""
    postgres = PostgresServer(folder / "pg", port=free_port())
    postgres.start()
    try:
        roles = await postgres.provision([u for u in installed_units() if u.app_id in APPS])
    except BaseException:
        postgres.stop()
        raise
    secrets = {"todo-jwt": JWT_KEY}
    for app_id in APPS:
        secrets[f"{dapr_app_id(app_id)}-database-url"] = roles[app_id].database_url()
    return postgres, secrets


def _app_env(app_id: str, port: int, sidecar_env: dict[str, str]) -> dict[str, str]:
    """A service process's environment: its sidecar's, its port, and its secrets named in the secret store."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TODO_", "DAPR_", "APP_API_TOKEN"))},
        **sidecar_env,
        "TODO_RUNTIME": "dapr",
        "TODO_GRPC_HOST": "127.0.0.1",
        "TODO_GRPC_PORT": str(port),
        "TODO_JWT_SECRET": "secret:todo-jwt",
        "TODO_DATABASE_URL": f"secret:{dapr_app_id(app_id)}-database-url",
        "TODO_LOG_LEVEL": "INFO",
        "TODO_DAPR_WAIT_SECONDS": "30",
    }


def _start_app(app_id: str, port: int, sidecar_env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "todo_kit.dapr_host", app_id],
            env=_app_env(app_id, port, sidecar_env), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


async def _stop_apps(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def dapr_stack() -> AsyncIterator[DaprStack]:
    folder = Path(tempfile.mkdtemp(prefix="todo-"))
    postgres, secrets = await _provisioned_postgres(folder)
    bus = Bus()
    services: dict[str, Service] = {}
    try:
        for app_id in APPS:
            port = free_port()
            double = SidecarDouble(dapr_app_id(app_id), port, bus, api_token="api-" + uuid.uuid4().hex,
                                   app_token="app-" + uuid.uuid4().hex, secrets=secrets, retry_delay=0.1,
                                   max_attempts=50)  # fmt: skip
            await double.start()
            log = folder / f"{app_id}.log"
            services[app_id] = Service(app_id, port, double, _start_app(app_id, port, double.env(), log), log)
        for service in services.values():
            await _wait_serving(service.app_id, service.port, service.process, service.log)
        yield DaprStack(services, bus)
    finally:
        await _stop_apps([s.process for s in services.values()])
        for service in services.values():
            await service.double.stop()
        postgres.stop()
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class RealDaprStack:
    """The services beside real daprd sidecars; users call every service through task_svc's sidecar, as the gateway
    calls through its own: Dapr's service invocation (mDNS name resolution) carries the call to the target's sidecar."""

    sidecars: dict[str, Sidecar]
    children: list[ChildProcess] = field(default_factory=list)

    def address(self, app_id: str) -> str:
        return f"127.0.0.1:{self.sidecars['task_svc'].grpc_port}"

    def call_metadata(self, app_id: str) -> tuple[tuple[str, str], ...]:
        return (("dapr-app-id", dapr_app_id(app_id)), ("dapr-api-token", self.sidecars["task_svc"].api_token))


@asynccontextmanager
async def real_dapr_stack(daprd: Path, scheduler_binary: Path, brokers: str) -> AsyncIterator[RealDaprStack]:
    folder = Path(tempfile.mkdtemp(prefix="todo-"))
    postgres, secrets = await _provisioned_postgres(folder)
    stack = RealDaprStack({})
    apps: list[subprocess.Popen[bytes]] = []
    try:
        await create_topics(brokers)  # Dapr's Kafka component does not create topics
        write_secrets(folder / "secrets.json", secrets)
        scheduler, scheduler_address = await asyncio.to_thread(start_scheduler, scheduler_binary, folder)
        stack.children.append(scheduler)
        for app_id in APPS:
            sidecar = Sidecar(app_id, dapr_app_id(app_id), free_port(), "api-" + uuid.uuid4().hex,
                              "app-" + uuid.uuid4().hex)  # fmt: skip
            sidecar.start(daprd, folder, scheduler_address, brokers, folder / "secrets.json")
            assert sidecar.child is not None
            stack.children.append(sidecar.child)
            stack.sidecars[app_id] = sidecar
            apps.append(_start_app(app_id, sidecar.app_port, sidecar.app_env(), folder / f"{app_id}.log"))
        for app_id, sidecar in stack.sidecars.items():
            await asyncio.to_thread(sidecar.wait_outbound)
            await _wait_serving(app_id, sidecar.app_port, apps[APPS.index(app_id)], folder / f"{app_id}.log")
        yield stack
    finally:
        await _stop_apps(apps)
        for child in reversed(stack.children):  # the sidecars, then the scheduler
            await asyncio.to_thread(child.stop)
        postgres.stop()
        shutil.rmtree(folder, ignore_errors=True)


class FlowStack(Protocol):
    def address(self, app_id: str) -> str: ...

    def call_metadata(self, app_id: str) -> tuple[tuple[str, str], ...]: ...


class User:
    def __init__(self, stack: FlowStack, name: str) -> None:
        bearer = ("authorization", f"Bearer {issue_token(JWT_KEY, name)}")
        apps = ("task_svc", "notify_svc", "audit_svc")
        self.channels = {a: grpc.aio.insecure_channel(stack.address(a)) for a in apps}
        self.metadata = {a: [bearer, *stack.call_metadata(a)] for a in apps}
        self.tasks = task_service_pb2_grpc.TaskServiceStub(self.channels["task_svc"])
        self.notifications = notify_pb2_grpc.NotificationServiceStub(self.channels["notify_svc"])
        self.audit = audit_pb2_grpc.AuditServiceStub(self.channels["audit_svc"])

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()

    async def notifications_by_reminder(self) -> Counter[str] | None:
        reply = await self.notifications.ListNotifications(
            notify_pb2.ListNotificationsRequest(page_size=100), metadata=self.metadata["notify_svc"], timeout=10
        )
        counts = Counter(n.reminder_id for n in reply.notifications)
        return counts or None

    async def activity(self, task_id: str) -> Counter[str]:
        reply = await self.audit.ListActivity(
            audit_pb2.ListActivityRequest(task_id=task_id, page_size=100),
            metadata=self.metadata["audit_svc"],
            timeout=10,
        )
        return Counter(entry.event_type.rsplit(".", 1)[-1] for entry in reply.entries)


async def remind_through_a_job_once(stack: FlowStack) -> None:
    """create -> reminder job -> exactly one notification; the audit log has each event once."""
    alice = User(stack, f"alice-{uuid.uuid4().hex[:8]}")
    try:
        task = task_pb2.Task(
            title="Call the bank", due=utc_in(timedelta(seconds=64)),
            reminders=[task_pb2.ReminderRule(before_due=duration_pb2.Duration(seconds=60))],
        )  # fmt: skip
        created = await alice.tasks.CreateTask(
            ts.CreateTaskRequest(task=task, client_request_id="bank-1"), metadata=alice.metadata["task_svc"], timeout=10
        )
        task_id = created.task.task_id
        notified = await eventually(alice.notifications_by_reminder, timeout=60, interval=0.5)
        assert list(notified.values()) == [1]
        assert next(iter(notified)).startswith(task_id)

        async def settled() -> Counter[str] | None:
            counts = await alice.activity(task_id)
            return counts if counts["ReminderDue"] >= 1 else None

        activity = await eventually(settled, timeout=30, interval=0.5)
        assert (activity["TaskCreated"], activity["ReminderScheduled"], activity["ReminderDue"]) == (1, 1, 1)
        await asyncio.sleep(2)  # a redelivery would show by now
        assert list((await alice.notifications_by_reminder() or Counter()).values()) == [1]
    finally:
        await alice.close()


async def complete_a_recurring_task_once(stack: FlowStack) -> None:
    """Completing a daily task creates exactly one next occurrence of the same series; the audit log has each once."""
    bob = User(stack, f"bob-{uuid.uuid4().hex[:8]}")
    tasks_md = bob.metadata["task_svc"]
    try:
        task = task_pb2.Task(
            title="Water the roses", due=utc_in(timedelta(hours=-1)), recurrence=task_pb2.Recurrence(rrule="FREQ=DAILY")
        )
        created = await bob.tasks.CreateTask(ts.CreateTaskRequest(task=task), metadata=tasks_md, timeout=10)
        first = created.task
        await bob.tasks.CompleteTask(ts.CompleteTaskRequest(task_id=first.task_id), metadata=tasks_md, timeout=10)

        async def next_occurrences() -> list[task_pb2.Task] | None:
            listed = await bob.tasks.ListTasks(ts.ListTasksRequest(query="roses"), metadata=tasks_md, timeout=10)
            found = [t for t in listed.tasks if t.task_id != first.task_id]
            return found or None

        occurrences = await eventually(next_occurrences, timeout=60, interval=0.5)
        assert len(occurrences) == 1
        assert occurrences[0].recurrence.series_id == first.recurrence.series_id
        assert occurrences[0].recurrence.occurrence_index == 2

        async def settled() -> Counter[str] | None:
            counts = await bob.activity(first.task_id)
            return counts if counts["TaskCompleted"] >= 1 else None

        activity = await eventually(settled, timeout=30, interval=0.5)
        assert (activity["TaskCreated"], activity["TaskCompleted"]) == (1, 1)
        await asyncio.sleep(2)
        assert len(await next_occurrences() or []) == 1
    finally:
        await bob.close()


async def test_a_created_task_reminds_through_a_job_and_notifies_once(dapr_stack: DaprStack) -> None:
    await remind_through_a_job_once(dapr_stack)
    reminder_double = dapr_stack.services["reminder_svc"].double
    assert any(name for name, _, used in reminder_double.fired if used == "OnJobEvent")


async def test_completing_a_recurring_task_creates_the_next_occurrence_once(dapr_stack: DaprStack) -> None:
    await complete_a_recurring_task_once(dapr_stack)


async def test_every_service_call_went_through_the_sidecars_with_their_tokens(dapr_stack: DaprStack) -> None:
    for service in dapr_stack.services.values():
        double = service.double
        assert double.calls, f"{service.app_id} never called its sidecar"
        assert all(c.metadata.get("dapr-api-token") == double.api_token for c in double.calls)
    published = [c for s in dapr_stack.services.values() for c in s.double.calls if c.method == "PublishEvent"]
    assert published and all(dict(c.request.metadata)["rawPayload"] == "true" for c in published)


async def test_the_same_flow_with_real_daprd(request: pytest.FixtureRequest) -> None:
    """The same flows against real sidecars: a Kafka broker, one scheduler, daprd beside each service.

    Runs only where daprd and the scheduler are installed (the Dapr CLI's `dapr init`); daprd cannot be built on
    the machines this project is developed on, so this has never run there (docs/dapr.md).
    """
    binaries, reason = find_dapr_binaries()
    if binaries is None:
        pytest.skip(reason)
    kafka = request.getfixturevalue("kafka_broker")  # only now: a skipped run starts no broker
    async with real_dapr_stack(binaries.daprd, binaries.scheduler, kafka.bootstrap) as stack:
        await remind_through_a_job_once(stack)
        await complete_a_recurring_task_once(stack)
