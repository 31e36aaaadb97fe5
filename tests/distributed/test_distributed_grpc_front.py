"""The gateway's gRPC front (TODO_GATEWAY_GRPC_LISTEN) with grpcurl, as the README's quick start uses it.

The backend here is the embedded host (one address for every service); the front forwards each call by its service
name, so the same holds with one process per service (tests/distributed/test_distributed_flows.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from host_process import HostProcess, free_port

GRPCURL = os.environ.get("GRPCURL") or shutil.which("grpcurl")
SERVICES = (
    "todo.audit.v1.AuditService",
    "todo.chat.v1.ChatService",
    "todo.notify.v1.NotificationService",
    "todo.recurrence.v1.RecurrenceService",
    "todo.reminder.v1.ReminderService",
    "todo.task.v1.TaskService",
)

pytestmark = pytest.mark.skipif(GRPCURL is None, reason="grpcurl is not built; run `make grpcurl`")


def grpcurl(
    *args: str, token: str | None = None, body: object = None, max_time: float = 30
) -> subprocess.CompletedProcess[str]:
    assert GRPCURL is not None
    command = [GRPCURL, "-plaintext", "-max-time", str(max_time)]
    if token:
        command += ["-H", f"authorization: Bearer {token}"]
    if body is not None:
        command += ["-d", json.dumps(body)]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=max_time + 30)


@pytest.fixture
async def front() -> AsyncIterator[tuple[HostProcess, str]]:
    folder = Path(tempfile.mkdtemp(prefix="todo-"))
    host = HostProcess(folder / "data", free_port(), folder / "host.log", gateway=True)
    address = f"127.0.0.1:{free_port()}"
    host.env["TODO_GATEWAY_GRPC_LISTEN"] = address
    host.start()
    try:
        await host.wait_web_ready()
        yield host, address
    finally:
        host.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def test_grpcurl_lists_every_service_through_the_front(front: tuple[HostProcess, str]) -> None:
    _, address = front
    listed = grpcurl(address, "list")
    assert listed.returncode == 0, listed.stderr
    names = set(listed.stdout.split())
    assert set(SERVICES) <= names
    assert {"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} <= names
    described = grpcurl(address, "describe", "todo.task.v1.TaskService.CreateTask")
    assert described.returncode == 0, described.stderr
    assert "CreateTaskRequest" in described.stdout


async def test_calls_through_the_front_act_as_the_tokens_user(front: tuple[HostProcess, str]) -> None:
    host, address = front
    alice = host.bearer("alice")[0][1].removeprefix("Bearer ")
    bob = host.bearer("bob")[0][1].removeprefix("Bearer ")
    created = grpcurl(address, "todo.task.v1.TaskService/CreateTask", token=alice, body={"task": {"title": "Pay rent"}})
    assert created.returncode == 0, created.stderr
    task_id = json.loads(created.stdout)["task"]["task_id"]
    mine = grpcurl(address, "todo.task.v1.TaskService/ListTasks", token=alice, body={"query": "rent"})
    assert [t["task_id"] for t in json.loads(mine.stdout)["tasks"]] == [task_id]
    theirs = grpcurl(address, "todo.task.v1.TaskService/GetTask", token=bob, body={"task_id": task_id})
    assert "NotFound" in theirs.stderr
    anonymous = grpcurl(address, "todo.task.v1.TaskService/ListTasks", body={})
    assert "Unauthenticated" in anonymous.stderr


async def test_errors_through_the_front_keep_their_field_violations(front: tuple[HostProcess, str]) -> None:
    host, address = front
    alice = host.bearer("alice")[0][1].removeprefix("Bearer ")
    refused = grpcurl(address, "todo.task.v1.TaskService/CreateTask", token=alice, body={"task": {"title": ""}})
    assert refused.returncode != 0
    assert "InvalidArgument" in refused.stderr
    assert "task.title" in refused.stderr  # grpcurl prints the google.rpc.BadRequest detail


async def test_a_server_stream_flows_through_the_front(front: tuple[HostProcess, str]) -> None:
    host, address = front
    alice = host.bearer("alice")[0][1].removeprefix("Bearer ")
    # The stream sends a heartbeat at once, then stays open until -max-time ends it.
    streamed = grpcurl(address, "todo.notify.v1.NotificationService/StreamNotifications", token=alice, body={},
                       max_time=3)  # fmt: skip
    assert "heartbeat" in streamed.stdout, streamed.stderr


async def test_health_through_the_front_answers_for_each_service(front: tuple[HostProcess, str]) -> None:
    _, address = front
    overall = grpcurl(address, "grpc.health.v1.Health/Check")
    assert json.loads(overall.stdout)["status"] == "SERVING", overall.stderr
    for service in SERVICES:
        one = grpcurl(address, "grpc.health.v1.Health/Check", body={"service": service})
        assert json.loads(one.stdout)["status"] == "SERVING", (service, one.stderr)
    unknown = grpcurl(address, "grpc.health.v1.Health/Check", body={"service": "todo.nothing.v1.Nothing"})
    assert "NotFound" in unknown.stderr
