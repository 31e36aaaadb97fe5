"""Reminder and recurrence benchmark on the embedded default.

1. Reminder lateness: 10,000 reminders (by default) come due within the same
   minute; lateness is the ReminderDue's time (when it was published through the
   outbox) minus the reminder's due time, read back from the reminder database.
2. Regeneration latency: 1,000 completions of recurring tasks; from CompleteTask
   returning to the next occurrence being readable through ListTasks (polled
   every 5 ms by the client, one completion at a time).

Starts its own embedded default on a scratch data folder. --record appends the
figures to docs/benchmarks.md with the machine and the date.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import grpc
from bench_tasks import Host, percentiles, record_section, token
from google.protobuf import duration_pb2

from todo_contracts.common.v1 import common_pb2
from todo_contracts.task.v1 import task_pb2, task_service_pb2_grpc
from todo_contracts.task.v1 import task_service_pb2 as ts
from todo_kit import embedded_pg


def utc(moment: datetime) -> common_pb2.ZonedDateTime:
    return common_pb2.ZonedDateTime(local_time=moment.strftime("%Y-%m-%dT%H:%M:%S"), time_zone="UTC")


async def db(data_dir: Path, name: str) -> asyncpg.Connection:
    server = embedded_pg.start(data_dir / "postgres")
    return await asyncpg.connect(server.admin_url.replace("/postgres?", f"/{name}?"))


async def bench_lateness(host: Host, data_dir: Path, count: int, users: int) -> list[str]:
    """Creates count tasks whose reminders come due within one minute; returns report lines."""
    tokens = [token(data_dir, f"user-{u}") for u in range(users)]
    # Far enough ahead for every reminder to be planned before the minute starts.
    minute = (datetime.now(UTC) + timedelta(seconds=30 + count // 150)).replace(second=0, microsecond=0)
    minute += timedelta(minutes=1)
    rng = random.Random(3)
    began = time.perf_counter()
    async with grpc.aio.insecure_channel(host.address) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        queue = list(range(count))

        async def creator() -> None:
            while queue:
                i = queue.pop()
                due = minute + timedelta(seconds=rng.randrange(60) + 300)
                task = task_pb2.Task(
                    title=f"reminder {i}",
                    due=utc(due),
                    reminders=[task_pb2.ReminderRule(before_due=duration_pb2.Duration(seconds=300))],
                )
                await stub.CreateTask(ts.CreateTaskRequest(task=task), metadata=tokens[i % users])

        await asyncio.gather(*(creator() for _ in range(16)))
    created = time.perf_counter() - began
    conn = await db(data_dir, "todo_reminder")
    try:
        while await conn.fetchval("SELECT count(*) FROM reminders") < count:
            if datetime.now(UTC) > minute:
                raise SystemExit("reminders were not all planned before the minute started; use fewer")
            await asyncio.sleep(0.5)
        planned_by = (datetime.now(UTC) - minute).total_seconds()
        print(
            f"created {count} tasks in {created:.0f} s; all planned {-planned_by:.0f} s before the minute", flush=True
        )
        while True:
            fired = await conn.fetchval("SELECT count(*) FROM reminders WHERE state = 2")
            if fired >= count:
                break
            if datetime.now(UTC) > minute + timedelta(minutes=5):
                raise SystemExit(f"only {fired} of {count} reminders fired within 5 minutes")
            await asyncio.sleep(0.5)
        rows = await conn.fetch("SELECT extract(epoch FROM fired_time - fire_time) AS late FROM reminders")
        published = await conn.fetchval("SELECT count(*) FROM outbox WHERE event_type = 'todo.reminder.v1.ReminderDue'")
    finally:
        await conn.close()
    lateness = [float(r["late"]) for r in rows]
    assert published == count, f"{published} ReminderDue events for {count} reminders"
    p50, p99, worst = percentiles(lateness)
    early = sum(1 for v in lateness if v < 0)
    return [
        f"| reminder lateness (ReminderDue time - due time), {count:,} due within one minute, {users} users "
        f"| {p50:.0f} ms | {p99:.0f} ms | {worst:.0f} ms | {published:,} ReminderDue, {early} early |"
    ]


async def bench_regeneration(host: Host, data_dir: Path, count: int, in_flight: int) -> list[str]:
    """Completes count recurring tasks and measures until each next occurrence is listed."""
    md = token(data_dir, "regenerator")
    async with grpc.aio.insecure_channel(host.address) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        firsts = []
        for i in range(count):
            task = task_pb2.Task(
                title=f"daily {i}",
                due=common_pb2.ZonedDateTime(local_time="2026-12-07T09:00", time_zone="Europe/Berlin"),
                recurrence=task_pb2.Recurrence(rrule="FREQ=DAILY"),
            )
            firsts.append((await stub.CreateTask(ts.CreateTaskRequest(task=task), metadata=md)).task)
        latencies: list[float] = []
        queue = list(firsts)

        async def completer() -> None:
            while queue:
                first = queue.pop()
                await stub.CompleteTask(ts.CompleteTaskRequest(task_id=first.task_id), metadata=md)
                accepted = time.perf_counter()
                request = ts.ListTasksRequest(
                    series_id=first.recurrence.series_id, statuses=[task_pb2.TASK_STATUS_OPEN]
                )
                while not (await stub.ListTasks(request, metadata=md)).tasks:
                    if time.perf_counter() - accepted > 60:
                        raise SystemExit("an occurrence did not appear within 60 s")
                    await asyncio.sleep(0.005)
                latencies.append(time.perf_counter() - accepted)

        await asyncio.gather(*(completer() for _ in range(in_flight)))
    p50, p99, worst = percentiles(latencies)
    return [
        f"| regeneration (CompleteTask accepted -> next occurrence listed), {count:,} completions, "
        f"{in_flight} at a time | {p50:.0f} ms | {p99:.0f} ms | {worst:.0f} ms | - |"
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reminders", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--completions", type=int, default=1_000)
    parser.add_argument("--in-flight", type=int, default=1)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="todo-bench-") as scratch:
        data_dir = Path(scratch) / "data"
        host = Host(data_dir)
        try:
            await host.wait_serving()
            if args.reminders:
                lines += await bench_lateness(host, data_dir, args.reminders, args.users)
                print(lines[-1], flush=True)
            if args.completions:
                lines += await bench_regeneration(host, data_dir, args.completions, args.in_flight)
                print(lines[-1], flush=True)
        finally:
            host.stop()
    if args.record:
        record_section(
            "Reminders and recurrence, embedded default",
            "Command: `make bench-reminders`.",
            ["measure", "p50", "p99", "max", "notes"],
            lines,
        )


if __name__ == "__main__":
    asyncio.run(main())
