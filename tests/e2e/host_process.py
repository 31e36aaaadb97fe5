"""The embedded default as a real child process, for end-to-end tests and the fault rounds (what `make up` runs).

With gateway=True the host also starts the REST gateway (TODO_GATEWAY_BIN, which `make unit` sets to
build/todo-gateway; `make gateway` builds it) on a free port, and serves the web page from web_dir (default: the
host's own default, frontend/dist when it exists):

    host = HostProcess(data_dir, free_port(), log_file, gateway=True)
    host.start()
    await host.wait_web_ready()          # the gRPC services serve and the gateway's /readyz says 200
    page = host.web_url                   # http://127.0.0.1:<port>
    headers = host.auth_header("alice")   # {"Authorization": "Bearer ..."} for REST calls
    ...
    host.stop()                           # stops the gateway too
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from todo_contracts.common.v1 import common_pb2
from todo_kit import embedded_pg
from todo_kit.auth import issue_token, signing_key_for
from todo_kit.config import Settings
from todo_kit.embedded_host import database_url


def utc_in(delta: timedelta) -> common_pb2.ZonedDateTime:
    """A UTC wall-clock time this far from now, to the second (as a client would write a due time)."""
    moment = datetime.now(UTC) + delta
    return common_pb2.ZonedDateTime(local_time=moment.strftime("%Y-%m-%dT%H:%M:%S"), time_zone="UTC")


ROOT = Path(__file__).resolve().parents[2]
DEFAULT_GATEWAY_BIN = ROOT / "build" / "todo-gateway"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stable_ports(count: int) -> list[int]:
    """count consecutive free ports below the kernel's range for outgoing connections.

    A port the kernel hands out (bind to port 0) lies in that range, where any
    outgoing connection may take it as its local port: while a killed service is
    down, a client of Kafka or PostgreSQL did, and the restarted service could not
    listen again. Servers that are stopped and restarted use these instead.
    """
    low = 32768
    with contextlib.suppress(OSError, ValueError, IndexError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    chooser = random.Random()
    for _ in range(500):
        base = chooser.randrange(10_000, max(10_001, low - count))
        block = list(range(base, base + count))
        if all(_port_free(port) for port in block):
            return block
    raise RuntimeError(f"no {count} consecutive free ports below {low}")


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def gateway_bin() -> Path:
    """The gateway binary: TODO_GATEWAY_BIN (relative to the repository root) or build/todo-gateway."""
    configured = os.environ.get("TODO_GATEWAY_BIN")
    return (ROOT / configured).resolve() if configured else DEFAULT_GATEWAY_BIN


class HostProcess:
    """The embedded host as a child process, optionally with the REST gateway (see the module docstring)."""

    def __init__(
        self, data_dir: Path, port: int, log: Path, *, gateway: bool = False, web_dir: Path | None = None
    ) -> None:
        self.data_dir = data_dir
        self.env = {**os.environ, "TODO_DATA_DIR": str(data_dir), "TODO_GRPC_PORT": str(port),
                    "TODO_LOG_LEVEL": "WARNING"}  # fmt: skip
        self.env.pop("TODO_GATEWAY_BIN", None)
        self.address = f"127.0.0.1:{port}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.gateway_port = 0
        if gateway:
            binary = gateway_bin()
            if not binary.is_file():
                pytest.fail(f"no gateway binary at {binary}: run `make gateway` (or set TODO_GATEWAY_BIN)")
            self.gateway_port = free_port()
            self.env.update(TODO_GATEWAY_BIN=str(binary), TODO_GATEWAY_PORT=str(self.gateway_port))
            if web_dir is not None:
                self.env["TODO_WEB_DIR"] = str(web_dir)

    @property
    def web_url(self) -> str:
        """The gateway's address (http://127.0.0.1:<port>); only with gateway=True."""
        assert self.gateway_port, "started without gateway=True"
        return f"http://127.0.0.1:{self.gateway_port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "todo_kit.embedded_host"], env=self.env, stdout=out, stderr=out, cwd=ROOT
            )

    async def wait_web_ready(self, timeout: float = 90.0) -> None:
        """Waits until the gateway's /readyz answers 200 (every service SERVING through it)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            assert self.process is not None and self.process.poll() is None, self.log.read_text()[-3000:]
            if await asyncio.to_thread(self._ready_once):
                return
            assert asyncio.get_running_loop().time() < deadline, "the gateway did not become ready"
            await asyncio.sleep(0.1)

    def _ready_once(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.web_url}/readyz", timeout=2) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def auth_header(self, user: str) -> dict[str, str]:
        """An HTTP Authorization header with a token for user (signed with the data folder's key)."""
        return {"Authorization": self.bearer(user)[0][1]}

    async def wait_serving(self, timeout: float = 90.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                assert self.process is not None and self.process.poll() is None, self.log.read_text()[-3000:]
                try:
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                assert asyncio.get_running_loop().time() < deadline, "host did not become SERVING"
                await asyncio.sleep(0.1)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """Stops the host cleanly if it runs (which stops PostgreSQL too), else the PostgreSQL a killed one left."""
        if self.running:
            try:
                self.kill(signal.SIGTERM)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
        pgdata = self.data_dir / "postgres"
        embedded_pg.kill_server(pgdata)
        for _ in range(300):  # its fast shutdown takes a moment; the data folder may be removed afterwards
            if embedded_pg.postmaster_pid(pgdata) is None:
                return
            time.sleep(0.1)

    def bearer(self, user: str) -> list[tuple[str, str]]:
        """Call metadata with a token for user, signed with the data folder's key (made at the host's first start)."""
        settings = Settings.from_env({"TODO_DATA_DIR": str(self.data_dir)})
        return [("authorization", f"Bearer {issue_token(signing_key_for(settings), user)}")]

    def database_url(self, name: str) -> str:
        """The URL of one of the host's databases (todo_task, todo_runtime, ...) on its embedded PostgreSQL.

        Call it while PostgreSQL runs (the host started it; a killed host leaves it running).
        """
        server = embedded_pg.start(self.data_dir / "postgres")
        return database_url(server.admin_url, name)


@pytest.fixture
def host_process(tmp_path: Path) -> Iterator[HostProcess]:
    host = HostProcess(tmp_path / "data", free_port(), tmp_path / "host.log")
    try:
        yield host
    finally:
        host.kill()
        embedded_pg.kill_server(host.data_dir / "postgres")
