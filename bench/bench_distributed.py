"""Distributed mode (Kafka, a process per service) against the embedded default, in one run.

Starts each system in turn on a scratch folder and free loopback ports (never the
user's data folders) and measures, for both:

1. Task commands/s with every consumer keeping up: CreateTask (due tomorrow,
   one reminder), UpdateTask (title) and CompleteTask of the same task, from
   many concurrent clients of 100 users, at fixed offered rates (commands
   issued on a schedule, at most 64 in flight) and in a closed loop (16
   clients, each sending its next command when the last one returned), each
   for a fixed time. After the load, the lag - events written to an outbox
   and not yet published, plus events published and not yet handled by a
   consumer (Kafka: the committed offsets of each consumer group against the
   partitions' end offsets; embedded: each dispatcher's position against the
   event log) - is read until it is zero. A rate counts as sustained only when
   the lag is zero within --settle seconds after the load.
2. TaskCreated -> ReminderScheduled: the ReminderScheduled's CloudEvent time
   minus the TaskCreated's, per task created in a load step (read from the
   task and reminder services' outboxes afterwards).
3. Reminder lateness: 10,000 tasks (100 users) whose reminders come due at
   random seconds within one minute, all planned before it starts; lateness is
   the reminder's fired time (its ReminderDue written) minus its due time.
   Two reminder_svc replicas in the distributed mode.
4. Catch-up (distributed only: in the embedded default every consumer shares
   the process with task_svc): every service process but task_svc and the
   gateway stopped for --outage seconds while tasks keep being created, then
   started again; the time from the restart until the lag is zero. Every task
   of the run is then checked for exactly one TaskCreated activity entry
   (nothing lost, nothing doubled).

The distributed stack is deploy/local/stack.py's (Kafka in KRaft mode, one
PostgreSQL server, every service its own `todo_kit.kafka_host` process, two
replicas of reminder_svc and notify_svc, the gateway); commands go straight to
task_svc's own address, as the embedded default is called on its one address.
--record appends the figures to docs/benchmarks.md.

    cd bench && ../.venv/bin/python bench_distributed.py [--record] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from bench_tasks import Host, percentiles, record_section
from bench_tasks import token as embedded_token
from google.protobuf import duration_pb2, field_mask_pb2

from todo_contracts import envelope, topics
from todo_contracts.common.v1 import common_pb2
from todo_contracts.task.v1 import task_pb2, task_service_pb2_grpc
from todo_contracts.task.v1 import task_service_pb2 as ts
from todo_kit import embedded_pg
from todo_kit.auth import issue_token, signing_key_for
from todo_kit.config import Settings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy" / "local"))

from stack import Child, Ports, Stack  # noqa: E402

DATABASES = ("todo_task", "todo_reminder", "todo_recurrence", "todo_notify", "todo_audit", "todo_chat")
TASK_CREATED = "todo.task.v1.TaskCreated"
REMINDER_SCHEDULED = "todo.reminder.v1.ReminderScheduled"
USERS = 100
CALL_TIMEOUT = 30.0
EMBEDDED = "embedded"
DISTRIBUTED = "distributed"
LABELS = {EMBEDDED: "embedded default", DISTRIBUTED: "Kafka, a process per service"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def utc(moment: datetime) -> common_pb2.ZonedDateTime:
    return common_pb2.ZonedDateTime(local_time=moment.strftime("%Y-%m-%dT%H:%M:%S"), time_zone="UTC")


@dataclass
class Lag:
    """Events not yet handled: in outboxes (not published) and behind each consumer."""

    outbox: int
    consumers: dict[str, int]

    @property
    def total(self) -> int:
        return self.outbox + sum(self.consumers.values())

    def worst(self) -> str:
        if not self.consumers or max(self.consumers.values()) == 0:
            return "-"
        name, behind = max(self.consumers.items(), key=lambda item: item[1])
        return f"{name} {behind:,}"


class System:
    """One of the two systems under test, started on scratch data and free ports."""

    mode: str
    task_address: str

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    def metadata(self, user: str) -> list[tuple[str, str]]:
        raise NotImplementedError

    async def connect(self, database: str) -> asyncpg.Connection:
        raise NotImplementedError

    async def consumer_lag(self) -> dict[str, int]:
        raise NotImplementedError

    def cpu_groups(self) -> dict[str, list[int]]:
        """Processes of the system by name (PostgreSQL with its backends), and this client."""
        raise NotImplementedError

    async def lag(self) -> Lag:
        """The whole lag now."""
        outbox = 0
        for database in DATABASES:
            conn = await self.connection(database)
            outbox += int(await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
        return Lag(outbox, await self.consumer_lag())

    async def connection(self, database: str) -> asyncpg.Connection:
        """A kept connection to one service database (for the frequent lag reads)."""
        conn = self._connections.get(database)
        if conn is None or conn.is_closed():
            conn = self._connections[database] = await self.connect(database)
        return conn

    async def close_connections(self) -> None:
        for conn in self._connections.values():
            await conn.close()
        self._connections.clear()

    _connections: dict[str, asyncpg.Connection]


class Embedded(System):
    """`python -m todo_kit.embedded_host` on a scratch data folder (bench_tasks.Host)."""

    mode = EMBEDDED

    def __init__(self, scratch: Path) -> None:
        self.data_dir = scratch / "embedded" / "data"
        self.data_dir.mkdir(parents=True)
        self._connections = {}
        self.host: Host | None = None
        self._admin_url = ""

    async def start(self) -> None:
        self.host = Host(self.data_dir)
        # A first start (initdb, every service's migrations) can take over a minute on a loaded machine.
        deadline = time.monotonic() + 300
        while True:
            try:
                await self.host.wait_serving()
                break
            except SystemExit:
                if self.host.process.poll() is not None or time.monotonic() > deadline:
                    raise
        self.task_address = self.host.address
        self._admin_url = embedded_pg.start(self.data_dir / "postgres").admin_url
        self._tokens: dict[str, list[tuple[str, str]]] = {}

    async def stop(self) -> None:
        await self.close_connections()
        if self.host is not None:
            await asyncio.to_thread(self.host.stop)

    def metadata(self, user: str) -> list[tuple[str, str]]:
        if user not in self._tokens:
            self._tokens[user] = embedded_token(self.data_dir, user)
        return self._tokens[user]

    async def connect(self, database: str) -> asyncpg.Connection:
        return await asyncpg.connect(self._admin_url.replace("/postgres?", f"/{database}?"))

    async def consumer_lag(self) -> dict[str, int]:
        conn = await self.connection("todo_runtime")
        rows = await conn.fetch(
            """
            SELECT p.consumer || ' ' || p.topic AS name,
                   (SELECT count(*) FROM event_log e WHERE e.topic = p.topic AND e.seq > p.position) AS behind
            FROM consumer_positions p
            """
        )
        return {row["name"]: int(row["behind"]) for row in rows}

    def cpu_groups(self) -> dict[str, list[int]]:
        assert self.host is not None
        postmaster = embedded_pg.postmaster_pid(self.data_dir / "postgres")
        postgres = [postmaster, *children_of(postmaster)] if postmaster else []
        host = self.host.process.pid
        # The host's children: the gateway when TODO_GATEWAY_BIN is set (as `make bench-distributed` sets it).
        return {"host": [host, *children_of(host)], "postgresql": postgres, "client": [os.getpid()]}


class Distributed(System):
    """deploy/local/stack.py's stack on a scratch folder and free ports."""

    mode = DISTRIBUTED

    def __init__(self, scratch: Path, gateway_bin: Path | None) -> None:
        folder = scratch / "distributed"
        folder.mkdir(parents=True)
        self.key_file = folder / "signing-key"
        self.key_file.write_text(secrets.token_urlsafe(48))
        ports = Ports(kafka=free_port(), kafka_controller=free_port(), postgres=free_port(), rest=free_port(),
                      grpc=free_port(), services_from=free_port())  # fmt: skip
        others = (ports.kafka, ports.kafka_controller, ports.postgres, ports.rest, ports.grpc)
        while any(ports.services_from <= p < ports.services_from + 10 for p in others):
            ports = Ports(**{**ports.__dict__, "services_from": free_port()})
        env = {
            **os.environ,
            "TODO_DATA_DIR": str(folder / "data"),
            "TODO_JWT_SECRET_FILE": str(self.key_file),
            "TODO_LOG_LEVEL": "WARNING",  # as bench_tasks.Host runs the embedded default
            "TODO_RATE_LIMIT_PER_MINUTE": "0",  # measures throughput, not the per-user limit
        }
        self.stack = Stack(folder / "stack", ports=ports, gateway_bin=gateway_bin, web_dir=None, env=env)
        settings = Settings.from_env({"TODO_JWT_SECRET_FILE": str(self.key_file)})
        self._key = signing_key_for(settings, create=False)
        self._tokens: dict[str, list[tuple[str, str]]] = {}
        self._connections = {}
        self._kafka: Any = None
        self._admin: Any = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        await asyncio.to_thread(self.stack.start)
        self.task_address = self.stack.replicas_of("task_svc")[0].address
        self._kafka = AIOKafkaConsumer(bootstrap_servers=self.stack.bootstrap)
        await self._kafka.start()
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.stack.bootstrap)
        await self._admin.start()

    async def stop(self) -> None:
        await self.close_connections()
        if self._kafka is not None:
            await self._kafka.stop()
        if self._admin is not None:
            await self._admin.close()
        await asyncio.to_thread(self.stack.stop)

    def metadata(self, user: str) -> list[tuple[str, str]]:
        if user not in self._tokens:
            self._tokens[user] = [("authorization", f"Bearer {issue_token(self._key, user)}")]
        return self._tokens[user]

    async def connect(self, database: str) -> asyncpg.Connection:
        assert self.stack.postgres is not None
        return await asyncpg.connect(self.stack.postgres.admin_url.rsplit("/", 1)[0] + f"/{database}")

    async def consumer_lag(self) -> dict[str, int]:
        from aiokafka.structs import TopicPartition

        partitions = [
            TopicPartition(topic.name, number) for topic in topics.ALL_TOPICS for number in range(topic.partitions)
        ]
        ends = await self._kafka.end_offsets(partitions)
        names = {topic.name for topic in topics.ALL_TOPICS}
        # Groups are "<app id>.<topic>"; the services' groups exist from their first join on.
        listed = await self._admin.list_consumer_groups()
        groups = sorted({g[0] for g in listed if g[0].split(".", 1)[-1] in names})
        lag: dict[str, int] = {}
        for group in groups:
            committed = await self._admin.list_consumer_group_offsets(group)
            done = {(tp.topic, tp.partition): meta.offset for tp, meta in committed.items()}
            topic = group.split(".", 1)[1]
            lag[group] = sum(
                end - max(done.get((tp.topic, tp.partition), 0), 0) for tp, end in ends.items() if tp.topic == topic
            )
        return lag

    def cpu_groups(self) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {"client": [os.getpid()]}
        for child in self.stack.children():
            if child.pid is not None:
                groups.setdefault(child.name.split("#")[0], []).append(child.pid)
        assert self.stack.postgres is not None
        postmaster = self.stack.postgres.pid()
        groups["postgresql"] = [postmaster, *children_of(postmaster)] if postmaster else []
        return groups

    def consumers(self) -> list[Child]:
        """Every service process but task_svc (the gateway is not among the services)."""
        return [child for child in self.stack.services if child.app_id != "task_svc"]

    async def stop_consumers(self) -> None:
        """SIGTERM to every consumer process at once; returns when all have exited."""
        children = self.consumers()
        for child in children:
            child.signal(signal.SIGTERM)
        await asyncio.to_thread(lambda: [child.wait(60) for child in children])

    async def start_consumers(self) -> None:
        """Starts the stopped processes again and returns when every one serves."""
        children = self.consumers()
        for child in children:
            child.start()
        await asyncio.to_thread(lambda: [self.stack.wait_serving(child) for child in children])


