"""REST gateway benchmark on the embedded default with the gateway (what `make up` runs).

1. Added latency: ListTasks (one page of 20 of a user's --tasks tasks) called
   --samples times over gRPC, then as GET /v1/tasks through the gateway, one
   call at a time on a kept-alive connection; p50 and p99 of each and the
   difference (what the gateway adds: HTTP parsing, JSON, one more hop).
2. Live streams: --streams server-sent event streams of StreamNotifications
   (one user each, each on its own HTTP connection, as browsers would) are
   opened through one gateway; the gateway's resident memory (/proc VmRSS)
   before and after gives its cost per stream. Then --probe reminders of users
   among them fire in the same second; event-to-client latency = the moment the
   client parsed the event minus the reminder's fire time, and minus the
   notification's create time (the stream and the gateway alone).

Starts its own host and gateway on a scratch data folder (build the gateway
first: `make gateway`). 10,000 streams need 10,000 file descriptors on each side
(the script raises its own soft limit). --record appends the figures to
docs/benchmarks.md with the machine and the date.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import grpc
from bench_tasks import percentiles, record_section

from todo_contracts.task.v1 import task_service_pb2 as ts
from todo_contracts.task.v1 import task_service_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
from host_process import HostProcess, free_port

SSE = {"Accept": "text/event-stream"}


def resident_kib(pid: int) -> int:
    """The process's resident memory (VmRSS) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def gateway_pid(host_pid: int) -> int:
    """The gateway child process of the host."""
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(host_pid) and fields.get("Name", "").strip() == "todo-gateway":
            return int(status.parent.name)
    raise SystemExit("no gateway process under the host")


async def bench_latency(host: HostProcess, tasks: int, samples: int) -> list[str]:
    """ListTasks over gRPC and through the gateway, one call at a time."""
    md = host.bearer("bench-latency")
    headers = host.auth_header("bench-latency")
    async with grpc.aio.insecure_channel(host.address) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        for number in range(tasks):
            await stub.CreateTask(ts.CreateTaskRequest(task={"title": f"bench task {number}"}), metadata=md)
        grpc_times: list[float] = []
        for index in range(samples + 50):
            started = time.perf_counter()
            await stub.ListTasks(ts.ListTasksRequest(page_size=20), metadata=md)
            if index >= 50:  # warm-up calls are not counted
                grpc_times.append(time.perf_counter() - started)
    rest_times: list[float] = []
    async with aiohttp.ClientSession() as session:
        for index in range(samples + 50):
            started = time.perf_counter()
            async with session.get(f"{host.web_url}/v1/tasks?page_size=20", headers=headers) as reply:
                await reply.read()
                assert reply.status == 200
            if index >= 50:
                rest_times.append(time.perf_counter() - started)
    grpc_p50, grpc_p99, _ = percentiles(grpc_times)
    rest_p50, rest_p99, _ = percentiles(rest_times)
    return [
        f"| ListTasks over gRPC ({samples} calls) | {grpc_p50:.2f} ms | {grpc_p99:.2f} ms | |",
        f"| ListTasks via the gateway (REST) | {rest_p50:.2f} ms | {rest_p99:.2f} ms | |",
        f"| added by the gateway | {rest_p50 - grpc_p50:+.2f} ms | {rest_p99 - grpc_p99:+.2f} ms | |",
    ]


class Streams:
    """One SSE notification stream per user through the gateway; records when each notification event arrives."""

    def __init__(self, host: HostProcess, users: list[str]) -> None:
        self.host, self.users = host, users
        self.arrivals: dict[str, tuple[float, dict[str, object]]] = {}  # task id -> (arrival, notification)
        self.open_count = 0
        self.tasks: list[asyncio.Task[None]] = []
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout())

    async def open(self) -> None:
        for user in self.users:
            self.tasks.append(asyncio.create_task(self._read(user)))
            if len(self.tasks) % 500 == 0:
                await asyncio.sleep(0.05)  # a burst of new connections, not a flood of SYNs
        deadline = time.monotonic() + 300
        while self.open_count < len(self.users):
            if time.monotonic() > deadline:
                raise SystemExit(f"only {self.open_count} of {len(self.users)} streams opened")
            await asyncio.sleep(0.1)

    async def _read(self, user: str) -> None:
        url = f"{self.host.web_url}/v1/notifications:stream"
        async with self.session.get(url, headers={**SSE, **self.host.auth_header(user)}) as response:
            event = ""
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    if event == "heartbeat" and user:
                        self.open_count += 1
                        user = ""  # counted once
                    elif event == "notification":
                        notification = json.loads(line[6:])
                        self.arrivals[notification["task_id"]] = (time.time(), notification)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.session.close()


