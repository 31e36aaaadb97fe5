"""Notification and activity benchmark on the embedded default.

1. Stream delivery: --users users each hold one open StreamNotifications;
   --reminders reminders (spread over the users) come due within the same
   minute. Latency = the moment the client read the notification off its
   stream minus the reminder's due time (its fire time). Every notification must
   reach its own user's stream, once.
2. Idle streams: --idle streams (one user each) are opened and left idle; the
   host's resident memory before and after gives the cost of one stream. Then
   --probe reminders come due for users among them within 30 s, and their
   delivery latency is measured with every stream still open.
3. ListActivity at --activity entries: rows are written straight into the
   audit database (the benchmark measures reading, not recording), then the
   measured user's activity is listed with each filter and paged deep.

Starts its own embedded default on a scratch data folder. --record appends the
figures to docs/benchmarks.md with the machine and the date.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from bench_reminders import db, utc
from bench_tasks import Host, percentiles, record_section, token
from google.protobuf import duration_pb2

from todo_contracts.audit.v1 import audit_pb2, audit_pb2_grpc
from todo_contracts.common.v1 import common_pb2
from todo_contracts.notify.v1 import notify_pb2, notify_pb2_grpc
from todo_contracts.task.v1 import task_pb2, task_service_pb2_grpc
from todo_contracts.task.v1 import task_service_pb2 as ts

STREAMS_PER_CHANNEL = 100  # HTTP/2 connections a browser-facing gateway would spread streams over
REMINDER_LEAD = timedelta(seconds=300)  # each reminder fires this long before its task is due


def resident_kib(pid: int) -> int:
    """The process's resident memory (VmRSS) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Streams:
    """One open StreamNotifications per user; records when each notification arrives and for whom."""

    def __init__(self, host: Host, data_dir: Path, users: list[str]) -> None:
        self.host = host
        self.users = users
        self.tokens = {user: token(data_dir, user) for user in users}
        self.channels: list[grpc.aio.Channel] = []
        self.calls: list[object] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.received: dict[str, tuple[float, str]] = {}  # title -> (arrival, user of the stream)
        self.misdelivered = 0
        self.repeated = 0
        self.heartbeats: set[str] = set()

    async def open(self) -> None:
        for index, user in enumerate(self.users):
            if index % STREAMS_PER_CHANNEL == 0:
                self.channels.append(grpc.aio.insecure_channel(self.host.address))
            stub = notify_pb2_grpc.NotificationServiceStub(self.channels[-1])
            call = stub.StreamNotifications(notify_pb2.StreamNotificationsRequest(), metadata=self.tokens[user])
            self.calls.append(call)
            self.tasks.append(asyncio.create_task(self._read(user, call)))
        while len(self.heartbeats) < len(self.users):  # every stream answered: all are open
            failed = [t for t in self.tasks if t.done()]
            if failed:
                failed[0].result()
                raise SystemExit("a stream ended early")
            await asyncio.sleep(0.2)

    async def _read(self, user: str, call: object) -> None:
        async for message in call:  # type: ignore[attr-defined]
            if message.HasField("heartbeat"):
                self.heartbeats.add(user)
                continue
            arrival = time.time()
            title = message.notification.title
            if title in self.received:
                self.repeated += 1
            self.received[title] = (arrival, user)

    async def close(self) -> None:
        for call in self.calls:
            call.cancel()  # type: ignore[attr-defined]
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for channel in self.channels:
            await channel.close()


async def create_reminded_tasks(
    host: Host, data_dir: Path, owners: list[str], fire_at: Callable[[int], datetime]
) -> dict[str, tuple[datetime, str]]:
    """One task per owner entry whose reminder fires at fire_at(i); returns notification title -> (fire time, user)."""
    tokens = {user: token(data_dir, user) for user in set(owners)}
    expected: dict[str, tuple[datetime, str]] = {}
    queue = list(enumerate(owners))
    async with grpc.aio.insecure_channel(host.address) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)

        async def creator() -> None:
            while queue:
                i, user = queue.pop()
                fire = fire_at(i).replace(microsecond=0)  # due times are to the second
                title = f"bench {i}"
                task = task_pb2.Task(
                    title=title,
                    due=utc(fire + REMINDER_LEAD),
                    reminders=[task_pb2.ReminderRule(before_due=duration_pb2.Duration(seconds=300))],
                )
                await stub.CreateTask(ts.CreateTaskRequest(task=task), metadata=tokens[user])
                expected[f"Reminder: {title}"] = (fire, user)

        await asyncio.gather(*(creator() for _ in range(16)))
    return expected


async def wait_delivered(streams: Streams, expected: dict[str, tuple[datetime, str]], until: datetime) -> list[float]:
    """Waits for every expected notification on its stream; returns the latencies in seconds."""
    while len(streams.received) < len(expected):
        if datetime.now(UTC) > until:
            raise SystemExit(f"only {len(streams.received)} of {len(expected)} notifications arrived")
        await asyncio.sleep(0.5)
    latencies = []
    for title, (fire, user) in expected.items():
        arrival, stream_user = streams.received[title]
        if stream_user != user:
            streams.misdelivered += 1
        latencies.append(arrival - fire.timestamp())
    return latencies


