"""The embedded host runs the gateway: prints its address, restarts it when it dies, stops it when it stops."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from host_process import HostProcess, free_port, gateway_bin


def gateway_pids(host_pid: int) -> list[int]:
    """The host's todo-gateway child processes."""
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            lines = status.read_text().splitlines()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in lines if ":\t" in line)
        if fields.get("PPid", "").strip() == str(host_pid) and fields.get("Name", "").strip() == "todo-gateway":
            pids.append(int(status.parent.name))
    return pids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


async def test_host_restarts_a_dead_gateway_and_stops_it_on_shutdown() -> None:
    folder = Path(tempfile.mkdtemp(prefix="todo-"))
    host = HostProcess(folder / "data", free_port(), folder / "host.log", gateway=True)
    try:
        host.start()
        await host.wait_web_ready()
        for _ in range(100):  # the banner follows the gateway's first answer by a moment
            if f"web page: {host.web_url}" in host.log.read_text():
                break
            await asyncio.sleep(0.05)
        assert f"web page: {host.web_url}" in host.log.read_text()
        assert host.process is not None
        [first] = gateway_pids(host.process.pid)
        os.kill(first, signal.SIGKILL)
        await asyncio.sleep(0.5)
        await host.wait_web_ready(timeout=30)  # served again by a new gateway process
        [second] = gateway_pids(host.process.pid)
        assert second != first
        host.stop()
        assert not alive(second)
    finally:
        host.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_a_busy_web_port_stops_the_host_before_it_starts_anything(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**os.environ, "TODO_DATA_DIR": str(tmp_path / "data"), "TODO_GRPC_PORT": str(free_port()),
               "TODO_GATEWAY_BIN": str(gateway_bin()), "TODO_GATEWAY_PORT": str(port)}  # fmt: skip
        result = subprocess.run(
            [sys.executable, "-m", "todo_kit.embedded_host"], env=env, capture_output=True, text=True, timeout=120
        )
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "TODO_GATEWAY_PORT" in result.stderr
    assert not (tmp_path / "data" / "postgres").exists()
