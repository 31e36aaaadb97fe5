"""Task service benchmark: create throughput and latency, search latency at 100k and 1M tasks.

Starts the embedded default as its own process on a scratch data folder (or
uses --address of a running system for the create part), drives it over gRPC
with N concurrent clients, prints the figures and, with --record, appends them
to docs/benchmarks.md with the machine and the date.

The search part loads tasks straight into the task database with one SQL
statement per batch (loading a million tasks through the API would take longer
than the measurement deserves), then measures ListTasks over gRPC.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from todo_contracts.task.v1 import task_pb2, task_service_pb2_grpc
from todo_contracts.task.v1 import task_service_pb2 as ts
from todo_kit import embedded_pg
from todo_kit.auth import issue_token, signing_key_for
from todo_kit.config import Settings

ROOT = Path(__file__).resolve().parents[1]
VOCABULARY = (
    "pay",
    "rent",
    "call",
    "mom",
    "buy",
    "milk",
    "book",
    "dentist",
    "renew",
    "passport",
    "water",
    "plants",
    "clean",
    "kitchen",
    "file",
    "taxes",
    "send",
    "invoice",
    "review",
    "budget",
    "plan",
    "trip",
    "fix",
    "bike",
    "walk",
    "dog",
    "read",
    "report",
    "prepare",
    "slides",
    "email",
    "landlord",
    "order",
    "groceries",
    "update",
    "resume",
    "schedule",
    "meeting",
    "backup",
    "laptop",
    "cancel",
    "subscription",
    "pick",
    "kids",
    "wash",
    "car",
    "visit",
    "grandma",
    "return",
    "library",
    "books",
    "charge",
    "phone",
    "write",
    "blog",
    "post",
    "study",
    "spanish",
    "repair",
    "fence",
    "paint",
    "bedroom",
)


@dataclass
class Figures:
    label: str
    count: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def line(self) -> str:
        return (
            f"| {self.label} | {self.count} | {self.rate:,.0f}/s | {self.p50_ms:.1f} ms | {self.p99_ms:.1f} ms "
            f"| {self.max_ms:.1f} ms |"
        )


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000, ordered[-1] * 1000


class Host:
    """The embedded default as a child process on a scratch data folder."""

    def __init__(self, data_dir: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.data_dir = data_dir
        self.address = f"127.0.0.1:{self.port}"
        env = {**os.environ, "TODO_DATA_DIR": str(data_dir), "TODO_GRPC_PORT": str(self.port),
               "TODO_LOG_LEVEL": "WARNING"}  # fmt: skip
        self.log = (data_dir.parent / "host.log").open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", "todo_kit.embedded_host"], env=env,
                                        stdout=self.log, stderr=self.log)  # fmt: skip

    async def wait_serving(self) -> None:
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for _ in range(600):
                if self.process.poll() is not None:
                    raise SystemExit("the host exited; see host.log")
                try:
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.1)
        raise SystemExit("the host did not become SERVING")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)
        embedded_pg.kill_server(self.data_dir / "postgres")


def token(data_dir: Path, user: str) -> list[tuple[str, str]]:
    settings = Settings.from_env({"TODO_DATA_DIR": str(data_dir)})
    return [("authorization", f"Bearer {issue_token(signing_key_for(settings), user)}")]


async def bench_creates(address: str, md: list[tuple[str, str]], total: int, clients: int) -> Figures:
    latencies: list[float] = []
    rng = random.Random(1)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        remaining = total

        async def client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                title = " ".join(rng.sample(VOCABULARY, 3))
                request = ts.CreateTaskRequest(task=task_pb2.Task(title=title, tags=[rng.choice(VOCABULARY)]))
                started = time.perf_counter()
                await stub.CreateTask(request, metadata=md)
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - began
    return Figures(f"CreateTask, {clients} concurrent clients", total, elapsed, *percentiles(latencies))


async def load_tasks(data_dir: Path, first_user: int, users: int, per_user: int, heavy_user_tasks: int) -> float:
    """Inserts per_user tasks for each of users new users plus more of the heavy user's; returns the seconds."""
    server = embedded_pg.start(data_dir / "postgres")
    url = server.admin_url.replace("/postgres?", "/todo_task?")
    conn = await asyncpg.connect(url)
    began = time.perf_counter()
    try:
        await conn.execute("CREATE TEMP TABLE vocab(i int, w text)")
        await conn.executemany("INSERT INTO vocab VALUES ($1, $2)", list(enumerate(VOCABULARY)))
        new_users = range(first_user, first_user + users)
        plan = [(f"user-{u:05d}", per_user) for u in new_users] + [("heavy-user", heavy_user_tasks)]
        batch: list[tuple[str, int]] = []
        for user, count in plan:
            batch.append((user, count))
            if sum(c for _, c in batch) >= 50_000 or user == plan[-1][0]:
                await conn.execute(
                    """
                    INSERT INTO tasks (task_id, user_id, title, description, status, priority, tags, due_local,
                                       due_zone, due_at, reminders, create_time, update_time, version)
                    SELECT gen_random_uuid(), b.user_id,
                           coalesce((SELECT string_agg(w, ' ') FROM vocab
                                     WHERE i IN (g % $3, (g * 7) % $3, (g * 13) % $3)), 'task'),
                           coalesce((SELECT string_agg(w, ' ') FROM vocab
                                     WHERE i IN ((g * 3) % $3, (g * 11) % $3)), ''),
                           CASE WHEN g % 5 = 0 THEN 2 ELSE 1 END, 1 + g % 5,
                           ARRAY[(SELECT w FROM vocab WHERE i = (g * 17) % $3)],
                           now()::timestamp + (g % 400 - 100) * interval '1 day', 'UTC',
                           now() + (g % 400 - 100) * interval '1 day', '[]', now(), now(), 1
                    FROM unnest($1::text[], $2::int[]) AS b(user_id, n), generate_series(1, b.n) AS g
                    """,
                    [u for u, _ in batch],
                    [c for _, c in batch],
                    len(VOCABULARY),
                )
                batch = []
        await conn.execute("ANALYZE tasks")
    finally:
        await conn.close()
    return time.perf_counter() - began