# --- where the CPU goes ----------------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used, None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children_of(parent: int) -> list[int]:
    """The pids whose parent is `parent` (a PostgreSQL server's backends)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (every process, ours or not)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / CLOCK_TICKS


@dataclass
class CpuMeter:
    """CPU used by groups of processes over a span of wall time, in cores."""

    list_groups: Callable[[], dict[str, list[int]]]
    began: float = 0.0
    busy: float = 0.0
    before: dict[int, float] = field(default_factory=dict)

    @classmethod
    def start(cls, list_groups: Callable[[], dict[str, list[int]]]) -> CpuMeter:
        meter = cls(list_groups, time.monotonic(), machine_busy())
        meter.before = {
            pid: cpu for pids in list_groups().values() for pid in pids if (cpu := process_cpu(pid)) is not None
        }
        return meter

    def stop(self) -> dict[str, float]:
        """Cores used per group, plus "others" (the rest of the machine) and "machine"."""
        wall = time.monotonic() - self.began
        used: dict[str, float] = {}
        for name, pids in self.list_groups().items():
            spent = 0.0
            for pid in pids:
                now = process_cpu(pid)
                if now is not None:
                    # A process started during the span (a new database connection) counts from zero.
                    spent += now - self.before.get(pid, 0.0)
            used[name] = spent / wall
        machine = (machine_busy() - self.busy) / wall
        used["others"] = max(machine - sum(used.values()), 0.0)
        used["machine"] = machine
        return used


def fmt_cpu(used: dict[str, float] | None) -> str:
    if not used:
        return "-"
    parts = sorted(((n, c) for n, c in used.items() if n != "machine" and c >= 0.05), key=lambda item: -item[1])
    return f"{used['machine']:.2f} busy: " + ", ".join(f"{name} {cores:.2f}" for name, cores in parts)


# --- load ------------------------------------------------------------------------------------------------------


@dataclass
class LoadStep:
    """What one load step did."""

    label: str
    offered: float | None  # commands/s; None for the closed loop
    commands: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    created: list[str] = field(default_factory=list)
    lag_at_end: Lag | None = None
    zero_after: float | None = None
    latency: tuple[float, float, float] | None = None
    without_schedule: int = 0
    relayed: tuple[float, float, float] | None = None  # TaskCreated -> picked up by task_svc's outbox relay
    cpu: dict[str, float] | None = None

    @property
    def rate(self) -> float:
        return self.commands / self.seconds if self.seconds else 0.0


class Pacer:
    """Hands out command slots at a fixed rate (open loop); a late caller gets its slot at once."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next = asyncio.get_running_loop().time()

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        # Slots more than a second behind are given up, so a stall is not followed by an unbounded burst.
        slot = max(self.next, loop.time() - 1.0)
        self.next = slot + self.interval
        delay = slot - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)


