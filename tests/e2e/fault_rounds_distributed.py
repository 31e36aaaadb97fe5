"""Randomized fault rounds on the distributed stack: the same load, kill -9 of service processes, the broker or the
database server at a random moment, restart, check.

    .venv/bin/python tests/e2e/fault_rounds.py --mode distributed --rounds 20 [--seed N] [--data-dir DIR] [--keep]
    make faults-distributed ROUNDS=20 SEED=1

Starts the distributed stack (deploy/local/stack.py: Kafka, one PostgreSQL server with a role per service, every
service as its own `todo_kit.kafka_host` process, two replicas of reminder_svc and notify_svc, the gateway with its
gRPC front) on free ports in a data folder of its own, and keeps it for the whole run. The clients (fault_rounds_common)
call the gateway's gRPC front as two users of their own (named after a run id, so a stack shared with other tests
keeps their data apart). Each round the script kills, with SIGKILL by pid, one of:
- one service process, any service, any replica (most rounds);
- two service processes at once;
- now and then the Kafka broker, or the PostgreSQL server (its postmaster);
the clients go on until the round's load window ends (a dead consumer leaves the commands' path standing) or their
first failed call, the script starts what it killed again, resolves every unknown outcome through the gRPC front and
waits until the system is quiet: no reminder past its time waiting, every outbox published, every consumer group's
committed offsets at the end of every partition, and nothing published since.

The checks: those of fault_rounds_common (every acknowledged command took effect exactly once; one task event per
task version; one next occurrence per completion; reminders planned for the current version, fired exactly once and
never early), and, from the topics and each service's own database read with its own role:
- every event on the topics (read without a consumer group up to the offsets the system was quiet at) reached
  every service that consumes it once in effect: its id is in that service's inbox (processed_events): the task
  service for OccurrenceRequested, the reminder service and the recurrence engine for the task events they act on,
  the notification service for ReminderDue, the audit service for every event;
- one activity entry per event (audit); one notification per reminder firing (notify), none for anything else;
- each consumer group's committed offsets at the end of every topic (zero lag);
- nothing new in the dead-letter topics since the run began.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from fault_rounds_common import (
    LATE_AFTER_SECONDS,
    REMINDER_TOPIC,
    SETTLE_GRACE,
    TASK_TOPIC,
    FaultRoundsBase,
    Findings,
    LoggedEvent,
    RoundsConfig,
    RunSummary,
    check_service_state,
    consumers_of,
    distinct_events,
    logged_event,
    read_service_rows,
    report,
)
from host_process import ROOT, gateway_bin, stable_ports

from todo_contracts import envelope, topics
from todo_kit.auth import issue_token, signing_key_for
from todo_kit.config import Settings

sys.path.insert(0, str(ROOT / "deploy" / "local"))

from stack import Child, Ports, Stack

NOTIFICATION_TOPIC = topics.NOTIFICATION_EVENTS.name
READ_TOPICS = (TASK_TOPIC, REMINDER_TOPIC, NOTIFICATION_TOPIC)
"""The topics whose events the checks follow (the audit topic carries chat events, which the load makes none of)."""
ALL_TOPICS = tuple(t.name for t in topics.ALL_TOPICS)
DEAD_LETTER_TOPICS = tuple(t.dead_letter for t in topics.ALL_TOPICS)
KAFKA_TIMEOUT = 30.0
POSTGRES_RESTART_TIMEOUT = 60.0

FAULTS: tuple[tuple[str, float], ...] = (
    ("one service process", 0.6),
    ("two service processes", 0.2),
    ("kafka", 0.1),
    ("postgresql", 0.1),
)
"""What a round kills, and how often."""


def run_users(run_id: str) -> tuple[str, str]:
    """The two users of a run (their own data on a stack other tests share)."""
    return (f"alice-{run_id}", f"bob-{run_id}")


def stack_env(key_file: Path) -> dict[str, str]:
    """The environment of a stack for fault rounds: quick group joins and a short broker-down report."""
    return {
        **os.environ,
        "TODO_JWT_SECRET_FILE": str(key_file),
        "TODO_LOG_LEVEL": "INFO",
        "KAFKA_HEAP_OPTS": "-Xms128m -Xmx512m",
        "TODO_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "TODO_KAFKA_HEARTBEAT_MS": "300",
        "TODO_KAFKA_BROKER_DOWN_SECONDS": "5",
        "TODO_EVENT_RETRY_MAX_DELAY_SECONDS": "2",
        # The load sends commands as fast as it can: far above any user's rate limit, on purpose.
        "TODO_RATE_LIMIT_PER_MINUTE": "0",
        "TODO_REMINDER_LATE_AFTER_SECONDS": str(LATE_AFTER_SECONDS),
    }


def free_ports() -> Ports:
    """Ports for a stack, outside the range outgoing connections take (killed processes get theirs back)."""
    kafka, controller, postgres, rest, grpc_front, services_from = stable_ports(5 + 8)[:6]
    return Ports(kafka=kafka, kafka_controller=controller, postgres=postgres, rest=rest, grpc=grpc_front,
                 services_from=services_from)  # fmt: skip


def _tp(topic: str, partition: int) -> Any:
    from aiokafka.structs import TopicPartition

    return TopicPartition(topic, partition)


def _partitions(names: Sequence[str]) -> list[Any]:
    """Every partition of the topics (their counts from the registry, which created them)."""
    counts = {name: t.partitions for t in topics.ALL_TOPICS for name in (t.name, t.dead_letter)}
    return [_tp(name, p) for name in names for p in range(counts[name])]


class StackReader:
    """Reads the stack's view: each service's database with its own role, the topics and the consumer groups."""

    def __init__(self, stack: Stack, users: Sequence[str]) -> None:
        self.stack = stack
        self.users = list(users)
        self._keys = {u.encode() for u in users}
        self.conns: dict[str, asyncpg.Connection] = {}
        self.events: list[tuple[str, LoggedEvent]] = []
        self._read_to: dict[Any, int] = {}
        self.quiet_at: dict[Any, int] = {}
        """End offsets of the followed topics when the system was last seen quiet (every group had consumed them)."""
        self.cut = datetime.min.replace(tzinfo=UTC)
        """Reminders due before it had fired, with their events consumed, when the system was last seen quiet."""
        self.dead_letters_at_start: dict[Any, int] = {}
        self.groups: list[str] = []

    # --- databases ------------------------------------------------------------------

    async def open(self) -> None:
        await self.reconnect()
        self.dead_letters_at_start = await self.end_offsets(DEAD_LETTER_TOPICS)

    async def reconnect(self) -> None:
        await self.close()
        for app_id, role in sorted(self.stack.roles.items()):
            # The role's password comes from the stack's data folder (postgres/passwords/<role>).
            self.conns[app_id] = await asyncpg.connect(role.database_url(role.database), timeout=10)

    async def close(self) -> None:
        for conn in self.conns.values():
            with contextlib.suppress(Exception):
                await conn.close()
        self.conns.clear()

    async def fetch(self, app_id: str, query: str, *args: Any) -> list[Any]:
        """A query on the service's own database, reconnecting once when the connection died (a server restart)."""
        try:
            return list(await self.conns[app_id].fetch(query, *args))
        except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, ConnectionError, OSError):
            await self.reconnect()
            return list(await self.conns[app_id].fetch(query, *args))

    # --- Kafka ----------------------------------------------------------------------

    async def end_offsets(self, names: Sequence[str]) -> dict[Any, int]:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(bootstrap_servers=self.stack.bootstrap, enable_auto_commit=False, group_id=None)
        async with asyncio.timeout(KAFKA_TIMEOUT):
            await consumer.start()
            try:
                return dict(await consumer.end_offsets(_partitions(names)))
            finally:
                await consumer.stop()

    async def group_offsets(self) -> dict[str, dict[Any, int]]:
        """Committed offsets of every service's consumer group (named "<app id>.<topic>")."""
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.stack.bootstrap)
        async with asyncio.timeout(KAFKA_TIMEOUT):
            await admin.start()
            try:
                groups = sorted(
                    g for g, _ in await admin.list_consumer_groups()
                    if g.split(".", 1)[0] in self.stack.roles and g.split(".", 1)[-1] in ALL_TOPICS
                )  # fmt: skip
                found = {}
                for group in groups:
                    offsets = await admin.list_consumer_group_offsets(group)
                    found[group] = {tp: meta.offset for tp, meta in offsets.items()}
                return found
            finally:
                await admin.close()

    async def lagging(self, ends: dict[Any, int]) -> list[str]:
        """Groups whose committed offset is behind the end of a partition of their topic."""
        groups = await self.group_offsets()
        self.groups = sorted(groups)
        behind = []
        for group, committed in groups.items():
            topic = group.split(".", 1)[1]
            for tp, end in ends.items():
                if tp.topic == topic and end > 0 and committed.get(tp, -1) < end:
                    behind.append(f"{group} at {committed.get(tp, 'nothing')}/{end} of {tp.topic}[{tp.partition}]")
        return behind

    async def read_new_events(self) -> None:
        """Reads the followed topics from where it left off up to quiet_at (the run's users' records only)."""
        from aiokafka import AIOKafkaConsumer

        wanted = {tp: end for tp, end in self.quiet_at.items() if end > self._read_to.get(tp, 0)}
        if not wanted:
            return
        consumer = AIOKafkaConsumer(bootstrap_servers=self.stack.bootstrap, enable_auto_commit=False, group_id=None)
        async with asyncio.timeout(2 * KAFKA_TIMEOUT):
            await consumer.start()
            try:
                consumer.assign(list(wanted))
                for tp in wanted:
                    consumer.seek(tp, self._read_to.get(tp, 0))
                while wanted:
                    for tp, records in (await consumer.getmany(*wanted, timeout_ms=500)).items():
                        for record in records:
                            if record.offset >= wanted.get(tp, 0):
                                continue
                            self._read_to[tp] = record.offset + 1
                            if record.key in self._keys:
                                self.events.append((tp.topic, self._logged(tp.topic, bytes(record.value))))
                        if self._read_to.get(tp, 0) >= wanted[tp]:
                            del wanted[tp]
            finally:
                await consumer.stop()

    @staticmethod
    def _logged(topic: str, value: bytes) -> LoggedEvent:
        event = envelope.decode(value)
        if topic == NOTIFICATION_TOPIC:
            return LoggedEvent(event.id, event.type)
        return logged_event(event)

    # --- quiet ----------------------------------------------------------------------

    async def unpublished(self) -> str:
        for app_id in sorted(self.conns):
            count = (await self.fetch(app_id, "SELECT count(*) FROM outbox WHERE published_at IS NULL"))[0][0]
            if count:
                return f"{count} events in the outbox of {app_id}"
        return ""

    async def quiet(self) -> str:
        """What is still moving ("" when nothing is): reminders past their time, outboxes, consumer groups.

        In that order: a reminder that fired had its ReminderDue in its outbox in the same transaction; an outbox
        published puts the event on its topic; a group's offset is committed only after the handler's transaction,
        whose own events are then in its outbox, which must be published again with no new record since.
        """
        moment = datetime.now(UTC) - SETTLE_GRACE
        waiting = (await self.fetch(
            "reminder_svc", "SELECT count(*) FROM reminders WHERE state = 1 AND fire_time < $1 AND user_id = ANY($2)",
            moment, self.users,
        ))[0][0]  # fmt: skip
        if waiting:
            return f"{waiting} reminders past their time not fired yet"
        if moving := await self.unpublished():
            return moving
        ends = await self.end_offsets(ALL_TOPICS)
        behind = await self.lagging(ends)
        if behind:
            return f"consumer groups behind: {', '.join(behind[:4])}" + (" ..." if len(behind) > 4 else "")
        if moving := await self.unpublished():
            return moving
        if await self.end_offsets(ALL_TOPICS) != ends:
            return "events still being published"
        self.quiet_at = {tp: end for tp, end in ends.items() if tp.topic in READ_TOPICS}
        self.cut = moment
        return ""

    async def last_scheduled_fire_time(self) -> datetime | None:
        rows = await self.fetch(
            "reminder_svc", "SELECT max(fire_time) FROM reminders WHERE state = 1 AND user_id = ANY($1)", self.users
        )
        return rows[0][0]  # type: ignore[no-any-return]

    async def inbox(self, app_id: str, event_ids: Sequence[str]) -> set[str]:
        """Which of the event ids the service's inbox holds."""
        rows = await self.fetch(
            app_id, "SELECT event_id FROM processed_events WHERE consumer = $1 AND event_id = ANY($2)", app_id,
            list(event_ids),
        )  # fmt: skip
        return {r["event_id"] for r in rows}


