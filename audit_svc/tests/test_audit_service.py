"""AuditService on a real host: what gets recorded, once, for whom; listing, paging and bad requests."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from audit_fixtures import AuditClient, at, task_event
from google.protobuf import timestamp_pb2

from todo_contracts import envelope, topics
from todo_contracts.audit.v1 import audit_pb2
from todo_contracts.common.v1 import common_pb2
from todo_contracts.task.v1 import events_pb2 as task_events
from todo_contracts.task.v1 import task_pb2
from todo_contracts.task.v1 import task_service_pb2 as ts
from todo_contracts.testing import populate
from todo_kit.messaging import processed_events_table
from todo_kit.runtime.port import DropEvent
from todo_kit.testing import bearer, eventually, field_violations

TASK_EVENT_TYPES = sorted(topics.TASK_EVENTS.type_names)


async def test_a_recurring_tasks_life_is_recorded_once_per_event_with_summaries(audit_flow: AuditClient) -> None:
    flow = audit_flow
    due = common_pb2.ZonedDateTime(local_time="2030-12-01T09:00", time_zone="Europe/Paris")
    rule = task_pb2.ReminderRule(before_due={"seconds": 1800})
    task = task_pb2.Task(
        title="Pay rent", due=due, reminders=[rule], recurrence=task_pb2.Recurrence(rrule="FREQ=MONTHLY")
    )
    created = (await flow.tasks.CreateTask(ts.CreateTaskRequest(task=task), metadata=flow.alice)).task
    renamed = task_pb2.Task(task_id=created.task_id, title="Pay the rent")
    await flow.tasks.UpdateTask(
        ts.UpdateTaskRequest(task=renamed, update_mask={"paths": ["title"]}), metadata=flow.alice
    )
    await flow.tasks.CompleteTask(ts.CompleteTaskRequest(task_id=created.task_id), metadata=flow.alice)

    def alices_events() -> list[str]:
        events = [e for e in flow.recorder.events() if e.partition_key == "alice"]
        types = [e.type for e in events]
        # The whole story: the next occurrence was created and its reminder planned.
        done = types.count("todo.task.v1.TaskCreated") == 2 and types.count("todo.reminder.v1.ReminderScheduled") >= 2
        return [e.id for e in events] if done else []

    published = await eventually(alices_events)

    async def recorded() -> list[str]:
        entries = [e.event_id for e in await flow.entries("alice")]
        return entries if len(entries) >= len(published) else []

    entries = await flow.entries("alice") if await eventually(recorded) else []
    assert sorted(e.event_id for e in entries) == sorted(published)  # each event once, nothing else
    assert [e.sequence for e in entries] == list(range(1, len(published) + 1))
    listed = await flow.list_all(flow.alice, task_id=created.task_id, sort_order=common_pb2.SORT_ORDER_ASCENDING)
    summaries = [e.summary for e in listed]
    assert summaries[0] == "Created “Pay rent” (due Sun 1 Dec 2030 09:00 Europe/Paris; repeats FREQ=MONTHLY)"
    assert "Changed “Pay the rent”: renamed from “Pay rent”" in summaries
    assert "Completed “Pay the rent” (occurrence 1 of a repeating task; the next one follows)" in summaries
    assert "Next occurrence of “Pay the rent”: number 2 due Wed 1 Jan 2031 09:00 Europe/Paris" in summaries
    assert "Reminder for “Pay rent” set for Sun 1 Dec 2030 08:30 Europe/Paris" in summaries
    assert all(e.task_id == created.task_id and e.user_id == "alice" for e in listed)
    verified = await flow.verify(flow.alice)
    assert (
        verified.intact and verified.entries_checked == len(published) and verified.head_hash == entries[-1].entry_hash
    )


async def test_every_event_type_of_every_topic_becomes_one_entry(audit: AuditClient) -> None:
    messages = []
    for topic in topics.ALL_TOPICS:
        for event_type in topic.event_types:
            message = populate(event_type())
            message.user_id = "alice"  # type: ignore[attr-defined]
            messages.append(message)
    ids = await audit.publish(messages)

    async def recorded() -> list[str]:
        entries = await audit.entries("alice")
        return [e.event_type for e in entries] if len(entries) >= len(ids) else []

    types = await eventually(recorded)
    assert sorted(types) == sorted(topics.event_types())
    entries = await audit.entries("alice")
    assert sorted(e.event_id for e in entries) == sorted(ids)
    assert all(not e.summary.endswith(" recorded") for e in entries)


async def test_a_redelivered_event_is_recorded_once(audit: AuditClient) -> None:
    event = await audit.record(task_event(1))
    await audit.handler(event)  # redelivered
    await asyncio.gather(*(audit.handler(event) for _ in range(5)))  # by several at once
    # Redelivered after its inbox id was pruned: the log itself knows the event.
    async with audit.owner() as db, db.transaction() as conn:
        await conn.execute(processed_events_table.delete())
    await audit.handler(event)
    entries = await audit.entries("alice")
    assert [(e.sequence, e.event_id) for e in entries] == [(1, event.id)]
    assert (await audit.verify(audit.alice)).entries_checked == 1


async def test_an_event_of_no_user_is_dropped_not_retried(audit: AuditClient) -> None:
    ce = envelope.wrap(task_event(1), source="/todo/test")
    del ce.attributes[envelope.ATTR_PARTITION_KEY]
    ownerless = envelope.unwrap(ce)
    ownerless.message.user_id = ""  # type: ignore[attr-defined]
    with pytest.raises(DropEvent, match="names no user"):
        await audit.handler(ownerless)
    assert await audit.entries("") == []


async def test_concurrent_appends_for_one_user_never_fork_the_chain(audit: AuditClient) -> None:
    async def feed(worker: int) -> None:
        for number in range(50):
            await audit.record(task_event(worker * 100 + number))

    await asyncio.gather(*(feed(worker) for worker in range(8)))
    entries = await audit.entries("alice")
    assert [e.sequence for e in entries] == list(range(1, 401))
    assert len({e.event_id for e in entries}) == 400
    verified = await audit.verify(audit.alice)
    assert verified.intact and verified.entries_checked == 400 and verified.first_broken_sequence == 0
    assert verified.head_hash == entries[-1].entry_hash


async def test_another_users_activity_is_never_visible(audit: AuditClient) -> None:
    task_id = "00000000-0000-4000-8000-000000000007"
    for number in range(3):
        await audit.record(task_event(number, task_id=task_id))
    await audit.record(task_event(9, user="bob"))
    assert [e.user_id for e in await audit.list_all(audit.alice)] == ["alice"] * 3
    assert [e.user_id for e in await audit.list_all(audit.bob)] == ["bob"]
    assert await audit.list_all(audit.bob, task_id=task_id) == []
    bobs = await audit.verify(audit.bob)
    assert bobs.intact and bobs.entries_checked == 1
    nobody = await audit.verify(bearer(audit.settings, "carol"))
    assert nobody.intact and nobody.entries_checked == 0 and nobody.head_hash == b""


def stamp(seconds: float) -> timestamp_pb2.Timestamp:
    value = timestamp_pb2.Timestamp()
    value.FromDatetime(at(seconds))
    return value


async def record_mixed(audit: AuditClient) -> list[audit_pb2.ActivityEntry]:
    """30 entries: three tasks, two event types, happening one a minute but recorded in another order."""
    for number in range(30):
        task_id = f"00000000-0000-4000-8000-00000000000{number % 3}"
        message = task_event(number, task_id=task_id)
        if number % 2:
            message = task_events.TaskCompleted(user_id="alice", task=message.task)  # type: ignore[attr-defined]
        # Events arrive out of the order they happened in.
        await audit.record(message, time=at(60 * ((number * 7) % 30)))
    return await audit.list_all(audit.alice, sort_order=common_pb2.SORT_ORDER_ASCENDING)


async def test_listing_is_newest_first_by_when_it_happened_and_filters_by_task_type_and_time(
    audit: AuditClient,
) -> None:
    everything = await record_mixed(audit)
    assert [e.occur_time.ToDatetime() for e in everything] == sorted(e.occur_time.ToDatetime() for e in everything)
    newest_first = await audit.list_all(audit.alice)
    assert [e.sequence for e in newest_first] == [e.sequence for e in reversed(everything)]
    task = "00000000-0000-4000-8000-000000000001"
    by_task = await audit.list_all(audit.alice, task_id=task)
    assert {e.task_id for e in by_task} == {task} and len(by_task) == 10
    completed = await audit.list_all(audit.alice, event_types=["todo.task.v1.TaskCompleted"])
    assert {e.event_type for e in completed} == {"todo.task.v1.TaskCompleted"} and len(completed) == 15
    both = await audit.list_all(audit.alice, event_types=["todo.task.v1.TaskCompleted", "todo.task.v1.TaskUpdated"])
    assert [e.sequence for e in both] == [e.sequence for e in newest_first]
    window = common_pb2.TimeRange(start_time=stamp(600), end_time=stamp(1200))
    in_window = await audit.list_all(audit.alice, occur_range=window)
    assert sorted(e.occur_time.ToDatetime() for e in in_window) == [
        at(60 * m).replace(tzinfo=None) for m in range(10, 20)
    ]
    combined = await audit.list_all(
        audit.alice, task_id=task, event_types=["todo.task.v1.TaskCompleted"], occur_range=window
    )
    expected = [e.sequence for e in in_window if e.task_id == task and e.event_type.endswith("Completed")]
    assert [e.sequence for e in combined] == expected and expected
    open_ended = await audit.list_all(audit.alice, occur_range=common_pb2.TimeRange(start_time=stamp(1740)))
    assert len(open_ended) == 1
    assert (
        await audit.list_all(audit.alice, occur_range=common_pb2.TimeRange(start_time=stamp(600), end_time=stamp(600)))
        == []
    )


@pytest.mark.parametrize(
    "request_fields",
    [
        {},
        {"sort_order": common_pb2.SORT_ORDER_ASCENDING},
        {"event_types": TASK_EVENT_TYPES},
        {"event_types": TASK_EVENT_TYPES, "sort_order": common_pb2.SORT_ORDER_ASCENDING},
        {"task_id": "00000000-0000-4000-8000-000000000002"},
    ],
    ids=["newest first", "oldest first", "by types", "by types oldest first", "by task"],
)
async def test_pages_neither_repeat_nor_skip_an_entry_while_new_ones_are_appended(
    audit: AuditClient, request_fields: dict[str, object]
) -> None:
    for number in range(60):
        await audit.record(task_event(number, task_id=f"00000000-0000-4000-8000-00000000000{number % 3}"),
                           time=at(60 * (number // 2)))  # fmt: skip
    before = {e.sequence for e in await audit.list_all(audit.alice, **request_fields)}
    seen: list[int] = []
    token = ""
    appended = 0
    while True:
        reply = await audit.audit.ListActivity(
            audit_pb2.ListActivityRequest(page_size=7, page_token=token, **request_fields),  # type: ignore[arg-type]
            metadata=audit.alice,
        )
        assert len(reply.entries) <= 7
        seen += [e.sequence for e in reply.entries]
        # New entries, some happening before and some after the page just read.
        for offset in (-1, 1):
            appended += 1
            await audit.record(task_event(1000 + appended, task_id="00000000-0000-4000-8000-000000000002"),
                               time=at(60 * (30 * offset + appended)))  # fmt: skip
        token = reply.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen))  # no repeats
    assert before <= set(seen)  # no gaps among what was there


async def test_a_page_of_large_entries_stays_under_the_response_limit(audit: AuditClient) -> None:
    big = "d" * 10_000
    for number in range(400):
        task = task_pb2.Task(task_id=f"00000000-0000-4000-8000-{number:012d}", title="Pay rent", description=big)
        await audit.record(
            task_events.TaskUpdated(user_id="alice", task=task, previous=task, changed_fields=["description"])
        )
    reply = await audit.audit.ListActivity(audit_pb2.ListActivityRequest(page_size=1000), metadata=audit.alice)
    assert 0 < len(reply.entries) < 400 and reply.next_page_token
    assert reply.ByteSize() < 4 * 1024 * 1024
    assert len({e.sequence for e in await audit.list_all(audit.alice, page_size=1000)}) == 400


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"task_id": "rent"}, "task_id"),
        ({"task_id": "{00000000-0000-4000-8000-000000000001}"}, "task_id"),
        ({"event_types": ["TaskCompleted"]}, "event_types[0]"),
        ({"event_types": ["todo.task.v1.TaskCompleted", "todo.task.v1.Task"]}, "event_types[1]"),
        ({"event_types": ["todo.task.v1.TaskCompleted"] * 21}, "event_types"),
        ({"occur_range": common_pb2.TimeRange(start_time=stamp(60), end_time=stamp(0))}, "occur_range"),
        ({"sort_order": 7}, "sort_order"),
        ({"page_size": -1}, "page_size"),
        ({"page_size": 1001}, "page_size"),
        ({"page_token": "not-a-token"}, "page_token"),
    ],
)
async def test_a_bad_request_is_invalid_argument_naming_the_field(
    audit: AuditClient, request_fields: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await audit.audit.ListActivity(
            audit_pb2.ListActivityRequest(**request_fields),  # type: ignore[arg-type]
            metadata=audit.alice,
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in field_violations(raised.value)] == [field]


async def test_a_page_token_serves_only_its_own_listing_and_user(audit: AuditClient) -> None:
    for number in range(3):
        await audit.record(task_event(number))
        await audit.record(task_event(number, user="bob"))
    first = await audit.audit.ListActivity(audit_pb2.ListActivityRequest(page_size=1), metadata=audit.alice)
    token = first.next_page_token
    assert token
    altered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    ascending = common_pb2.SORT_ORDER_ASCENDING
    others = [
        (audit_pb2.ListActivityRequest(page_size=1, page_token=token, sort_order=ascending), audit.alice),
        (audit_pb2.ListActivityRequest(page_size=1, page_token=token, event_types=TASK_EVENT_TYPES), audit.alice),
        (audit_pb2.ListActivityRequest(page_size=1, page_token=token), audit.bob),
        (audit_pb2.ListActivityRequest(page_size=1, page_token=altered), audit.alice),
    ]
    for request, metadata in others:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await audit.audit.ListActivity(request, metadata=metadata)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [f for f, _ in field_violations(raised.value)] == ["page_token"]
    second = await audit.audit.ListActivity(
        audit_pb2.ListActivityRequest(page_size=5, page_token=token), metadata=audit.alice
    )
    assert [e.sequence for e in second.entries] == [2, 1]


async def test_listing_an_empty_log_returns_no_entries_and_no_token(audit: AuditClient) -> None:
    reply = await audit.audit.ListActivity(audit_pb2.ListActivityRequest(), metadata=audit.alice)
    assert list(reply.entries) == [] and reply.next_page_token == ""
