"""The embedded default as a real child process, for end-to-end tests (what `make up` runs)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from todo_kit import embedded_pg


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class HostProcess:
    """The embedded host as a child process."""

    def __init__(self, data_dir: Path, port: int, log: Path) -> None:
        self.env = {**os.environ, "TODO_DATA_DIR": str(data_dir), "TODO_GRPC_PORT": str(port),
                    "TODO_LOG_LEVEL": "WARNING"}  # fmt: skip
        self.address = f"127.0.0.1:{port}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "todo_kit.embedded_host"], env=self.env, stdout=out, stderr=out
            )

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

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)


@pytest.fixture
def host_process(tmp_path: Path) -> Iterator[HostProcess]:
    host = HostProcess(tmp_path / "data", free_port(), tmp_path / "host.log")
    try:
        yield host
    finally:
        host.kill()
        embedded_pg.kill_server(tmp_path / "data" / "postgres")
