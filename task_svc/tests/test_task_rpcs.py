"""Every TaskService RPC against a real server, real stubs and a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import jwt
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from task_fixtures import TaskClient

from todo_contracts.common.v1 import common_pb2
from todo_contracts.task.v1 import task_pb2
from todo_contracts.task.v1 import task_service_pb2 as ts
from todo_kit.auth import issue_token, signing_key_for


def zdt(local: str, zone: str = "Europe/Berlin") -> common_pb2.ZonedDateTime:
    return common_pb2.ZonedDateTime(local_time=local, time_zone=zone)


async def create(c: TaskClient, who: str = "alice", **fields: object) -> task_pb2.Task:
    md = c.alice if who == "alice" else c.bob
    fields.setdefault("title", "Pay rent")
    response = await c.stub.CreateTask(ts.CreateTaskRequest(task=task_pb2.Task(**fields)), metadata=md)  # type: ignore[arg-type]
    return response.task


async def all_tasks(c: TaskClient, md: list[tuple[str, str]]) -> list[task_pb2.Task]:
    request = ts.ListTasksRequest(page_size=1000, statuses=[task_pb2.TASK_STATUS_OPEN, task_pb2.TASK_STATUS_COMPLETED])
    return list((await c.stub.ListTasks(request, metadata=md)).tasks)


def violations(error: grpc.aio.AioRpcError) -> set[str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    found = set()
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            found |= {v.field for v in bad.field_violations}
    return found


async def test_create_get_and_list(tasks: TaskClient) -> None:
    made = await create(
        tasks, title="Pay rent", priority=task_pb2.PRIORITY_HIGH, tags=["Finance"], due=zdt("2026-12-01T09:00")
    )
    assert made.task_id and made.user_id == "alice" and made.version == 1
    assert made.status == task_pb2.TASK_STATUS_OPEN and list(made.tags) == ["finance"]
    got = (await tasks.stub.GetTask(ts.GetTaskRequest(task_id=made.task_id), metadata=tasks.alice)).task
    assert got == made
    assert [t.task_id for t in await all_tasks(tasks, tasks.alice)] == [made.task_id]


async def test_create_is_idempotent_by_client_request_id(tasks: TaskClient) -> None:
    request = ts.CreateTaskRequest(task=task_pb2.Task(title="Call mom"), client_request_id="req-1")
    first = await tasks.stub.CreateTask(request, metadata=tasks.alice)
    second = await tasks.stub.CreateTask(request, metadata=tasks.alice)
    assert first.task == second.task
    assert len(await all_tasks(tasks, tasks.alice)) == 1
    # The id is per user: bob's request with the same id is his own create.
    await tasks.stub.CreateTask(request, metadata=tasks.bob)
    assert len(await all_tasks(tasks, tasks.bob)) == 1


async def test_update_with_field_mask_and_expected_version(tasks: TaskClient) -> None:
    made = await create(tasks, description="old", due=zdt("2026-12-01T09:00", "Asia/Tokyo"))
    request = ts.UpdateTaskRequest(
        task=task_pb2.Task(
            task_id=made.task_id, title="Pay the rent", due=common_pb2.ZonedDateTime(local_time="2026-12-03T09:00")
        ),
        update_mask=field_mask_pb2.FieldMask(paths=["title", "due.local_time"]),
        expected_version=1,
    )
    updated = (await tasks.stub.UpdateTask(request, metadata=tasks.alice)).task
    assert updated.title == "Pay the rent" and updated.description == "old"
    assert updated.due.local_time == "2026-12-03T09:00:00" and updated.due.time_zone == "Asia/Tokyo"
    assert updated.version == 2
    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await tasks.stub.UpdateTask(request, metadata=tasks.alice)  # still says version 1
    assert stale.value.code() == grpc.StatusCode.ABORTED
    got = (await tasks.stub.GetTask(ts.GetTaskRequest(task_id=made.task_id), metadata=tasks.alice)).task
    assert got == updated


async def test_complete_reopen_delete(tasks: TaskClient) -> None:
    made = await create(tasks)
    done = (await tasks.stub.CompleteTask(ts.CompleteTaskRequest(task_id=made.task_id), metadata=tasks.alice)).task
    assert done.status == task_pb2.TASK_STATUS_COMPLETED and done.HasField("complete_time") and done.version == 2
    again = (await tasks.stub.CompleteTask(ts.CompleteTaskRequest(task_id=made.task_id), metadata=tasks.alice)).task
    assert again == done  # completing twice changes nothing
    reopened = (await tasks.stub.ReopenTask(ts.ReopenTaskRequest(task_id=made.task_id), metadata=tasks.alice)).task
    assert reopened.status == task_pb2.TASK_STATUS_OPEN and not reopened.HasField("complete_time")
    with pytest.raises(grpc.aio.AioRpcError) as conflict:
        await tasks.stub.DeleteTask(
            ts.DeleteTaskRequest(task_id=made.task_id, expected_version=1), metadata=tasks.alice
        )
    assert conflict.value.code() == grpc.StatusCode.ABORTED
    deleted = (await tasks.stub.DeleteTask(ts.DeleteTaskRequest(task_id=made.task_id), metadata=tasks.alice)).task
    assert deleted.task_id == made.task_id
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await tasks.stub.GetTask(ts.GetTaskRequest(task_id=made.task_id), metadata=tasks.alice)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


async def test_another_users_task_is_not_found_and_unchanged(tasks: TaskClient) -> None:
    mine = await create(tasks, title="Alice's secret")
    tid = mine.task_id
    calls = [
        tasks.stub.GetTask(ts.GetTaskRequest(task_id=tid), metadata=tasks.bob),
        tasks.stub.UpdateTask(
            ts.UpdateTaskRequest(
                task=task_pb2.Task(task_id=tid, title="mine now"), update_mask=field_mask_pb2.FieldMask(paths=["title"])
            ),
            metadata=tasks.bob,
        ),
        tasks.stub.CompleteTask(ts.CompleteTaskRequest(task_id=tid), metadata=tasks.bob),
        tasks.stub.ReopenTask(ts.ReopenTaskRequest(task_id=tid), metadata=tasks.bob),
        tasks.stub.DeleteTask(ts.DeleteTaskRequest(task_id=tid), metadata=tasks.bob),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert await all_tasks(tasks, tasks.bob) == []
    bob_search = await tasks.stub.ListTasks(ts.ListTasksRequest(query="secret"), metadata=tasks.bob)
    assert bob_search.total_size == 0
    assert await all_tasks(tasks, tasks.alice) == [mine]


@pytest.mark.parametrize(
    ("task", "bad_field"),
    [
        (task_pb2.Task(title=""), "task.title"),
        (task_pb2.Task(title="x" * 10_240), "task.title"),
        (task_pb2.Task(title="t", tags=[f"tag{i}" for i in range(1000)]), "task.tags"),
        (
            task_pb2.Task(title="t", due=zdt("2026-12-01T09:00"), recurrence=task_pb2.Recurrence(rrule="FREQ=NEVER")),
            "task.recurrence.rrule",
        ),
        (task_pb2.Task(title="t", due=zdt("2026-12-01T09:00", "Europe/Atlantis")), "task.due.time_zone"),
    ],
    ids=["empty-title", "10kB-title", "1000-tags", "bad-rrule", "unknown-zone"],
)
async def test_bad_create_is_invalid_argument_and_changes_nothing(
    tasks: TaskClient, task: task_pb2.Task, bad_field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await tasks.stub.CreateTask(ts.CreateTaskRequest(task=task), metadata=tasks.alice)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_field in violations(raised.value)
    assert await all_tasks(tasks, tasks.alice) == []


async def test_bad_update_changes_nothing(tasks: TaskClient) -> None:
    made = await create(tasks)
    for mask, patch in [
        (["title"], task_pb2.Task(title="")),
        (["status"], task_pb2.Task(status=task_pb2.TASK_STATUS_COMPLETED)),
        (["due"], task_pb2.Task(due=zdt("2026-13-01T09:00"))),
        ([], task_pb2.Task(title="x")),
    ]:
        patch.task_id = made.task_id
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            request = ts.UpdateTaskRequest(task=patch, update_mask=field_mask_pb2.FieldMask(paths=mask))
            await tasks.stub.UpdateTask(request, metadata=tasks.alice)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (await tasks.stub.GetTask(ts.GetTaskRequest(task_id=made.task_id), metadata=tasks.alice)).task == made


@pytest.mark.parametrize(
    "request_",
    [
        ts.ListTasksRequest(page_size=1_000_000),
        ts.ListTasksRequest(page_size=-1),
        ts.ListTasksRequest(page_token="garbage!!"),
        ts.ListTasksRequest(query="x" * 1000),
        ts.ListTasksRequest(order_by=ts.TASK_ORDER_BY_RELEVANCE),
    ],
    ids=["page-size-1e6", "negative-page-size", "garbage-token", "huge-query", "relevance-without-query"],
)
async def test_bad_list_requests_are_invalid_argument(tasks: TaskClient, request_: ts.ListTasksRequest) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await tasks.stub.ListTasks(request_, metadata=tasks.alice)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_malformed_task_id_is_invalid_argument(tasks: TaskClient) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await tasks.stub.GetTask(ts.GetTaskRequest(task_id="'; drop table tasks; --"), metadata=tasks.alice)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_tokens_are_required_and_checked(tasks: TaskClient) -> None:
    settings = tasks.host.settings
    key = signing_key_for(settings)
    past = datetime.now(UTC) - timedelta(days=2)
    expired = issue_token(key, "alice", ttl=timedelta(hours=1), now=past)
    forged = issue_token("another-key-that-is-long-enough-to-be-accepted-by-pyjwt", "alice")
    unsigned = jwt.encode(
        {"sub": "alice", "aud": "todo", "iss": "todo-chatbot", "exp": datetime.now(UTC) + timedelta(hours=1)},
        None,
        algorithm="none",
    )
    cases = {
        "missing": [],
        "malformed": [("authorization", "Bearer not.a.jwt")],
        "wrong-scheme": [("authorization", f"Basic {issue_token(key, 'alice')}")],
        "expired": [("authorization", f"Bearer {expired}")],
        "wrongly-signed": [("authorization", f"Bearer {forged}")],
        "unsigned": [("authorization", f"Bearer {unsigned}")],
    }
    for name, metadata in cases.items():
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await tasks.stub.CreateTask(ts.CreateTaskRequest(task=task_pb2.Task(title="x")), metadata=metadata)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
    assert await all_tasks(tasks, tasks.alice) == []


async def test_filters(tasks: TaskClient) -> None:
    now = datetime.now(UTC)
    past = (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    soon = (now + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    later = (now + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
    overdue = await create(
        tasks, title="Overdue bill", due=zdt(past, "UTC"), priority=task_pb2.PRIORITY_URGENT, tags=["finance", "home"]
    )
    upcoming = await create(
        tasks, title="Dentist", due=zdt(soon, "UTC"), priority=task_pb2.PRIORITY_LOW, tags=["health"]
    )
    far = await create(tasks, title="Taxes", due=zdt(later, "UTC"), tags=["finance"])
    undated = await create(tasks, title="Read a book")
    await tasks.stub.CompleteTask(ts.CompleteTaskRequest(task_id=far.task_id), metadata=tasks.alice)

    async def ids(**kwargs: object) -> list[str]:
        kwargs.setdefault("statuses", [task_pb2.TASK_STATUS_OPEN, task_pb2.TASK_STATUS_COMPLETED])
        response = await tasks.stub.ListTasks(ts.ListTasksRequest(**kwargs), metadata=tasks.alice)  # type: ignore[arg-type]
        assert response.total_size == len(response.tasks)
        return [t.task_id for t in response.tasks]

    assert await ids(overdue=True) == [overdue.task_id]
    assert await ids(statuses=[task_pb2.TASK_STATUS_COMPLETED]) == [far.task_id]
    assert await ids(priorities=[task_pb2.PRIORITY_URGENT, task_pb2.PRIORITY_LOW]) == [
        overdue.task_id,
        upcoming.task_id,
    ]
    assert set(await ids(tags_any=["finance", "health"])) == {overdue.task_id, upcoming.task_id, far.task_id}
    assert await ids(tags_all=["finance", "home"]) == [overdue.task_id]
    window = common_pb2.TimeRange(start_time=_ts(now), end_time=_ts(now + timedelta(days=2)))
    assert await ids(due_range=window) == [upcoming.task_id]
    # Default order: by due time, undated last; by default only open tasks.
    assert await ids() == [overdue.task_id, upcoming.task_id, far.task_id, undated.task_id]
    assert await ids(statuses=[]) == [overdue.task_id, upcoming.task_id, undated.task_id]
    assert await ids(order_by=ts.TASK_ORDER_BY_TITLE) == [
        upcoming.task_id,
        overdue.task_id,
        undated.task_id,
        far.task_id,
    ]
    assert (await ids(order_by=ts.TASK_ORDER_BY_PRIORITY))[0] == overdue.task_id
    newest_first = await ids(order_by=ts.TASK_ORDER_BY_CREATE_TIME)
    assert newest_first == [undated.task_id, far.task_id, upcoming.task_id, overdue.task_id]
    oldest_first = await ids(order_by=ts.TASK_ORDER_BY_CREATE_TIME, sort_order=common_pb2.SORT_ORDER_ASCENDING)
    assert oldest_first == newest_first[::-1]


def _ts(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


async def test_ranked_word_search(tasks: TaskClient) -> None:
    title_hit = await create(tasks, title="Pay rent", description="landlord wants it by the 1st")
    description_hit = await create(tasks, title="Call landlord", description="ask about the rent increase")
    tag_hit = await create(tasks, title="Transfer money", tags=["rent"])
    await create(tasks, title="Buy milk")
    response = await tasks.stub.ListTasks(ts.ListTasksRequest(query="rent"), metadata=tasks.alice)
    found = [t.task_id for t in response.tasks]
    assert set(found) == {title_hit.task_id, description_hit.task_id, tag_hit.task_id}
    assert found[-1] == description_hit.task_id  # a description match ranks below title and tag matches
    stemmed = await tasks.stub.ListTasks(ts.ListTasksRequest(query="paying"), metadata=tasks.alice)
    assert [t.task_id for t in stemmed.tasks] == [title_hit.task_id]
    prefix = await tasks.stub.ListTasks(ts.ListTasksRequest(query="landl"), metadata=tasks.alice)
    assert {t.task_id for t in prefix.tasks} == {title_hit.task_id, description_hit.task_id}
    nothing = await tasks.stub.ListTasks(ts.ListTasksRequest(query="'); --"), metadata=tasks.alice)
    assert nothing.total_size == 0


async def test_pagination_walks_every_task_once(tasks: TaskClient) -> None:
    made = {(await create(tasks, title=f"Task {i:02d}")).task_id for i in range(23)}
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        request = ts.ListTasksRequest(page_size=10, page_token=token, order_by=ts.TASK_ORDER_BY_TITLE)
        response = await tasks.stub.ListTasks(request, metadata=tasks.alice)
        assert response.total_size == 23
        seen += [t.task_id for t in response.tasks]
        pages += 1
        token = response.next_page_token
        if not token:
            break
    assert pages == 3 and len(seen) == 23 and set(seen) == made
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        first = await tasks.stub.ListTasks(ts.ListTasksRequest(page_size=10), metadata=tasks.alice)
        await tasks.stub.ListTasks(
            ts.ListTasksRequest(page_size=10, page_token=first.next_page_token, query="task"), metadata=tasks.alice
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_recurring_task_starts_a_series(tasks: TaskClient) -> None:
    made = await create(
        tasks,
        title="Water plants",
        due=zdt("2026-12-07T09:00"),
        recurrence=task_pb2.Recurrence(rrule="FREQ=WEEKLY;BYDAY=MO"),
    )
    assert made.recurrence.series_id and made.recurrence.occurrence_index == 1
    listed = await tasks.stub.ListTasks(ts.ListTasksRequest(series_id=made.recurrence.series_id), metadata=tasks.alice)
    assert [t.task_id for t in listed.tasks] == [made.task_id]


async def test_unexpected_failure_is_internal_without_a_stack_trace(
    tasks: TaskClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    made = await create(tasks)

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("connection string postgres://secret@db")

    monkeypatch.setattr("task_svc.handlers.TaskRepository.get", broken)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await tasks.stub.GetTask(ts.GetTaskRequest(task_id=made.task_id), metadata=tasks.alice)
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    details = raised.value.details() or ""
    assert "secret" not in details and "Traceback" not in details
    reference = details.split("quote ", 1)[1].split(" ", 1)[0]
    logged = [r for r in caplog.records if getattr(r, "error_ref", None) == reference]
    assert logged and logged[0].exc_info is not None


async def test_a_huge_request_is_resource_exhausted_and_changes_nothing(tasks: TaskClient) -> None:
    huge = ts.CreateTaskRequest(task=task_pb2.Task(title="t", description="x" * (2 * 1024 * 1024)))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await tasks.stub.CreateTask(huge, metadata=tasks.alice)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await all_tasks(tasks, tasks.alice) == []
