"""ListTasks pages: tokens nobody can edit or reuse, keyset pages that neither skip nor repeat, open by default."""

from __future__ import annotations

import base64
import itertools

import grpc
import pytest
from google.protobuf import field_mask_pb2
from task_fixtures import TaskClient

from todo_contracts.common.v1 import common_pb2
from todo_contracts.task.v1 import task_pb2
from todo_contracts.task.v1 import task_service_pb2 as ts
from todo_kit.testing import bearer

OPEN = task_pb2.TASK_STATUS_OPEN
COMPLETED = task_pb2.TASK_STATUS_COMPLETED
ASCENDING = common_pb2.SORT_ORDER_ASCENDING
DESCENDING = common_pb2.SORT_ORDER_DESCENDING
_walkers = itertools.count()


def zdt(local: str) -> common_pb2.ZonedDateTime:
    return common_pb2.ZonedDateTime(local_time=local, time_zone="Europe/Berlin")


async def create(c: TaskClient, md: list[tuple[str, str]], title: str, **fields: object) -> task_pb2.Task:
    request = ts.CreateTaskRequest(task=task_pb2.Task(title=title, **fields))  # type: ignore[arg-type]
    return (await c.stub.CreateTask(request, metadata=md)).task


async def list_tasks(c: TaskClient, md: list[tuple[str, str]], **fields: object) -> ts.ListTasksResponse:
    return await c.stub.ListTasks(ts.ListTasksRequest(**fields), metadata=md)  # type: ignore[arg-type]