async def stages(data_dir: Path, streams: Streams) -> str:
    """Where the time went: reminder fired late, fired -> notification stored, stored -> read off the stream."""
    reminders = await db(data_dir, "todo_reminder")
    notify = await db(data_dir, "todo_notify")
    try:
        fired = {
            r["reminder_id"]: (r["fire_time"], r["fired_time"])
            for r in await reminders.fetch("SELECT reminder_id, fire_time, fired_time FROM reminders WHERE state = 2")
        }
        stored = await notify.fetch("SELECT reminder_id, title, create_time FROM notifications")
    finally:
        await reminders.close()
        await notify.close()
    late, to_store, to_stream = [], [], []
    for row in stored:
        if row["reminder_id"] not in fired or row["title"] not in streams.received:
            continue
        fire_time, fired_time = fired[row["reminder_id"]]
        late.append((fired_time - fire_time).total_seconds())
        to_store.append((row["create_time"] - fired_time).total_seconds())
        to_stream.append(streams.received[row["title"]][0] - row["create_time"].timestamp())
    parts = []
    for name, values in (("fired late", late), ("fired -> stored", to_store), ("stored -> read", to_stream)):
        p50, p99, _ = percentiles(values)
        parts.append(f"{name} p50 {p50:.0f} / p99 {p99:.0f} ms")
    return "; ".join(parts)