async def bench_streams(host: HostProcess, streams: int, probe: int) -> list[str]:
    gateway = gateway_pid(host.process.pid if host.process else 0)
    before = resident_kib(gateway)
    users = [f"stream-user-{n:05d}" for n in range(streams)]
    opened = Streams(host, users)
    started = time.monotonic()
    await opened.open()
    took = time.monotonic() - started
    await asyncio.sleep(2)
    after = resident_kib(gateway)
    per_stream = (after - before) / streams

    fire_at = (datetime.now(UTC) + timedelta(seconds=15)).replace(microsecond=0)
    due = fire_at + timedelta(seconds=60)
    probes = users[:: max(1, streams // probe)][:probe]
    async with aiohttp.ClientSession() as session:
        for user in probes:
            task = {"title": f"probe {user}", "reminders": [{"before_due": "60s"}],
                    "due": {"local_time": due.strftime("%Y-%m-%dT%H:%M:%S"), "time_zone": "UTC"}}  # fmt: skip
            async with session.post(f"{host.web_url}/v1/tasks", json={"task": task},
                                    headers=host.auth_header(user)) as reply:  # fmt: skip
                assert reply.status == 200, await reply.text()
    deadline = time.monotonic() + 120
    while len(opened.arrivals) < len(probes) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    from_fire = [arrival - fire_at.timestamp() for arrival, _ in opened.arrivals.values()]
    from_created = [
        arrival - datetime.fromisoformat(str(n["create_time"]).replace("Z", "+00:00")).timestamp()
        for arrival, n in opened.arrivals.values()
    ]
    await opened.close()
    fire_p50, fire_p99, fire_max = percentiles(from_fire or [float("nan")])
    made_p50, made_p99, made_max = percentiles(from_created or [float("nan")])
    return [
        f"| {streams:,} SSE streams opened | {took:.1f} s | gateway memory {per_stream:.1f} KiB per stream "
        f"({before / 1024:.0f} -> {after / 1024:.0f} MiB) | |",
        f"| {len(opened.arrivals)} of {len(probes)} notifications, fire time -> client | {fire_p50:.0f} ms "
        f"| {fire_p99:.0f} ms | max {fire_max:.0f} ms |",
        f"| same, notification created -> client | {made_p50:.0f} ms | {made_p99:.0f} ms | max {made_max:.0f} ms |",
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100, help="tasks of the ListTasks user")
    parser.add_argument("--samples", type=int, default=2000, help="ListTasks calls each way")
    parser.add_argument("--streams", type=int, default=10_000, help="open SSE streams")
    parser.add_argument("--probe", type=int, default=200, help="notifications sent while the streams are open")
    parser.add_argument("--record", action="store_true", help="append the figures to docs/benchmarks.md")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * args.streams + 1024)), hard))

    folder = Path(tempfile.mkdtemp(prefix="todo-bench-"))
    host = HostProcess(folder / "data", free_port(), folder / "host.log", gateway=True)
    host.env["TODO_GATEWAY_LOG_LEVEL"] = "warn"  # no access log line per call in the measurement
    lines: list[str] = []
    try:
        host.start()
        await host.wait_web_ready()
        for line in await bench_latency(host, args.tasks, args.samples):
            print(line, flush=True)
            lines.append(line)
        for line in await bench_streams(host, args.streams, args.probe):
            print(line, flush=True)
            lines.append(line)
    finally:
        host.stop()
        shutil.rmtree(folder, ignore_errors=True)
    if args.record:
        record_section(
            "REST gateway, embedded default",
            "Client, gateway and services share the machine. Command: `make bench-gateway`.",
            ["measure", "p50", "p99", "note"],
            lines,
        )


if __name__ == "__main__":
    asyncio.run(main())