async def refused_field(c: TaskClient, md: list[tuple[str, str]], **fields: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await list_tasks(c, md, **fields)
    return raised.value.code()


def unpadded(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decoded(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


async def test_an_edited_page_token_is_invalid_argument(tasks: TaskClient) -> None:
    for i in range(5):
        await create(tasks, tasks.alice, f"Task {i}")
    token = (await list_tasks(tasks, tasks.alice, page_size=2)).next_page_token
    assert token
    raw = decoded(token)
    # Each byte with its lowest bit flipped, one at a time: the position, the
    # listing it belongs to and the signature are all covered by the signature.
    for index in range(len(raw)):
        edited = raw[:index] + bytes([raw[index] ^ 1]) + raw[index + 1 :]
        code = await refused_field(tasks, tasks.alice, page_size=2, page_token=unpadded(edited))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, index
    for cut in (1, len(token) // 2, len(token) - 1):
        code = await refused_field(tasks, tasks.alice, page_size=2, page_token=token[:cut])
        assert code == grpc.StatusCode.INVALID_ARGUMENT, cut


async def test_a_page_token_works_only_for_its_own_listing_and_user(tasks: TaskClient) -> None:
    for i in range(5):
        await create(tasks, tasks.alice, f"Task {i}")
        await create(tasks, tasks.bob, f"Task {i}")
    token = (await list_tasks(tasks, tasks.alice, page_size=2)).next_page_token
    assert (await list_tasks(tasks, tasks.alice, page_size=2, page_token=token)).tasks
    other_listings: list[dict[str, object]] = [
        {"query": "task"},
        {"order_by": ts.TASK_ORDER_BY_TITLE},
        {"sort_order": DESCENDING},
        {"statuses": [OPEN, COMPLETED]},
    ]
    for fields in other_listings:
        code = await refused_field(tasks, tasks.alice, page_size=2, page_token=token, **fields)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, fields
    # The same listing, asked by another user: the token is alice's.
    assert await refused_field(tasks, tasks.bob, page_size=2, page_token=token) == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_page_token_of_deeply_nested_json_is_invalid_argument(tasks: TaskClient) -> None:
    # What the old format (base64 of JSON) parsed before looking at it.
    nested = unpadded(b"[" * 100_000 + b"]" * 100_000)
    assert await refused_field(tasks, tasks.alice, page_token=nested) == grpc.StatusCode.INVALID_ARGUMENT
    shallow = unpadded(b'{"o":[[[[[[1]]]]]],"f":{"a":[[[]]]}}')
    assert await refused_field(tasks, tasks.alice, page_token=shallow) == grpc.StatusCode.INVALID_ARGUMENT


async def test_list_tasks_without_statuses_shows_only_open_tasks(tasks: TaskClient) -> None:
    done = await create(tasks, tasks.alice, "Pay rent")
    await tasks.stub.CompleteTask(ts.CompleteTaskRequest(task_id=done.task_id), metadata=tasks.alice)
    still_open = await create(tasks, tasks.alice, "Call mom")
    default = await list_tasks(tasks, tasks.alice)
    assert [t.task_id for t in default.tasks] == [still_open.task_id] and default.total_size == 1
    both = await list_tasks(tasks, tasks.alice, statuses=[OPEN, COMPLETED])
    assert {t.task_id for t in both.tasks} == {done.task_id, still_open.task_id} and both.total_size == 2
    searched = await list_tasks(tasks, tasks.alice, query="rent")
    assert list(searched.tasks) == [] and searched.total_size == 0


# --- keyset pages while tasks change ----------------------------------------

ORDERS = {
    "due": ts.TASK_ORDER_BY_DUE_TIME,
    "priority": ts.TASK_ORDER_BY_PRIORITY,
    "created": ts.TASK_ORDER_BY_CREATE_TIME,
    "updated": ts.TASK_ORDER_BY_UPDATE_TIME,
    "title": ts.TASK_ORDER_BY_TITLE,
    "relevance": ts.TASK_ORDER_BY_RELEVANCE,
}
# Ties on every sort key (equal due times, priorities, titles apart from case,
# ranks) and tasks without a due time, so pages end inside runs of equal keys
# and cross from dated to undated tasks.
BASE = [
    ("Rent A", "2026-12-01T09:00", task_pb2.PRIORITY_HIGH, "", ["rent"]),
    ("rent a", "2026-12-01T09:00", task_pb2.PRIORITY_HIGH, "", []),
    ("RENT B", "2026-12-02T09:00", task_pb2.PRIORITY_LOW, "rent again", []),
    ("Rent c", "2026-12-03T09:00", task_pb2.PRIORITY_LOW, "", []),
    ("Rent d", "2026-12-03T09:00", task_pb2.PRIORITY_NONE, "", ["home"]),
    ("Call about the rent", None, task_pb2.PRIORITY_URGENT, "", []),
    ("rent e", None, task_pb2.PRIORITY_HIGH, "", []),
    ("Rent e", None, task_pb2.PRIORITY_NONE, "", []),
    ("Rent f", None, task_pb2.PRIORITY_LOW, "", []),
    ("Landlord", None, task_pb2.PRIORITY_MEDIUM, "ask about the rent", []),
    ("Rent g", "2027-01-15T18:30", task_pb2.PRIORITY_MEDIUM, "", []),
]
# What is created while the listing is walked: before, inside and after the
# pages already read, with and without due times.
INSERTED = [
    ("Rent 0 early", "2025-01-01T08:00", task_pb2.PRIORITY_URGENT, "", ["rent"]),
    ("Rent zz late", "2030-06-01T08:00", task_pb2.PRIORITY_NONE, "", []),
    ("Rent m", None, task_pb2.PRIORITY_MEDIUM, "rent rent", []),
    ("rent B", "2026-12-02T09:00", task_pb2.PRIORITY_LOW, "", []),
]


def new_task(title: str, due: str | None, priority: int, description: str, tags: list[str]) -> task_pb2.Task:
    task = task_pb2.Task(title=title, priority=priority, description=description, tags=tags)  # type: ignore[arg-type]
    if due is not None:
        task.due.CopyFrom(zdt(due))
    return task


@pytest.mark.parametrize("direction", [ASCENDING, DESCENDING], ids=["ascending", "descending"])
@pytest.mark.parametrize("order", list(ORDERS.values()), ids=list(ORDERS))
async def test_pages_neither_skip_nor_repeat_tasks_while_tasks_change(
    tasks: TaskClient, order: int, direction: int
) -> None:
    md = bearer(tasks.host.settings, f"walker-{next(_walkers)}")
    made: list[task_pb2.Task] = []
    for fields in BASE:
        made.append((await tasks.stub.CreateTask(ts.CreateTaskRequest(task=new_task(*fields)), metadata=md)).task)
    listing = {"query": "rent", "order_by": order, "sort_order": direction, "page_size": 3}
    changed: set[str] = set()  # completed (so no longer listed) or updated (a new update time)
    to_insert = list(INSERTED)
    walked: list[str] = []
    token = ""
    while True:
        page = await list_tasks(tasks, md, page_token=token, **listing)
        walked += [t.task_id for t in page.tasks]
        token = page.next_page_token
        if not token:
            break
        # Between pages: a listed task is completed and another one edited,
        # and a task is created somewhere in the order.
        seen = [t for t in page.tasks if t.task_id not in changed]
        if seen:
            await tasks.stub.CompleteTask(ts.CompleteTaskRequest(task_id=seen[0].task_id), metadata=md)
            changed.add(seen[0].task_id)
        if len(seen) > 1:
            # More words after the matching ones: a new update time, the same rank.
            edit = task_pb2.Task(task_id=seen[1].task_id, description=seen[1].description + " edited")
            mask = field_mask_pb2.FieldMask(paths=["description"])
            await tasks.stub.UpdateTask(ts.UpdateTaskRequest(task=edit, update_mask=mask), metadata=md)
            changed.add(seen[1].task_id)
        if to_insert:
            created = await tasks.stub.CreateTask(ts.CreateTaskRequest(task=new_task(*to_insert.pop())), metadata=md)
            changed.add(created.task.task_id)
    assert len(walked) > 6, "the walk must span several pages"
    stayed = [t.task_id for t in made if t.task_id not in changed]
    final = await list_tasks(tasks, md, **{**listing, "page_size": 1000})
    # Every task that stayed in the listing unchanged shows up exactly once, in
    # the listing's order; an updated task comes at most twice only when its
    # sort key is its update time.
    assert sorted(t for t in walked if t in stayed) == sorted(stayed)
    assert [t for t in walked if t in stayed] == [t.task_id for t in final.tasks if t.task_id in stayed]
    repeated = {t for t in walked if walked.count(t) > 1}
    assert not repeated or (order == ts.TASK_ORDER_BY_UPDATE_TIME and repeated <= changed)


@pytest.mark.parametrize("direction", [ASCENDING, DESCENDING], ids=["ascending", "descending"])
async def test_pages_without_a_query_neither_skip_nor_repeat_across_undated_tasks(
    tasks: TaskClient, direction: int
) -> None:
    # The listing that walks an index (no words to search): by due time, dated
    # tasks first and undated ones after them in both directions.
    md = bearer(tasks.host.settings, f"walker-{next(_walkers)}")
    made = [
        (await tasks.stub.CreateTask(ts.CreateTaskRequest(task=new_task(*fields)), metadata=md)).task for fields in BASE
    ]
    dated = [t.task_id for t in made if t.HasField("due")]
    walked: list[str] = []
    token = ""
    to_insert = list(INSERTED)
    completed: set[str] = set()
    while True:
        page = await list_tasks(tasks, md, sort_order=direction, page_size=2, page_token=token)
        assert page.total_size == len(made) + len(INSERTED) - len(to_insert) - len(completed)
        walked += [t.task_id for t in page.tasks]
        token = page.next_page_token
        if not token:
            break
        await tasks.stub.CompleteTask(ts.CompleteTaskRequest(task_id=page.tasks[0].task_id), metadata=md)
        completed.add(page.tasks[0].task_id)
        if to_insert:
            await tasks.stub.CreateTask(ts.CreateTaskRequest(task=new_task(*to_insert.pop())), metadata=md)
    stayed = [t.task_id for t in made if t.task_id not in completed]
    assert sorted(t for t in walked if t in stayed) == sorted(stayed)
    assert len(walked) == len(set(walked))
    positions = [walked.index(t) for t in dated if t in walked]
    undated_positions = [walked.index(t.task_id) for t in made if not t.HasField("due") and t.task_id in walked]
    assert max(positions) < min(undated_positions), "tasks without a due time come last"
