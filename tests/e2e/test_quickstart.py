"""The README's quick start, as a new user would do it: make up, make token, grpcurl.

A task created with grpcurl is listed back, found by a word of its title, and
still there after a restart. Needs grpcurl (`make grpcurl`; `make test` builds it).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from host_process import HostProcess

from todo_kit.testing import eventually

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


@pytest.mark.skipif(GRPCURL is None, reason="grpcurl is not built; run `make grpcurl`")
async def test_quickstart_reminder_on_a_grpcurl_stream_and_the_tasks_history(host_process: HostProcess) -> None:
    """The README's notification steps, shortened: the reminder arrives on a stream opened beforehand, on time."""
    assert GRPCURL is not None
    host_process.start()
    await host_process.wait_serving()
    token = host_process.bearer("alice")[0][1].removeprefix("Bearer ")
    stream = await asyncio.create_subprocess_exec(
        GRPCURL, "-plaintext", "-H", f"authorization: Bearer {token}", "-max-time", "60",
        host_process.address, "todo.notify.v1.NotificationService/StreamNotifications",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert stream.stdout is not None
    try:
        first = await asyncio.wait_for(stream.stdout.readline(), 30)
        assert first.strip() == b"{", "the stream answers at once (a heartbeat)"
        due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=8)
        created = grpcurl(
            host_process.address, token, "todo.task.v1.TaskService/CreateTask",
            {"task": {"title": "Call the bank", "due": {"local_time": due.strftime("%Y-%m-%dT%H:%M:%S"),
                                                         "time_zone": "UTC"},
                      "reminders": [{"before_due": "4s"}]}},
        )  # fmt: skip
        task_id = created["task"]["task_id"]  # type: ignore[index]
        seen = b""
        while b"Reminder: Call the bank" not in seen:
            line = await asyncio.wait_for(stream.stdout.readline(), 30)
            assert line, "the stream ended before the reminder came"
            seen += line
        arrived = datetime.now(UTC)
        while not seen.endswith(b"\n}\n"):  # the rest of the notification's JSON
            seen += await asyncio.wait_for(stream.stdout.readline(), 10)
    finally:
        if stream.returncode is None:
            stream.kill()
        await stream.wait()
    fire_time = due - timedelta(seconds=4)
    assert fire_time <= arrived < fire_time + timedelta(seconds=3), (fire_time, arrived)
    assert task_id in seen.decode()

    async def history() -> list[str]:
        found = grpcurl(host_process.address, token, "todo.audit.v1.AuditService/ListActivity", {"task_id": task_id})
        types = [e["event_type"] for e in found.get("entries", [])]  # type: ignore[attr-defined]
        return types if "todo.notify.v1.NotificationSent" in types else []

    types = await eventually(history, timeout=30)
    assert "todo.task.v1.TaskCreated" in types and "todo.reminder.v1.ReminderDue" in types
    host_process.kill(signal.SIGTERM)


@pytest.mark.skipif(GRPCURL is None, reason="grpcurl is not built; run `make grpcurl`")
async def test_quickstart_chat_adds_a_reminded_task_and_completes_it(host_process: HostProcess) -> None:
    """The README's chat steps: one sentence makes a task with its reminder, another completes it."""
    host_process.start()
    await host_process.wait_serving()
    token = host_process.bearer("alice")[0][1].removeprefix("Bearer ")
    chat = "todo.chat.v1.ChatService/SendMessage"
    added = grpcurl(
        host_process.address, token, chat,
        {"text": "remind me to water the roses tomorrow at 7pm", "time_zone": "Europe/Berlin"},
    )  # fmt: skip
    [action] = added["actions"]  # type: ignore[misc]
    task = action["task"]
    tomorrow = (datetime.now(ZoneInfo("Europe/Berlin")) + timedelta(days=1)).date()
    assert task["title"] == "Water the roses"
    assert task["due"]["local_time"] == f"{tomorrow.isoformat()}T19:00:00"
    assert task["due"]["time_zone"] == "Europe/Berlin"

    # The reminder service makes the reminder from the TaskCreated event, a moment after the reply.
    async def reminders() -> list[object]:
        listed = grpcurl(
            host_process.address, token, "todo.reminder.v1.ReminderService/ListReminders", {"task_id": task["task_id"]}
        )
        return listed.get("reminders", [])  # type: ignore[return-value]

    assert len(await eventually(reminders, timeout=10, interval=0.2)) == 1
    assert "Water the roses" in str(added["reply"])

    done = grpcurl(
        host_process.address, token, chat,
        {"conversation_id": added["conversation_id"], "text": "watered the roses", "time_zone": "Europe/Berlin"},
    )  # fmt: skip
    assert [a["task"]["task_id"] for a in done["actions"]] == [task["task_id"]]  # type: ignore[index, union-attr]
    listed = grpcurl(
        host_process.address, token, "todo.task.v1.TaskService/ListTasks", {"statuses": ["TASK_STATUS_COMPLETED"]}
    )
    assert [t["task_id"] for t in listed["tasks"]] == [task["task_id"]]  # type: ignore[union-attr, index]
    host_process.kill(signal.SIGTERM)