def create_request(rng: random.Random, number: int) -> ts.CreateTaskRequest:
    due = datetime.now(UTC) + timedelta(days=1, seconds=rng.randrange(3600))
    task = task_pb2.Task(
        title=f"bench task {number}",
        due=utc(due),
        reminders=[task_pb2.ReminderRule(before_due=duration_pb2.Duration(seconds=3600))],
    )
    return ts.CreateTaskRequest(task=task)


async def run_load(system: System, step: LoadStep, seconds: float, workers: int) -> None:
    """Create -> update -> complete chains from `workers` clients for `seconds`, paced if step.offered."""
    rng = random.Random(hash(step.label) & 0xFFFF)
    users = [f"bench-user-{u:03d}" for u in range(USERS)]
    loop = asyncio.get_running_loop()
    pacer = Pacer(step.offered) if step.offered else None
    counter = [0]
    last_done = [0.0]
    async with grpc.aio.insecure_channel(system.task_address) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        began = loop.time()
        end = began + seconds
        step.started_at = datetime.now(UTC)

        async def call(method: Any, request: Any, md: list[tuple[str, str]]) -> Any:
            if pacer is not None:
                await pacer.wait()
                if loop.time() >= end:
                    return None  # a slot after the end: not sent
            try:
                reply = await method(request, metadata=md, timeout=CALL_TIMEOUT)
            except grpc.aio.AioRpcError as error:
                step.errors[error.code().name] += 1
                return None
            step.commands += 1
            last_done[0] = loop.time()
            return reply

        async def client() -> None:
            while loop.time() < end:
                md = system.metadata(rng.choice(users))
                counter[0] += 1
                request = create_request(rng, counter[0])
                created = await call(stub.CreateTask, request, md)
                if created is None:
                    continue
                task_id = created.task.task_id
                step.created.append(task_id)
                if loop.time() >= end:
                    break
                update = ts.UpdateTaskRequest(
                    task=task_pb2.Task(task_id=task_id, title=f"{request.task.title}, renamed"),
                    update_mask=field_mask_pb2.FieldMask(paths=["title"]),
                )
                await call(stub.UpdateTask, update, md)
                if loop.time() >= end:
                    break
                complete = ts.CompleteTaskRequest(task_id=task_id)
                await call(stub.CompleteTask, complete, md)

        await asyncio.gather(*(client() for _ in range(workers)))
        # Until the last command returned: clients waiting for a slot past the end add nothing.
        step.seconds = (last_done[0] or loop.time()) - began