async def check(rounds: DistributedRounds) -> Findings:
    """Every check described at the top, over everything the run did so far."""
    reader, ledger = rounds.reader, rounds.ledger
    found = Findings()
    # Notifications first: one that exists now comes from a firing the reminder rows read next show (a reminder
    # due after the quiet moment may fire while the checks read).
    notified = Counter({r["reminder_id"]: r["n"] for r in await reader.fetch(
        "notify_svc", "SELECT reminder_id, count(*) AS n FROM notifications WHERE user_id = ANY($1)"
        " GROUP BY reminder_id", reader.users)})  # fmt: skip
    await reader.read_new_events()
    rows = await read_service_rows(reader.conns["task_svc"], reader.conns["reminder_svc"], reader.users)
    distinct, published_again = distinct_events(reader.events)
    fired_per_time = check_service_state(ledger, rows, distinct, reader.cut, found)

    # Every event reached every service that consumes it: its id is in that service's inbox.
    expected: dict[str, list[LoggedEvent]] = {}
    for topic, event in distinct.values():
        consumers = ["audit_svc"]
        if topic == TASK_TOPIC:
            consumers += consumers_of(event)
        elif topic == REMINDER_TOPIC and event.type.endswith("ReminderDue"):
            consumers.append("notify_svc")
        for consumer in consumers:
            expected.setdefault(consumer, []).append(event)
    delivered: Counter[str] = Counter()
    for consumer, events in sorted(expected.items()):
        seen = await reader.inbox(consumer, [e.event_id for e in events])
        delivered[consumer] = len(seen)
        for event in events:
            if event.event_id not in seen:
                found.lost.append(f"{event.type} {event.event_id} (task {event.task_id or event.series_id}"
                                  f"{event.reminder_id}) never reached {consumer}")  # fmt: skip

    # One activity entry per event.
    entries = Counter({r["event_id"]: r["n"] for r in await reader.fetch(
        "audit_svc", "SELECT event_id, count(*) AS n FROM activity_log WHERE user_id = ANY($1) GROUP BY event_id",
        reader.users)})  # fmt: skip
    for event_id, (_, event) in distinct.items():
        if entries[event_id] != 1:
            (found.lost if not entries[event_id] else found.doubled).append(
                f"{event.type} {event_id}: {entries[event_id]} activity entries"
            )

    # One notification per reminder firing, and none for anything else.
    due = {e.reminder_id for t, e in distinct.values() if t == REMINDER_TOPIC and e.type.endswith("ReminderDue")}
    for row in rows.reminders:
        rid = row["reminder_id"]
        if row["state"] == 2 and rid in due and notified[rid] != 1:
            bucket = found.lost if not notified[rid] else found.doubled
            bucket.append(f"reminder {rid}: {notified[rid]} notifications")
    fired = {r["reminder_id"] for r in rows.reminders if r["state"] == 2}
    found.wrong += [f"reminder {rid}: notified, never fired" for rid in notified if rid not in due and rid not in fired]

    # Nothing new in the dead-letter topics.
    dead = await reader.end_offsets(DEAD_LETTER_TOPICS)
    new_dead = {tp: end - reader.dead_letters_at_start.get(tp, 0) for tp, end in dead.items()}
    found.wrong += [f"{n} records in {tp.topic}[{tp.partition}]" for tp, n in sorted(new_dead.items()) if n > 0]

    found.figures.update({
        "events published twice (absorbed)": published_again,
        **{f"deliveries to {name}": n for name, n in sorted(delivered.items())},
        "activity entries": sum(entries[e] for e in distinct),
        "notifications": sum(notified.values()),
        "moments reminded of": len(fired_per_time),
        "consumer groups at the end": len(reader.groups),
        "dead letters": sum(n for n in new_dead.values() if n > 0),
    })  # fmt: skip
    return found