async def bench_search(address: str, data_dir: Path, users: int, samples: int, label: str,
                       user_of: list[str]) -> list[Figures]:  # fmt: skip
    rng = random.Random(2)
    tokens = {user: token(data_dir, user) for user in set(user_of)}
    results = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        # Searches cover open and completed tasks, as they did when no status meant any (now it means open only).
        every = [task_pb2.TASK_STATUS_OPEN, task_pb2.TASK_STATUS_COMPLETED]
        queries = {
            "search 1 word": lambda: ts.ListTasksRequest(query=rng.choice(VOCABULARY), statuses=every, page_size=20),
            "search 2 words": lambda: ts.ListTasksRequest(
                query=" ".join(rng.sample(VOCABULARY, 2)), statuses=every, page_size=20
            ),
            "search prefix": lambda: ts.ListTasksRequest(
                query=rng.choice(VOCABULARY)[:3], statuses=every, page_size=20
            ),
            "filter overdue+tag, by due": lambda: ts.ListTasksRequest(
                overdue=True, tags_any=[rng.choice(VOCABULARY)], page_size=20
            ),
        }
        for name, make in queries.items():
            latencies = []
            began = time.perf_counter()
            for _ in range(samples):
                user = rng.choice(user_of)
                started = time.perf_counter()
                await stub.ListTasks(make(), metadata=tokens[user])
                latencies.append(time.perf_counter() - started)
            elapsed = time.perf_counter() - began
            results.append(Figures(f"ListTasks {name}, {label}", samples, elapsed, *percentiles(latencies)))
    return results


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    system = f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    return f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, {system}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creates", type=int, default=5000, help="creates per concurrency level")
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000], help="total tasks for search")
    parser.add_argument("--samples", type=int, default=500, help="ListTasks calls per query kind")
    parser.add_argument("--record", action="store_true", help="append the figures to docs/benchmarks.md")
    args = parser.parse_args()

    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="todo-bench-") as scratch:
        data_dir = Path(scratch) / "data"
        host = Host(data_dir)
        try:
            await host.wait_serving()
            md = token(data_dir, "bench-writer")
            await bench_creates(host.address, md, 500, 8)  # warm-up, not reported
            for clients in args.clients:
                figures = await bench_creates(host.address, md, args.creates, clients)
                print(figures.line(), flush=True)
                lines.append(figures.line())
            loaded = normal_users = heavy_loaded = 0
            for size in args.sizes:
                heavy = size // 10  # one user holds a tenth of all tasks
                per_user = 1000
                # New users each time, so every user called "with 1,000 tasks" has exactly that many.
                users = (size - loaded - (heavy - heavy_loaded)) // per_user
                took = await load_tasks(data_dir, normal_users, users, per_user, heavy - heavy_loaded)
                loaded, normal_users, heavy_loaded = size, normal_users + users, heavy
                print(f"loaded to {size:,} tasks in {took:.0f} s", flush=True)
                normal = [f"user-{u:05d}" for u in range(min(normal_users, 500))]
                label = f"{size:,} tasks"
                for figures in await bench_search(host.address, data_dir, users, args.samples,
                                                  f"{label}, users with 1,000 tasks", normal):  # fmt: skip
                    print(figures.line(), flush=True)
                    lines.append(figures.line())
                heavy_label = f"{label}, one user with {heavy:,} tasks"
                for figures in await bench_search(host.address, data_dir, 1, args.samples, heavy_label, ["heavy-user"]):
                    print(figures.line(), flush=True)
                    lines.append(figures.line())
        finally:
            host.stop()
    if args.record:
        record(lines)


def record(lines: list[str]) -> None:
    """Appends the task service figures to docs/benchmarks.md."""
    record_section(
        "Task service, embedded default",
        "Client and server share the machine. Command: `make bench`.",
        ["measure", "calls", "rate", "p50", "p99", "max"],
        lines,
    )


def record_section(title: str, how: str, columns: list[str], lines: list[str]) -> None:
    """Appends one dated section of figures, with the machine, to docs/benchmarks.md."""
    path = ROOT / "docs" / "benchmarks.md"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = [
        "",
        f"### {title} — {stamp}",
        "",
        f"Machine: {machine()}. {how}",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *lines,
        "",
    ]
    with path.open("a") as out:
        out.write("\n".join(section))
    print(f"recorded in {path.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
