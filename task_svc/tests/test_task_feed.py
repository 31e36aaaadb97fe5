"""StreamTaskChanges on a real host: heartbeat first, every committed change once in commit order to the user's
streams only, resume without gaps or repeats, concurrency, limits, pruning, shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import pytest
from task_fixtures import ChangeStream, TaskClient

from task_svc.settings import TaskFeedSettings
from task_svc.unit import build_unit
from todo_contracts.task.v1 import task_pb2, task_service_pb2_grpc
from todo_contracts.task.v1 import task_service_pb2 as ts
from todo_kit.config import Settings
from todo_kit.testing import bearer, running_host

CREATED, UPDATED = ts.TASK_CHANGE_KIND_CREATED, ts.TASK_CHANGE_KIND_UPDATED
COMPLETED, REOPENED, DELETED = ts.TASK_CHANGE_KIND_COMPLETED, ts.TASK_CHANGE_KIND_REOPENED, ts.TASK_CHANGE_KIND_DELETED


@asynccontextmanager
async def running_feed(settings: Settings, feed: TaskFeedSettings | None = None) -> AsyncIterator[TaskClient]:
    """A host with the task unit (with these feed settings), and a client on it."""
    unit = build_unit(feed_settings=feed or TaskFeedSettings(max_streams_per_user=3))
    async with running_host(settings, [unit]) as host, grpc.aio.insecure_channel(host.address) as channel:
        yield TaskClient(
            host, task_service_pb2_grpc.TaskServiceStub(channel), bearer(settings, "alice"), bearer(settings, "bob")
        )


@pytest.fixture
async def feed(kit_settings: Settings) -> AsyncIterator[TaskClient]:
    async with running_feed(kit_settings) as client:
        yield client


async def create(client: TaskClient, title: str, md: list[tuple[str, str]] | None = None) -> task_pb2.Task:
    response = await client.stub.CreateTask(
        ts.CreateTaskRequest(task=task_pb2.Task(title=title)), metadata=md or client.alice
    )
    return response.task


async def rename(client: TaskClient, task_id: str, title: str, md: list[tuple[str, str]] | None = None) -> None:
    await client.stub.UpdateTask(
        ts.UpdateTaskRequest(task=task_pb2.Task(task_id=task_id, title=title), update_mask={"paths": ["title"]}),
        metadata=md or client.alice,
    )


async def test_a_change_made_by_another_client_reaches_an_open_stream_with_its_kind_and_state(
    feed: TaskClient, kit_settings: Settings
) -> None:
    stream = ChangeStream.open(feed.stub, feed.alice)
    await stream.heartbeat()
    # Another client: its own connection and token.
    async with grpc.aio.insecure_channel(feed.host.address) as other:
        stub = task_service_pb2_grpc.TaskServiceStub(other)
        md = bearer(kit_settings, "alice")
        task = (await stub.CreateTask(ts.CreateTaskRequest(task=task_pb2.Task(title="Pay rent")), metadata=md)).task
        await stub.UpdateTask(
            ts.UpdateTaskRequest(
                task=task_pb2.Task(task_id=task.task_id, title="Pay the rent"), update_mask={"paths": ["title"]}
            ),
            metadata=md,
        )
        await stub.CompleteTask(ts.CompleteTaskRequest(task_id=task.task_id), metadata=md)
        await stub.ReopenTask(ts.ReopenTaskRequest(task_id=task.task_id), metadata=md)
        deleted = (await stub.DeleteTask(ts.DeleteTaskRequest(task_id=task.task_id), metadata=md)).task
    changes = await stream.changes(5)
    assert [c.kind for c in changes] == [CREATED, UPDATED, COMPLETED, REOPENED, DELETED]
    assert {c.task.task_id for c in changes} == {task.task_id}
    assert [c.task.version for c in changes] == [1, 2, 3, 4, 4]
    assert changes[0].task.title == "Pay rent" and changes[1].task.title == "Pay the rent"
    assert changes[2].task.status == task_pb2.TASK_STATUS_COMPLETED
    assert changes[4].task == deleted  # its last state
    assert len({c.change_id for c in changes}) == 5
    times = [c.changed_at.ToDatetime() for c in changes]
    assert times == sorted(times)
    stream.close()