class DistributedRounds(FaultRoundsBase):
    """The rounds against a running distributed stack (started and stopped by the caller)."""

    load_through_fault = True

    def __init__(
        self, stack: Stack, config: RoundsConfig, out: Callable[[str], None] = print, run_id: str = ""
    ) -> None:
        super().__init__(config, out)
        self.stack = stack
        self.users = run_users(run_id or uuid.uuid4().hex[:8])
        self.reader = StackReader(stack, self.users)
        self.killed: list[Child] = []
        self.killed_kafka = False
        self.killed_postgres = False

    @property
    def address(self) -> str:
        return str(self.stack.grpc_address)

    async def start(self) -> None:
        settings = Settings.from_env({"TODO_JWT_SECRET_FILE": self.stack.env["TODO_JWT_SECRET_FILE"]})
        key = signing_key_for(settings, create=False)
        self.tokens = {user: [("authorization", f"Bearer {issue_token(key, user)}")] for user in self.users}
        await self.wait_all_serving()
        await self.reader.open()

    async def close(self) -> None:
        await self.reader.close()

    async def wait_all_serving(self) -> None:
        for child in self.stack.services:
            await asyncio.to_thread(self.stack.wait_serving, child)

    async def inject(self, rng: random.Random) -> str:
        kind = rng.choices([k for k, _ in FAULTS], [w for _, w in FAULTS])[0]
        by_name = {child.name: child for child in self.stack.services}
        if kind == "kafka":
            assert self.stack.kafka is not None
            self.stack.kafka.signal(signal.SIGKILL)
            await asyncio.to_thread(self.stack.kafka.wait, 30)
            self.killed_kafka = True
            names = ["kafka"]
        elif kind == "postgresql":
            assert self.stack.postgres is not None
            await asyncio.to_thread(self.stack.postgres.kill)
            self.killed_postgres = True
            names = ["postgresql"]
        else:
            names = rng.sample(sorted(by_name), 2 if kind == "two service processes" else 1)
            for name in names:
                by_name[name].signal(signal.SIGKILL)  # by the pid of the process the stack started
            for name in names:
                await asyncio.to_thread(by_name[name].wait, 30)
                self.killed.append(by_name[name])
        self.summary.kills += len(names)
        self.summary.kills_by_target.update(names)
        return "kill -9 " + " + ".join(names)

    async def recover(self) -> None:
        if self.killed_postgres:
            await asyncio.to_thread(self._start_postgres)
            await self.reader.reconnect()
            self.killed_postgres = False
        if self.killed_kafka:
            await asyncio.to_thread(self.stack.start_kafka)
            self.killed_kafka = False
        killed, self.killed = self.killed, []
        for child in killed:
            await asyncio.to_thread(self.stack.restart, child)
        await self.wait_all_serving()

    def _start_postgres(self) -> None:
        """Starts the server again; its old backends may hold the shared memory for a moment after a SIGKILL."""
        assert self.stack.postgres is not None
        deadline = time.monotonic() + POSTGRES_RESTART_TIMEOUT
        while True:
            try:
                self.stack.postgres.start()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    async def quiet(self) -> str:
        try:
            return await self.reader.quiet()
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            return f"reading the state failed: {type(exc).__name__}: {exc}"

    async def check(self) -> Findings:
        return await check(self)

    async def last_scheduled_fire_time(self) -> datetime | None:
        return await self.reader.last_scheduled_fire_time()