async def wait_zero_lag(system: System, timeout: float) -> tuple[Lag, float | None]:
    """The lag now, and the seconds until it is zero (None if not within timeout)."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    first = await system.lag()
    lag = first
    while lag.total > 0:
        if loop.time() - began > timeout:
            return first, None
        await asyncio.sleep(0.25)
        lag = await system.lag()
    return first, loop.time() - began


async def schedule_latency(system: System, step: LoadStep) -> None:
    """TaskCreated -> ReminderScheduled (CloudEvent times) for the tasks the step created."""
    since = step.started_at - timedelta(seconds=2)
    created_at: dict[str, datetime] = {}
    relayed_at: dict[str, datetime] = {}
    tasks_db = await system.connect("todo_task")
    try:
        for row in await tasks_db.fetch(
            "SELECT payload, published_at FROM outbox WHERE event_type = $1 AND created_at >= $2", TASK_CREATED, since
        ):
            event = envelope.decode(row["payload"])
            task_id = event.message.task.task_id  # type: ignore[attr-defined]
            created_at[task_id] = event.time  # type: ignore[assignment]
            relayed_at[task_id] = row["published_at"]
    finally:
        await tasks_db.close()
    scheduled_at: dict[str, datetime] = {}
    reminders_db = await system.connect("todo_reminder")
    try:
        for row in await reminders_db.fetch(
            "SELECT payload FROM outbox WHERE event_type = $1 AND created_at >= $2", REMINDER_SCHEDULED, since
        ):
            event = envelope.decode(row["payload"])
            task_id = event.message.reminder.task_id  # type: ignore[attr-defined]
            if task_id not in scheduled_at or event.time < scheduled_at[task_id]:  # type: ignore[operator]
                scheduled_at[task_id] = event.time  # type: ignore[assignment]
    finally:
        await reminders_db.close()
    latencies = [
        (scheduled_at[t] - created_at[t]).total_seconds() for t in step.created if t in scheduled_at and t in created_at
    ]
    step.without_schedule = sum(1 for t in step.created if t not in scheduled_at)
    step.latency = percentiles(latencies) if latencies else None
    # The relay's transaction time (PostgreSQL's now()), taken as it picks the batch up, before the broker's ack.
    relayed = [
        (relayed_at[t] - created_at[t]).total_seconds() for t in step.created if relayed_at.get(t) and t in created_at
    ]
    step.relayed = percentiles(relayed) if relayed else None


async def measure_rates(system: System, args: argparse.Namespace, rates: list[float]) -> list[LoadStep]:
    """Measure 1 and 2: each offered rate, then the closed loop; lag and schedule latency after each."""

    def seconds_of(rate: float | None) -> float:
        return float(args.light_seconds if rate is not None and rate <= 50 else args.seconds)

    steps = [LoadStep(f"{rate:.0f}/s offered for {seconds_of(rate):.0f} s", rate) for rate in rates]
    steps.append(LoadStep(f"closed loop of {args.closed_clients} clients for {args.seconds:.0f} s", None))
    for step in steps:
        first, took = await wait_zero_lag(system, args.drain)
        if took is None:
            print(f"  lag before {step.label} did not reach zero: {first.total:,} ({first.worst()})", flush=True)
        seconds = seconds_of(step.offered)
        workers = args.closed_clients if step.offered is None else 64
        meter = CpuMeter.start(system.cpu_groups)
        await run_load(system, step, seconds, workers)
        step.cpu = meter.stop()
        step.lag_at_end, step.zero_after = await wait_zero_lag(system, args.drain)
        await schedule_latency(system, step)
        print(f"  {step.label}: {step.commands:,} commands in {step.seconds:.1f} s = {step.rate:.0f}/s, errors "
              f"{dict(step.errors) or 0}; lag at end {step.lag_at_end.total:,} ({step.lag_at_end.worst()}, "
              f"{step.lag_at_end.outbox:,} in outboxes), zero after {fmt_seconds(step.zero_after)}; "
              f"created->scheduled {fmt_ms(step.latency)} (created->relayed {fmt_ms(step.relayed)}), "
              f"{step.without_schedule} without; CPU cores {fmt_cpu(step.cpu)}", flush=True)  # fmt: skip
    return steps


# --- catch-up --------------------------------------------------------------------------------------------------


@dataclass
class CatchUp:
    created: list[str] = field(default_factory=list)
    errors: int = 0
    backlog: Lag | None = None
    serving_after: float = 0.0
    zero_after: float | None = None


async def measure_catch_up(system: Distributed, args: argparse.Namespace) -> CatchUp:
    """Measure 4: every consumer process stopped for args.outage s while creates go on; time to zero lag."""
    result = CatchUp()
    await wait_zero_lag(system, args.drain)
    await system.stop_consumers()
    print(f"  consumers stopped; creating {args.outage_rate:.0f} tasks/s for {args.outage:.0f} s", flush=True)
    step = LoadStep("outage", args.outage_rate)
    await run_create_only(system, step, args.outage)
    result.created = step.created
    result.errors = sum(step.errors.values())
    result.backlog = await system.lag()
    loop = asyncio.get_running_loop()
    began = loop.time()
    await system.start_consumers()
    result.serving_after = loop.time() - began
    _, rest = await wait_zero_lag(system, args.catch_up_timeout)
    result.zero_after = None if rest is None else result.serving_after + rest
    print(f"  {len(result.created):,} created during the outage; backlog {result.backlog.total:,} "
          f"({result.backlog.worst()}); serving after {result.serving_after:.1f} s, zero lag after "
          f"{fmt_seconds(result.zero_after)}", flush=True)  # fmt: skip
    return result


async def run_create_only(system: System, step: LoadStep, seconds: float) -> None:
    """CreateTask only (a task with a reminder), paced at step.offered."""
    rng = random.Random(7)
    users = [f"bench-user-{u:03d}" for u in range(USERS)]
    loop = asyncio.get_running_loop()
    assert step.offered is not None
    pacer = Pacer(step.offered)
    async with grpc.aio.insecure_channel(system.task_address) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        end = loop.time() + seconds
        number = [0]

        async def client() -> None:
            while loop.time() < end:
                await pacer.wait()
                if loop.time() >= end:
                    return
                number[0] += 1
                request = create_request(rng, number[0])
                try:
                    reply = await stub.CreateTask(request, metadata=system.metadata(rng.choice(users)),
                                                  timeout=CALL_TIMEOUT)  # fmt: skip
                except grpc.aio.AioRpcError as error:
                    step.errors[error.code().name] += 1
                    continue
                step.created.append(reply.task.task_id)

        await asyncio.gather(*(client() for _ in range(32)))


# --- reminder lateness -----------------------------------------------------------------------------------------


@dataclass
class Lateness:
    count: int
    created_s: float = 0.0
    planned_before_s: float = 0.0
    figures: tuple[float, float, float] | None = None
    fired: int = 0
    early: int = 0
    failure: str = ""


async def measure_lateness(system: System, count: int, lead: float | None) -> Lateness:
    """Measure 3: count reminders due at random seconds within one minute; fired time - due time."""
    result = Lateness(count)
    ahead = timedelta(seconds=lead if lead is not None else 30 + count // 100)
    minute = (datetime.now(UTC) + ahead).replace(second=0, microsecond=0)
    minute += timedelta(minutes=1)
    rng = random.Random(3)
    users = [f"late-user-{u:03d}" for u in range(USERS)]
    began = time.perf_counter()
    async with grpc.aio.insecure_channel(system.task_address) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        queue = list(range(count))

        async def creator() -> None:
            while queue:
                i = queue.pop()
                due = minute + timedelta(seconds=rng.randrange(60) + 300)
                task = task_pb2.Task(
                    title=f"reminder {i}", due=utc(due),
                    reminders=[task_pb2.ReminderRule(before_due=duration_pb2.Duration(seconds=300))],
                )  # fmt: skip
                await stub.CreateTask(ts.CreateTaskRequest(task=task), metadata=system.metadata(users[i % USERS]),
                                      timeout=CALL_TIMEOUT)  # fmt: skip

        await asyncio.gather(*(creator() for _ in range(16)))
    result.created_s = time.perf_counter() - began
    window = (minute, minute + timedelta(minutes=1))
    conn = await system.connect("todo_reminder")
    try:
        while await conn.fetchval("SELECT count(*) FROM reminders WHERE fire_time >= $1 AND fire_time < $2",
                                  *window) < count:  # fmt: skip
            if datetime.now(UTC) > minute:
                result.failure = "not all planned before the minute started (a longer --lead helps)"
                print(f"  {result.failure}; created in {result.created_s:.0f} s", flush=True)
                return result
            await asyncio.sleep(0.5)
        result.planned_before_s = (minute - datetime.now(UTC)).total_seconds()
        print(f"  created {count:,} tasks in {result.created_s:.0f} s; all planned {result.planned_before_s:.0f} s "
              f"before the minute", flush=True)  # fmt: skip
        while True:
            fired = await conn.fetchval(
                "SELECT count(*) FROM reminders WHERE fire_time >= $1 AND fire_time < $2 AND fired_time IS NOT NULL",
                *window,
            )
            if fired >= count:
                break
            if datetime.now(UTC) > minute + timedelta(minutes=5):
                result.failure = f"only {fired:,} of {count:,} fired within 5 minutes"
                print(f"  {result.failure}", flush=True)
                return result
            await asyncio.sleep(0.5)
        rows = await conn.fetch(
            "SELECT extract(epoch FROM fired_time - fire_time)::float8 AS late FROM reminders "
            "WHERE fire_time >= $1 AND fire_time < $2",
            *window,
        )
        result.fired = int(
            await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE event_type = 'todo.reminder.v1.ReminderDue' AND created_at >= $1",
                minute,
            )
        )
    finally:
        await conn.close()
    lateness = [float(r["late"]) for r in rows]
    result.early = sum(1 for v in lateness if v < 0)
    result.figures = percentiles(lateness)
    print(f"  lateness p50/p99/max {fmt_ms(result.figures)}; {result.fired:,} ReminderDue, {result.early} early",
          flush=True)  # fmt: skip
    return result


# --- nothing lost, nothing doubled -----------------------------------------------------------------------------


async def activity_check(system: System, task_ids: list[str]) -> str:
    """Each task's TaskCreated recorded once in the activity log (after the lag is zero)."""
    conn = await system.connect("todo_audit")
    try:
        rows = await conn.fetch(
            "SELECT task_id, count(*) AS n FROM activity_log WHERE event_type = $1 GROUP BY task_id", TASK_CREATED
        )
    finally:
        await conn.close()
    counts = {row["task_id"]: int(row["n"]) for row in rows}
    missing = sum(1 for t in task_ids if t not in counts)
    doubled = sum(1 for t in task_ids if counts.get(t, 0) > 1)
    return f"{len(task_ids):,} tasks: {missing} without a TaskCreated activity entry, {doubled} with more than one"