async def bench_stream_delivery(host: Host, data_dir: Path, count: int, users: int) -> list[str]:
    names = [f"user-{u}" for u in range(users)]
    streams = Streams(host, data_dir, names)
    began = time.perf_counter()
    await streams.open()
    opened = time.perf_counter() - began
    minute = (datetime.now(UTC) + timedelta(seconds=60 + count // 40)).replace(second=0, microsecond=0)
    rng = random.Random(5)
    offsets = [rng.uniform(0, 60) for _ in range(count)]
    expected = await create_reminded_tasks(
        host, data_dir, [names[i % users] for i in range(count)], lambda i: minute + timedelta(seconds=offsets[i])
    )
    if datetime.now(UTC) > minute:
        raise SystemExit("tasks were not all created before the minute started; use fewer")
    print(f"{users} streams open in {opened:.1f} s; {count} tasks created; waiting for the minute", flush=True)
    try:
        latencies = await wait_delivered(streams, expected, minute + timedelta(minutes=5))
    finally:
        await streams.close()
    breakdown = await stages(data_dir, streams)
    print(breakdown, flush=True)
    p50, p99, worst = percentiles(latencies)
    early = sum(1 for v in latencies if v < 0)
    return [
        f"| reminder due -> notification read off its user's open stream, {count:,} due within one minute, "
        f"{users:,} users with a stream open | {p50:.0f} ms | {p99:.0f} ms | {worst:.0f} ms "
        f"| {len(streams.received):,} received, {streams.misdelivered} to a wrong user, {streams.repeated} repeated, "
        f"{early} early; {breakdown} |"
    ]


async def bench_idle_streams(host: Host, data_dir: Path, idle: int, probe: int) -> list[str]:
    names = [f"idle-{u}" for u in range(idle)]
    # Let the host settle, then measure it with no stream open.
    await asyncio.sleep(2)
    before = resident_kib(host.process.pid)
    streams = Streams(host, data_dir, names)
    began = time.perf_counter()
    await streams.open()
    opened = time.perf_counter() - began
    await asyncio.sleep(2)
    after = resident_kib(host.process.pid)
    per_stream = (after - before) / idle
    print(f"{idle} idle streams open in {opened:.1f} s; host RSS {before / 1024:.0f} -> {after / 1024:.0f} MiB")
    rng = random.Random(9)
    start = datetime.now(UTC) + timedelta(seconds=20 + probe // 50)
    offsets = [rng.uniform(0, 30) for _ in range(probe)]
    owners = [rng.choice(names) for _ in range(probe)]
    try:
        expected = await create_reminded_tasks(host, data_dir, owners, lambda i: start + timedelta(seconds=offsets[i]))
        latencies = await wait_delivered(streams, expected, start + timedelta(minutes=5))
    finally:
        await streams.close()
    p50, p99, worst = percentiles(latencies)
    return [
        f"| idle live streams: host memory per open stream, {idle:,} streams "
        f"| {per_stream:.1f} KiB | - | - | host RSS {before / 1024:.0f} -> {after / 1024:.0f} MiB, "
        f"opened in {opened:.0f} s |",
        f"| reminder due -> notification on its stream with {idle:,} streams open, {probe:,} due within 30 s "
        f"| {p50:.0f} ms | {p99:.0f} ms | {worst:.0f} ms | {streams.misdelivered} to a wrong user, "
        f"{streams.repeated} repeated |",
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reminders", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--probe", type=int, default=1_000)
    parser.add_argument("--activity", type=int, default=1_000_000)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    lines: list[str] = []
    # Room for every stream the benchmark opens (the defaults are sized for a smaller host).
    os.environ.setdefault("TODO_NOTIFY_MAX_STREAMS", str(max(args.users, args.idle) + 100))
    with tempfile.TemporaryDirectory(prefix="todo-bench-") as scratch:
        data_dir = Path(scratch) / "data"
        host = Host(data_dir)
        try:
            await host.wait_serving()
            if args.reminders:
                lines += await bench_stream_delivery(host, data_dir, args.reminders, args.users)
                print(lines[-1], flush=True)
            if args.idle:
                lines += await bench_idle_streams(host, data_dir, args.idle, args.probe)
                print("\n".join(lines[-2:]), flush=True)
            if args.activity:
                lines += await bench_activity(host, data_dir, args.activity)
                print("\n".join(lines[-6:]), flush=True)
        finally:
            host.stop()
    if args.record:
        record_section(
            "Notifications and activity, embedded default",
            "Command: `make bench-notify`.",
            ["measure", "p50", "p99", "max", "notes"],
            lines,
        )


ACTIVITY_USER = "activity-user"
ACTIVITY_TYPES = (
    "todo.task.v1.TaskCreated",
    "todo.task.v1.TaskUpdated",
    "todo.task.v1.TaskCompleted",
    "todo.reminder.v1.ReminderScheduled",
    "todo.reminder.v1.ReminderDue",
    "todo.notify.v1.NotificationSent",
)


async def fill_activity(data_dir: Path, entries: int) -> None:
    """Writes `entries` entries of one user (one a second, 2,000 tasks) straight into the log, as its owner."""
    conn = await db(data_dir, "todo_audit")
    try:
        await conn.execute(
            """
            INSERT INTO activity_log (user_id, sequence, event_id, event_type, source, task_id, summary,
                                      payload_json, occur_time, record_time, previous_hash, entry_hash)
            SELECT $1, g, 'bench-' || g, ($2::text[])[1 + g % 6], '/todo/task_svc',
                   md5('task-' || (g % 2000))::uuid::text,
                   'Updated “bench task ' || (g % 2000) || '”', '{}',
                   now() - ($3 - g) * interval '1 second', now(), sha256(int8send(g - 1)), sha256(int8send(g))
            FROM generate_series(1, $3::bigint) AS g
            """,
            ACTIVITY_USER,
            list(ACTIVITY_TYPES),
            entries,
        )
        await conn.execute("ANALYZE activity_log")
    finally:
        await conn.close()


async def bench_activity(host: Host, data_dir: Path, entries: int) -> list[str]:
    began = time.perf_counter()
    await fill_activity(data_dir, entries)
    print(f"{entries:,} activity entries written in {time.perf_counter() - began:.0f} s", flush=True)
    md = token(data_dir, ACTIVITY_USER)
    now = datetime.now(UTC)
    day = audit_pb2.ListActivityRequest()
    # Six hours from the middle of the log (one entry a second: 21,600 entries in range).
    day.occur_range.start_time.FromDatetime(now - timedelta(seconds=entries // 2))
    day.occur_range.end_time.FromDatetime(now - timedelta(seconds=entries // 2) + timedelta(hours=6))
    shapes = {
        "newest first, no filter": audit_pb2.ListActivityRequest(),
        "one task": audit_pb2.ListActivityRequest(task_id=str(uuid.UUID(hashlib.md5(b"task-1234").hexdigest()))),
        "two event types": audit_pb2.ListActivityRequest(
            event_types=["todo.task.v1.TaskCompleted", "todo.reminder.v1.ReminderDue"]
        ),
        "six hours in the middle of the log": day,
        "oldest first": audit_pb2.ListActivityRequest(sort_order=common_pb2.SORT_ORDER_ASCENDING),
    }
    lines = []
    async with grpc.aio.insecure_channel(host.address) as channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        for name, request in shapes.items():
            latencies = []
            for round_ in range(300):
                started = time.perf_counter()
                reply = await stub.ListActivity(request, metadata=md)
                latencies.append(time.perf_counter() - started)
                if round_ == 0 and not reply.entries:
                    raise SystemExit(f"ListActivity ({name}) found nothing")
            p50, p99, worst = percentiles(latencies[20:])  # the first calls warm caches
            lines.append(
                f"| ListActivity, {entries:,} entries of the user, {name}, page of 50 "
                f"| {p50:.1f} ms | {p99:.1f} ms | {worst:.1f} ms | 280 calls |"
            )
        # Deep paging: 200 pages of 50 in a row, each call timed.
        latencies = []
        request = audit_pb2.ListActivityRequest()
        for _ in range(200):
            started = time.perf_counter()
            reply = await stub.ListActivity(request, metadata=md)
            latencies.append(time.perf_counter() - started)
            request = audit_pb2.ListActivityRequest(page_token=reply.next_page_token)
        p50, p99, worst = percentiles(latencies)
        lines.append(
            f"| ListActivity, {entries:,} entries, pages 1 to 200 in a row (page token) "
            f"| {p50:.1f} ms | {p99:.1f} ms | {worst:.1f} ms | - |"
        )
    return lines


if __name__ == "__main__":
    asyncio.run(main())