def main(config: RoundsConfig, folder_given: Path | None, keep: bool) -> int:
    """Starts a stack in a folder of its own, runs the rounds, stops the stack; exit status 1 on any finding."""
    binary = gateway_bin()
    if not binary.is_file():
        print(f"no gateway binary at {binary}: run `make gateway` (or set TODO_GATEWAY_BIN)", file=sys.stderr)
        return 2
    # Short: the stack's sockets and paths stay well within the limits.
    folder = folder_given or Path(tempfile.mkdtemp(prefix="todo-faults-"))
    folder.mkdir(parents=True, exist_ok=True)
    key_file = folder / "signing-key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(48))
    stack = Stack(folder / "stack", ports=free_ports(), gateway_bin=binary, web_dir=None, env=stack_env(key_file))
    rounds = DistributedRounds(stack, config, out=lambda line: print(line, flush=True))

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)  # stop what this run started on SIGTERM too, not only on Ctrl-C
    summary: RunSummary
    try:
        print(f"starting the stack in {folder}", flush=True)
        stack.start()
        summary = asyncio.run(rounds.run())
    except KeyboardInterrupt:
        rounds.summary.failure = f"interrupted while {rounds.phase}"
        summary = rounds.summary
    except Exception as exc:
        rounds.summary.failure = f"{type(exc).__name__}: {exc} (while {rounds.phase})"
        summary = rounds.summary
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the orderly stop short
        stack.stop()  # everything the stack started, by pid
    for line in report(summary, rounds.ledger, config):
        print(line)
    if summary.ok and not keep and not folder_given:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        print(f"data and logs kept in {folder}")
    return 0 if summary.ok else 130 if summary.failure.startswith("interrupted") else 1
