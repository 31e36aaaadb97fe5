"""kill -9 of the embedded default while it accepts creates: after a restart nothing is lost or doubled.

Runs `python -m todo_kit.embedded_host` (what `make up` runs) as a real
process on its own data folder and port, kills it with SIGKILL in the middle
of a burst of CreateTask calls, starts it again and checks that every create
has its effect exactly once: one task per client request id, one TaskCreated
event per task.
"""

from __future__ import annotations

import asyncio
import signal

import asyncpg
import grpc
from host_process import HostProcess

from todo_contracts import envelope
from todo_contracts.task.v1 import events_pb2, task_pb2, task_service_pb2_grpc
from todo_contracts.task.v1 import task_service_pb2 as ts
from todo_kit import embedded_pg

TOTAL = 300
KILL_AFTER = 80


async def create_all(stub: task_service_pb2_grpc.TaskServiceStub, md: list[tuple[str, str]], ids: list[int],
                     accepted: dict[int, str], on_accept: asyncio.Event) -> None:  # fmt: skip
    queue = list(ids)

    async def worker() -> None:
        while queue:
            i = queue.pop(0)
            request = ts.CreateTaskRequest(task=task_pb2.Task(title=f"Task {i}"), client_request_id=f"req-{i}")
            try:
                response = await stub.CreateTask(request, metadata=md, timeout=10)
            except grpc.aio.AioRpcError:
                continue  # the server died under us; retried after the restart
            accepted[i] = response.task.task_id
            if len(accepted) >= KILL_AFTER:
                on_accept.set()

    await asyncio.gather(*(worker() for _ in range(8)))


async def test_kill_9_during_creates_loses_and_doubles_nothing(host_process: HostProcess) -> None:
    host_process.start()
    await host_process.wait_serving()
    md = host_process.bearer("alice")

    accepted_before: dict[int, str] = {}
    enough = asyncio.Event()
    async with grpc.aio.insecure_channel(host_process.address) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        burst = asyncio.create_task(create_all(stub, md, list(range(TOTAL)), accepted_before, enough))
        await asyncio.wait_for(enough.wait(), timeout=60)
        host_process.kill()  # SIGKILL mid-burst
        await burst
    assert KILL_AFTER <= len(accepted_before) < TOTAL, "the kill should land in the middle of the burst"

    host_process.start()
    await host_process.wait_serving()
    accepted_after: dict[int, str] = {}
    async with grpc.aio.insecure_channel(host_process.address) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        # Every request again, the accepted ones included: they must return the same task.
        await create_all(stub, md, list(range(TOTAL)), accepted_after, asyncio.Event())
        listed: list[task_pb2.Task] = []
        token = ""
        while True:
            page = await stub.ListTasks(ts.ListTasksRequest(page_size=1000, page_token=token), metadata=md)
            listed += page.tasks
            token = page.next_page_token
            if not token:
                break

    assert sorted(accepted_after) == list(range(TOTAL))
    for i, task_id in accepted_before.items():
        assert accepted_after[i] == task_id, "a retried create must return the first task"
    assert len(listed) == TOTAL
    assert {t.task_id for t in listed} == set(accepted_after.values())

    url = host_process.database_url("todo_runtime")
    created: dict[str, set[str]] = {}
    for _ in range(200):
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("SELECT event_id, payload FROM event_log WHERE topic = 'task-events'")
        finally:
            await conn.close()
        created = {}
        for row in rows:
            event = envelope.decode(bytes(row["payload"]))
            if isinstance(event.message, events_pb2.TaskCreated):
                created.setdefault(event.message.task.task_id, set()).add(event.id)
        if len(created) >= TOTAL:
            break
        await asyncio.sleep(0.05)
    assert set(created) == set(accepted_after.values()), "every task has its TaskCreated"
    assert all(len(ids) == 1 for ids in created.values()), "one TaskCreated per task (redeliveries share an id)"

    host_process.kill(signal.SIGTERM)
    assert host_process.process is not None and host_process.process.returncode == 0
    assert embedded_pg.postmaster_pid(host_process.data_dir / "postgres") is None, "a clean stop stops PostgreSQL too"
