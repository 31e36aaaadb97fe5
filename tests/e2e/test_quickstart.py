"""The README's quick start, as a new user would do it: make up, make token, grpcurl.

A task created with grpcurl is listed back, found by a word of its title, and
still there after a restart. Needs grpcurl (`make grpcurl`; `make test` builds it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from host_process import HostProcess

ROOT = Path(__file__).resolve().parents[2]
GRPCURL = os.environ.get("GRPCURL") or shutil.which("grpcurl")


def grpcurl(address: str, token: str | None, method: str, body: dict[str, object] | None = None) -> dict[str, object]:
    assert GRPCURL is not None
    command = [GRPCURL, "-plaintext"]
    if token:
        command += ["-H", f"authorization: Bearer {token}"]
    if body is not None:
        command += ["-d", json.dumps(body)]
    result = subprocess.run([*command, address, method], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout)) if result.stdout.strip().startswith("{") else {"raw": result.stdout}


@pytest.mark.skipif(GRPCURL is None, reason="grpcurl is not built; run `make grpcurl`")
async def test_quickstart_with_grpcurl(host_process: HostProcess, tmp_path: Path) -> None:
    host_process.start()
    await host_process.wait_serving()
    env = {**os.environ, "TODO_DATA_DIR": host_process.env["TODO_DATA_DIR"]}
    token = subprocess.run(
        ["make", "-s", "--no-print-directory", "token", "USER=alice"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=120,
    ).stdout.strip()  # fmt: skip
    assert token.count(".") == 2, "make token prints one JWT and nothing else"

    services = grpcurl(host_process.address, None, "list")["raw"]
    assert "todo.task.v1.TaskService" in str(services)
    created = grpcurl(
        host_process.address, token, "todo.task.v1.TaskService/CreateTask",
        {"task": {"title": "Pay rent", "priority": "PRIORITY_HIGH", "tags": ["finance"]}},
    )  # fmt: skip
    task = created["task"]
    assert isinstance(task, dict) and task["title"] == "Pay rent"
    found = grpcurl(host_process.address, token, "todo.task.v1.TaskService/ListTasks", {"query": "rent"})
    assert [t["task_id"] for t in found["tasks"]] == [task["task_id"]]  # type: ignore[union-attr, index]

    # The README's UpdateTask: a field mask in the form grpcurl accepts, and a version check.
    updated = grpcurl(
        host_process.address, token, "todo.task.v1.TaskService/UpdateTask",
        {"task": {"task_id": task["task_id"], "title": "Pay the rent"}, "update_mask": {"paths": ["title"]},
         "expected_version": 1},
    )  # fmt: skip
    assert updated["task"]["title"] == "Pay the rent"  # type: ignore[index]

    host_process.kill(signal.SIGTERM)
    host_process.start()
    await host_process.wait_serving()
    again = grpcurl(host_process.address, token, "todo.task.v1.TaskService/ListTasks", {})
    assert [t["task_id"] for t in again["tasks"]] == [task["task_id"]]  # type: ignore[union-attr, index]