# --- the run ---------------------------------------------------------------------------------------------------


@dataclass
class ModeResult:
    steps: list[LoadStep]
    catch_up: CatchUp | None
    lateness: Lateness | None
    check: str
    rates: list[float]


def fmt_seconds(value: float | None) -> str:
    return "not within the wait" if value is None else f"{value:.1f} s"


def fmt_ms(figures: tuple[float, float, float] | None) -> str:
    return "-" if figures is None else f"{figures[0]:.0f} / {figures[1]:.0f} / {figures[2]:.0f} ms"


async def run_mode(system: System, args: argparse.Namespace, rates: list[float]) -> ModeResult:
    print(f"{LABELS[system.mode]}: starting", flush=True)
    began = time.perf_counter()
    try:
        await system.start()
        print(f"{LABELS[system.mode]}: serving after {time.perf_counter() - began:.0f} s", flush=True)
        steps = await measure_rates(system, args, rates)
        catch_up = None
        if isinstance(system, Distributed) and args.outage > 0:
            catch_up = await measure_catch_up(system, args)
        lateness = await measure_lateness(system, args.reminders, args.lead) if args.reminders else None
        await wait_zero_lag(system, args.catch_up_timeout)
        created = [t for step in steps for t in step.created] + (catch_up.created if catch_up else [])
        check = await activity_check(system, created)
        print(f"  {check}", flush=True)
    finally:
        await system.stop()
    return ModeResult(steps, catch_up, lateness, check, rates)


