"""StreamTaskChanges on a real host: heartbeat first, every committed change once in commit order to the user's
streams only, resume without gaps or repeats, concurrency, limits, pruning, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import sqlalchemy as sa
from task_fixtures import ChangeStream, TaskClient

from task_svc.domain import ChangeIds
from task_svc.settings import TaskFeedSettings
from task_svc.storage import TaskRepository, task_changes
from task_svc.unit import FEED_LISTENER_NAME, build_unit
from todo_contracts.task.v1 import task_pb2, task_service_pb2_grpc
from todo_contracts.task.v1 import task_service_pb2 as ts
from todo_kit.auth import signing_key_for
from todo_kit.config import Settings
from todo_kit.embedded_host import EmbeddedHost
from todo_kit.testing import bearer, eventually, field_violations, running_host

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


async def test_a_stream_starts_with_a_heartbeat_naming_its_resume_point(feed: TaskClient) -> None:
    fresh = ChangeStream.open(feed.stub, feed.alice)
    start = await fresh.heartbeat()
    assert start.last_change_id and start.server_time.seconds > 0
    fresh.close()
    task = await create(feed, "Water plants")
    # Resuming from the point of a stream opened before the change replays the change.
    resumed = ChangeStream.open(feed.stub, feed.alice, resume_after=start.last_change_id)
    assert (await resumed.heartbeat()).last_change_id == start.last_change_id
    created = await resumed.change()
    assert (created.kind, created.task.task_id) == (CREATED, task.task_id)
    resumed.close()
    later = ChangeStream.open(feed.stub, feed.alice)
    assert (await later.heartbeat()).last_change_id == created.change_id
    later.close()


async def test_another_users_stream_sees_none_of_the_users_changes(feed: TaskClient) -> None:
    bob = ChangeStream.open(feed.stub, feed.bob)
    await bob.heartbeat()
    alice = ChangeStream.open(feed.stub, feed.alice)
    await alice.heartbeat()
    alices = await create(feed, "Pay rent")
    await rename(feed, alices.task_id, "Pay the rent")
    assert (await alice.changes(2))[1].task.title == "Pay the rent"
    bobs = await create(feed, "Walk the dog", feed.bob)
    # Bob's stream carries bob's change first: alice's never came to it.
    first = await bob.change()
    assert (first.task.task_id, first.task.user_id) == (bobs.task_id, "bob")
    alice.close()
    bob.close()


async def test_a_reconnecting_stream_gets_what_it_missed_once_in_order_then_live_ones(feed: TaskClient) -> None:
    stream = ChangeStream.open(feed.stub, feed.alice)
    await stream.heartbeat()
    task = await create(feed, "first")
    seen = await stream.change()
    stream.close()
    missed = [await create(feed, f"missed {n}") for n in range(5)]
    await rename(feed, task.task_id, "first, renamed")
    resumed = ChangeStream.open(feed.stub, feed.alice, resume_after=seen.change_id)
    assert (await resumed.heartbeat()).last_change_id == seen.change_id
    replayed = await resumed.changes(6)
    assert [c.task.task_id for c in replayed] == [t.task_id for t in missed] + [task.task_id]
    assert [c.kind for c in replayed] == [CREATED] * 5 + [UPDATED]
    live = await create(feed, "live")
    # The next one is the live one: nothing replayed twice.
    assert (await resumed.change()).task.task_id == live.task_id
    resumed.close()


async def test_the_replay_reads_in_pages_and_misses_nothing_past_a_page(feed: TaskClient) -> None:
    start = ChangeStream.open(feed.stub, feed.alice)
    point = (await start.heartbeat()).last_change_id
    start.close()
    count = 230  # more than one page of 200
    created = await asyncio.gather(*(create(feed, f"bulk {n}") for n in range(count)))
    replay = ChangeStream.open(feed.stub, feed.alice, resume_after=point)
    await replay.heartbeat()
    got = await replay.changes(count)
    assert sorted(c.task.task_id for c in got) == sorted(t.task_id for t in created)
    assert len({c.change_id for c in got}) == count
    replay.close()


async def test_two_concurrent_writers_of_one_user_reach_a_stream_each_change_once_in_commit_order(
    feed: TaskClient, kit_settings: Settings
) -> None:
    stream = ChangeStream.open(feed.stub, feed.alice)
    start = (await stream.heartbeat()).last_change_id
    rounds = 40

    async def writer(name: str) -> list[int]:
        # Each writer has its own connection, so the two race in the database, not in one channel.
        async with grpc.aio.insecure_channel(feed.host.address) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            md = bearer(kit_settings, "alice")
            task = (await stub.CreateTask(ts.CreateTaskRequest(task=task_pb2.Task(title=name)), metadata=md)).task
            versions = [task.version]
            for n in range(rounds):
                updated = await stub.UpdateTask(
                    ts.UpdateTaskRequest(
                        task=task_pb2.Task(task_id=task.task_id, title=f"{name} {n}"), update_mask={"paths": ["title"]}
                    ),
                    metadata=md,
                )
                versions.append(updated.task.version)
            return versions

    await asyncio.gather(writer("one"), writer("two"))
    total = 2 * (rounds + 1)
    received = await stream.changes(total)
    assert len({c.change_id for c in received}) == total
    by_task: dict[str, list[int]] = {}
    for change in received:
        by_task.setdefault(change.task.task_id, []).append(change.task.version)
    # Each task's changes in the order they were made, none skipped or repeated.
    assert sorted(by_task.values()) == [list(range(1, rounds + 2))] * 2
    # A replay from the same point sees the very same order: the order of the feed is the order of commit.
    replay = ChangeStream.open(feed.stub, feed.alice, resume_after=start)
    await replay.heartbeat()
    assert [c.change_id for c in await replay.changes(total)] == [c.change_id for c in received]
    stream.close()
    replay.close()


async def test_resume_after_takes_only_the_users_own_change_ids(feed: TaskClient, kit_settings: Settings) -> None:
    await create(feed, "Walk the dog", feed.bob)
    bob = ChangeStream.open(feed.stub, feed.bob)
    bobs = (await bob.heartbeat()).last_change_id
    bob.close()
    ids = ChangeIds.derived_from(signing_key_for(kit_settings))
    never = ids.issue("alice", 5)  # alice has made no change yet
    for resume_after, code in [
        (bobs, grpc.StatusCode.NOT_FOUND),
        (never, grpc.StatusCode.NOT_FOUND),
        ("A" * len(bobs), grpc.StatusCode.NOT_FOUND),  # the form of an id, but issued to nobody
        ("not-a-change-id", grpc.StatusCode.INVALID_ARGUMENT),
        ("x" * 10_000, grpc.StatusCode.INVALID_ARGUMENT),
    ]:
        stream = ChangeStream.open(feed.stub, feed.alice, resume_after=resume_after)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stream.next()
        assert caught.value.code() == code, resume_after[:40]
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            assert [f for f, _ in field_violations(caught.value)] == ["resume_after"]
    # Bob's id is as good as ever for bob.
    again = ChangeStream.open(feed.stub, feed.bob, resume_after=bobs)
    assert (await again.heartbeat()).last_change_id == bobs
    again.close()


async def test_a_quiet_stream_gets_heartbeats_with_the_last_id_it_sent(kit_settings: Settings) -> None:
    async with running_feed(kit_settings, TaskFeedSettings(heartbeat_seconds=1)) as client:
        stream = ChangeStream.open(client.stub, client.alice)
        await stream.heartbeat()
        await create(client, "Pay rent")
        sent = await stream.change()
        assert (await stream.heartbeat()).last_change_id == sent.change_id
        stream.close()


async def test_an_idle_stream_reads_the_database_only_when_woken(
    kit_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten thousand idle streams must cost heartbeats, not a query per heartbeat each."""
    reads: list[str] = []
    original = TaskRepository.changes_after

    async def counted(self: TaskRepository, user: str, *args: object, **kwargs: object) -> object:
        reads.append(user)
        return await original(self, user, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(TaskRepository, "changes_after", counted)
    async with running_feed(kit_settings, TaskFeedSettings(heartbeat_seconds=1)) as client:
        stream = ChangeStream.open(client.stub, client.alice)
        for _ in range(4):  # the first message and three heartbeats
            await stream.heartbeat()
        assert reads == ["alice"]  # the first read only
        await create(client, "Pay rent")
        await stream.change()
        assert len(reads) == 2  # woken once by the new change
        stream.close()


async def test_a_user_holds_at_most_the_stream_limit_and_a_closed_one_frees_its_place(feed: TaskClient) -> None:
    # The test unit allows 3 streams per user.
    held = [ChangeStream.open(feed.stub, feed.alice) for _ in range(3)]
    for stream in held:
        await stream.heartbeat()
    extra = ChangeStream.open(feed.stub, feed.alice)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await extra.next()
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    bobs = ChangeStream.open(feed.stub, feed.bob)
    await bobs.heartbeat()  # another user is not affected
    held[0].close()

    async def reopened() -> ChangeStream | None:
        stream = ChangeStream.open(feed.stub, feed.alice)
        try:
            await stream.next()
        except grpc.aio.AioRpcError:
            return None
        return stream

    again = await eventually(reopened)
    for stream in [*held[1:], bobs, again]:
        stream.close()


async def test_a_host_holds_at_most_its_stream_limit(kit_settings: Settings) -> None:
    async with running_feed(kit_settings, TaskFeedSettings(max_streams=2)) as client:
        held = [ChangeStream.open(client.stub, md) for md in (client.alice, client.bob)]
        for stream in held:
            await stream.heartbeat()
        carol = ChangeStream.open(client.stub, bearer(kit_settings, "carol"))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await carol.next()
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        for stream in held:
            stream.close()


async def test_stopping_the_host_ends_open_streams(kit_settings: Settings) -> None:
    host = EmbeddedHost(kit_settings, [build_unit(feed_settings=TaskFeedSettings())])
    await host.start()
    try:
        async with grpc.aio.insecure_channel(host.address) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            streams = [ChangeStream.open(stub, bearer(kit_settings, user)) for user in ("alice", "bob")]
            for stream in streams:
                await stream.heartbeat()
            async with asyncio.timeout(30):  # a guard against a hang, not a measure of speed
                await host.stop(grace=3)
                for stream in streams:
                    with pytest.raises(grpc.aio.AioRpcError) as caught:
                        await stream.next()
                    # Ended by the service with a word on what to do, not cut by the server's grace period.
                    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
                    assert "resume_after" in (caught.value.details() or "")
    finally:
        await host.stop(grace=0)


async def age_changes(client: TaskClient, hours: float, count: int) -> None:
    """Makes the user alice's oldest count changes look `hours` old."""
    async with client.host.databases["todo_task"].transaction() as conn:
        oldest = (
            sa.select(task_changes.c.seq)
            .where(task_changes.c.user_id == "alice")
            .order_by(task_changes.c.seq)
            .limit(count)
            .scalar_subquery()
        )
        await conn.execute(
            sa.update(task_changes)
            .where(task_changes.c.user_id == "alice", task_changes.c.seq.in_(oldest))
            .values(changed_at=datetime.now(UTC) - timedelta(hours=hours))
        )


async def test_pruned_history_makes_an_older_resume_point_out_of_range_and_a_newer_one_still_resumes(
    kit_settings: Settings,
) -> None:
    async with running_feed(kit_settings, TaskFeedSettings(retention_hours=2)) as client:
        start = ChangeStream.open(client.stub, client.alice)
        before_all = (await start.heartbeat()).last_change_id
        tasks = [await create(client, f"t{n}") for n in range(4)]
        changes = await start.changes(4)
        start.close()
        await age_changes(client, hours=1, count=1)  # within the retention: kept
        assert (await client.host.prune())["task_svc.task_changes"] == 0
        await age_changes(client, hours=3, count=2)  # the first two are past it
        assert (await client.host.prune())["task_svc.task_changes"] == 2
        for resume_after in (before_all, changes[0].change_id):
            stream = ChangeStream.open(client.stub, client.alice, resume_after=resume_after)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stream.next()
            assert caught.value.code() == grpc.StatusCode.OUT_OF_RANGE
        # The newest pruned change is still a resume point: nothing after it is missing.
        resumed = ChangeStream.open(client.stub, client.alice, resume_after=changes[1].change_id)
        await resumed.heartbeat()
        assert [c.task.task_id for c in await resumed.changes(2)] == [t.task_id for t in tasks[2:]]
        resumed.close()


async def test_a_stream_misses_nothing_while_the_listening_connection_is_replaced(kit_settings: Settings) -> None:
    # No heartbeat within the test: only the listener can wake the stream.
    async with running_feed(kit_settings, TaskFeedSettings(heartbeat_seconds=3600)) as client:
        stream = ChangeStream.open(client.stub, client.alice)
        await stream.heartbeat()
        restarts = client.host.supervisor.restarts
        async with client.host.databases["todo_task"].transaction() as conn:
            killed = await conn.scalar(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name = :name"
                ),
                {"name": FEED_LISTENER_NAME},
            )
        assert killed == 1
        lost = await create(client, "while nobody listened")
        assert (await stream.change(timeout=20)).task.task_id == lost.task_id
        await eventually(lambda: client.host.supervisor.restarts > restarts)
        after = await create(client, "after")
        assert (await stream.change(timeout=20)).task.task_id == after.task_id
        stream.close()