def rows(results: dict[str, ModeResult], args: argparse.Namespace) -> list[str]:
    """The table: one row per measure, one column per system."""
    modes = [m for m in (EMBEDDED, DISTRIBUTED) if m in results]
    lines: list[str] = []

    def line(measure: str, cells: dict[str, str]) -> None:
        lines.append(f"| {measure} | " + " | ".join(cells.get(m, "not run") for m in modes) + " |")

    labels: list[str] = []
    for mode in modes:
        for step in results[mode].steps:
            if step.label not in labels:
                labels.append(step.label)

    def step_of(mode: str, label: str) -> LoadStep | None:
        return next((s for s in results[mode].steps if s.label == label), None)

    for label in labels:
        cells: dict[str, str] = {}
        for mode in modes:
            found = step_of(mode, label)
            if found is None or found.lag_at_end is None:
                continue
            step, end_lag = found, found.lag_at_end
            kept_up = step.zero_after is not None and step.zero_after <= args.settle
            errors = f", {sum(step.errors.values())} errors" if step.errors else ""
            cells[mode] = (
                f"**{step.rate:,.0f}/s** ({'kept up' if kept_up else 'fell behind'}); lag at end "
                f"{end_lag.total:,}, zero after {fmt_seconds(step.zero_after)}{errors}"
            )
        line(f"task commands/s (Create/Update/Complete), {label}", cells)
    for label in labels:
        cells = {}
        for mode in modes:
            found = step_of(mode, label)
            if found is None:
                continue
            step = found
            missing = f"; {step.without_schedule} without" if step.without_schedule else ""
            cells[mode] = f"{fmt_ms(step.latency)}{missing}; of which TaskCreated -> relay {fmt_ms(step.relayed)}"
        line(f"TaskCreated -> ReminderScheduled p50 / p99 / max, {label}", cells)
    for label in labels:
        cells = {}
        for mode in modes:
            found = step_of(mode, label)
            if found is not None:
                cells[mode] = fmt_cpu(found.cpu)
        line(f"CPU cores (of {os.cpu_count()}) during {label}", cells)
    cells = {}
    for mode in modes:
        late = results[mode].lateness
        if late is None:
            continue
        if late.failure:
            cells[mode] = late.failure
        else:
            cells[mode] = (
                f"**{fmt_ms(late.figures)}**; {late.fired:,} ReminderDue, {late.early} early; created in "
                f"{late.created_s:.0f} s"
            )
    line(f"reminder lateness (fired - due) p50 / p99 / max, {args.reminders:,} due in one minute", cells)
    cells = {}
    for mode in modes:
        catch_up = results[mode].catch_up
        if mode == EMBEDDED:
            cells[mode] = "n/a (the consumers share task_svc's process)"
        elif catch_up is not None and catch_up.backlog is not None:
            cells[mode] = (
                f"**{fmt_seconds(catch_up.zero_after)}** to zero lag from the restart; {len(catch_up.created):,} tasks "
                f"created meanwhile, backlog {catch_up.backlog.total:,} events; every process serving after "
                f"{catch_up.serving_after:.1f} s"
            )
    line(f"catch-up after every consumer was down {args.outage:.0f} s under {args.outage_rate:.0f} creates/s", cells)
    line("nothing lost or doubled (activity log)", {m: results[m].check for m in modes})
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--modes", nargs="+", choices=(EMBEDDED, DISTRIBUTED), default=[EMBEDDED, DISTRIBUTED])
    parser.add_argument("--rates-embedded", type=float, nargs="*", default=[30, 300])
    parser.add_argument("--rates-distributed", type=float, nargs="*", default=[30, 300])
    parser.add_argument("--seconds", type=float, default=30, help="length of each load step")
    parser.add_argument("--light-seconds", type=float, default=15, help="length of steps at <= 50 commands/s")
    parser.add_argument("--closed-clients", type=int, default=16)
    parser.add_argument("--settle", type=float, default=5, help="a rate counts if the lag is zero within this")
    parser.add_argument("--drain", type=float, default=120, help="how long to wait for zero lag after a step")
    parser.add_argument("--reminders", type=int, default=10_000)
    parser.add_argument("--lead", type=float, help="seconds from the first create to the reminders' minute "
                        "(default 30 + reminders/100; more on a loaded machine)")  # fmt: skip
    parser.add_argument("--outage", type=float, default=60)
    parser.add_argument("--outage-rate", type=float, default=100, help="creates/s while the consumers are down")
    parser.add_argument("--catch-up-timeout", type=float, default=600)
    parser.add_argument("--record", action="store_true", help="append the figures to docs/benchmarks.md")
    args = parser.parse_args()
    gateway = Path(os.environ.get("TODO_GATEWAY_BIN") or ROOT / "build" / "todo-gateway")
    if not gateway.is_absolute():
        gateway = ROOT / gateway
    if DISTRIBUTED in args.modes and not gateway.is_file():
        raise SystemExit(f"no gateway at {gateway}: run `make gateway`")
    # SIGTERM (a timeout, `kill`) stops what this run started, as Ctrl-C does.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    results: dict[str, ModeResult] = {}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="todo-bench-") as scratch:
        for mode in args.modes:
            system: System = Embedded(Path(scratch)) if mode == EMBEDDED else Distributed(Path(scratch), gateway)
            rates = args.rates_embedded if mode == EMBEDDED else args.rates_distributed
            results[mode] = await run_mode(system, args, rates)
    print(f"whole run {time.perf_counter() - began:.0f} s")
    table = rows(results, args)
    for row in table:
        print(row)
    if args.record:
        record_section(
            "Distributed mode (Kafka) and the embedded default, side by side",
            "Both systems in one run, one after the other, each on scratch data and free ports; client, Kafka, "
            "PostgreSQL and every service share the machine. Command: `make bench-distributed`.",
            ["measure", *(LABELS[m] for m in (EMBEDDED, DISTRIBUTED) if m in results)],
            table,
        )


if __name__ == "__main__":
    asyncio.run(main())
