"""Reminders end to end on the embedded default: planned from task rules, fired once, re-planned, cancelled, snoozed."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from flow_client import Flow, eventually, in_utc, running_flow
from google.protobuf import duration_pb2, field_mask_pb2

from reminder_svc import domain as reminder_domain
from reminder_svc.storage import ReminderRepository, reminders, task_plans
from todo_contracts import envelope
from todo_contracts.reminder.v1 import events_pb2 as reminder_events
from todo_contracts.reminder.v1 import reminder_pb2
from todo_contracts.task.v1 import task_pb2
from todo_contracts.task.v1 import task_service_pb2 as ts
from todo_kit.config import Settings
from todo_kit.logs import JsonFormatter

DUE = "todo.reminder.v1.ReminderDue"
SCHEDULED = reminder_pb2.REMINDER_STATE_SCHEDULED
FIRED = reminder_pb2.REMINDER_STATE_FIRED
CANCELLED = reminder_pb2.REMINDER_STATE_CANCELLED


def before(seconds: float) -> task_pb2.ReminderRule:
    return task_pb2.ReminderRule(before_due=duration_pb2.Duration(seconds=int(seconds), nanos=int(seconds % 1 * 1e9)))


async def create(flow: Flow, **fields: object) -> task_pb2.Task:
    fields.setdefault("title", "Pay rent")
    request = ts.CreateTaskRequest(task=task_pb2.Task(**fields))  # type: ignore[arg-type]
    return (await flow.tasks.CreateTask(request, metadata=flow.alice)).task


async def reminders_of(flow: Flow, task_id: str) -> list[reminder_pb2.Reminder]:
    response = await flow.reminders.ListReminders(
        reminder_pb2.ListRemindersRequest(task_id=task_id), metadata=flow.alice
    )
    return list(response.reminders)


async def due_events_of(flow: Flow, task_id: str) -> list[object]:
    """The ReminderDue events of a task, once at least one has reached the log."""

    async def found() -> list[object]:
        return [e for e in await flow.events(DUE) if e.subject == task_id]

    return list(await eventually(found))


async def in_state(flow: Flow, task_id: str, state: int, count: int = 1) -> list[reminder_pb2.Reminder]:
    async def check() -> list[reminder_pb2.Reminder]:
        found = [r for r in await reminders_of(flow, task_id) if r.state == state]
        return found if len(found) >= count else []

    return list(await eventually(check))


async def test_a_reminder_fires_once_at_its_time_and_not_early(flow: Flow) -> None:
    # Due 5 s ahead (to the second), reminded 2 s before: 2 to 3 s from now.
    task = await create(flow, due=in_utc(timedelta(seconds=5)), reminders=[before(2)])
    [planned] = await in_state(flow, task.task_id, SCHEDULED)
    assert planned.fire_time.ToDatetime(tzinfo=UTC) == task.due.instant.ToDatetime(tzinfo=UTC) - timedelta(seconds=2)
    [fired] = await in_state(flow, task.task_id, FIRED)
    assert fired.fired_time.ToDatetime(tzinfo=UTC) >= fired.fire_time.ToDatetime(tzinfo=UTC)
    assert not fired.late
    await asyncio.sleep(0.5)
    due_events = [e for e in await flow.events(DUE) if e.subject == task.task_id]
    assert len(due_events) == 1
    message = due_events[0].message
    assert isinstance(message, reminder_events.ReminderDue)
    assert message.reminder.reminder_id == fired.reminder_id and message.reminder.task_title == "Pay rent"


async def test_failure_mode_2_duplicate_job_deliveries_publish_once(flow: Flow) -> None:
    task = await create(flow, due=in_utc(timedelta(hours=2)), reminders=[before(3600)])
    [planned] = await in_state(flow, task.task_id, SCHEDULED)
    fire = await flow.job_handler("reminder_svc", "reminder/")
    name = reminder_domain.job_name(task.task_id, planned.rule_id)
    # Pretend the scheduler delivers it now, three times at once and once more later.
    async with flow.host.databases["todo_reminder"].engine.begin() as conn:
        await conn.execute(
            reminders.update().where(reminders.c.reminder_id == planned.reminder_id).values(fire_time=datetime.now(UTC))
        )
    await asyncio.gather(*(fire(name, planned.reminder_id.encode()) for _ in range(3)))
    await fire(name, planned.reminder_id.encode())
    await in_state(flow, task.task_id, FIRED)
    await asyncio.sleep(0.3)
    await due_events_of(flow, task.task_id)
    await asyncio.sleep(0.3)  # room for a wrong second one
    assert len([e for e in await flow.events(DUE) if e.subject == task.task_id]) == 1


async def test_failure_mode_9_a_due_change_replans_relative_reminders(flow: Flow) -> None:
    task = await create(flow, due=in_utc(timedelta(hours=2)), reminders=[before(1800)])
    [first] = await in_state(flow, task.task_id, SCHEDULED)
    later = in_utc(timedelta(hours=26))
    update = ts.UpdateTaskRequest(
        task=task_pb2.Task(task_id=task.task_id, due=later), update_mask=field_mask_pb2.FieldMask(paths=["due"])
    )
    moved = (await flow.tasks.UpdateTask(update, metadata=flow.alice)).task

    async def replanned() -> list[reminder_pb2.Reminder]:
        return [
            r
            for r in await reminders_of(flow, task.task_id)
            if r.state == SCHEDULED and r.reminder_id != first.reminder_id
        ]

    [second] = await eventually(replanned)
    expected = moved.due.instant.ToDatetime(tzinfo=UTC) - timedelta(minutes=30)
    assert second.fire_time.ToDatetime(tzinfo=UTC) == expected
    [old] = [r for r in await reminders_of(flow, task.task_id) if r.reminder_id == first.reminder_id]
    assert old.state == CANCELLED
    # The job of the old plan, delivered late, is stale and produces nothing.
    fire = await flow.job_handler("reminder_svc", "reminder/")
    await fire(reminder_domain.job_name(task.task_id, first.rule_id), first.reminder_id.encode())
    assert [e for e in await flow.events(DUE) if e.subject == task.task_id] == []


async def test_a_reminder_that_fired_does_not_fire_again_when_the_due_time_moves(flow: Flow) -> None:
    # An absolute reminder due now, and one 30 minutes before a due time 2 hours ahead.
    absolute = task_pb2.ReminderRule(at=in_utc(timedelta(0)))
    task = await create(flow, due=in_utc(timedelta(hours=2)), reminders=[absolute, before(1800)])
    [fired] = await in_state(flow, task.task_id, FIRED)
    relative_rule = next(r.rule_id for r in task.reminders if r.rule_id != fired.rule_id)
    update = ts.UpdateTaskRequest(
        task=task_pb2.Task(task_id=task.task_id, due=in_utc(timedelta(hours=3))),
        update_mask=field_mask_pb2.FieldMask(paths=["due"]),
    )
    await flow.tasks.UpdateTask(update, metadata=flow.alice)

    async def replanned() -> list[reminder_pb2.Reminder]:
        return [r for r in await reminders_of(flow, task.task_id) if r.state == SCHEDULED and r.plan_version > 1]

    # The relative reminder follows the due time; the absolute one's time did not change and it is not planned again.
    assert [r.rule_id for r in await eventually(replanned)] == [relative_rule]
    await asyncio.sleep(0.5)  # room for a wrong second firing
    assert [e.message.reminder.reminder_id for e in await flow.events(DUE) if e.subject == task.task_id] == [  # type: ignore[attr-defined]
        fired.reminder_id
    ]


async def test_a_title_change_keeps_the_plan(flow: Flow) -> None:
    task = await create(flow, due=in_utc(timedelta(hours=2)), reminders=[before(60)])
    [first] = await in_state(flow, task.task_id, SCHEDULED)
    update = ts.UpdateTaskRequest(
        task=task_pb2.Task(task_id=task.task_id, title="Pay the rent"),
        update_mask=field_mask_pb2.FieldMask(paths=["title"]),
    )
    await flow.tasks.UpdateTask(update, metadata=flow.alice)

    async def retitled() -> bool:
        [now] = await reminders_of(flow, task.task_id)
        return now.reminder_id == first.reminder_id and now.task_title == "Pay the rent" and now.state == SCHEDULED

    await eventually(retitled)


@pytest.mark.parametrize("action", ["complete", "delete"])
async def test_completing_or_deleting_cancels_reminders(flow: Flow, action: str) -> None:
    task = await create(flow, due=in_utc(timedelta(hours=2)), reminders=[before(60), before(3600)])
    await in_state(flow, task.task_id, SCHEDULED, 2)
    if action == "complete":
        await flow.tasks.CompleteTask(ts.CompleteTaskRequest(task_id=task.task_id), metadata=flow.alice)
    else:
        await flow.tasks.DeleteTask(ts.DeleteTaskRequest(task_id=task.task_id), metadata=flow.alice)
    cancelled = await in_state(flow, task.task_id, CANCELLED, 2)
    assert len(cancelled) == 2

    async def cancellations() -> list[object]:
        found = [
            e.message for e in await flow.events("todo.reminder.v1.ReminderCancelled") if e.subject == task.task_id
        ]
        return found if len(found) >= 2 else []

    # The state is committed with the events in the outbox; they reach the log a moment later.
    events = await eventually(cancellations)
    reason = {
        "complete": reminder_events.CANCEL_REASON_TASK_COMPLETED,
        "delete": reminder_events.CANCEL_REASON_TASK_DELETED,
    }
    assert [m.reason for m in events] == [reason[action]] * 2  # type: ignore[attr-defined]


async def test_failure_mode_8_every_occurrence_of_a_recurring_task_gets_its_reminders(flow: Flow) -> None:
    task = await create(
        flow,
        due=in_utc(timedelta(hours=1)),
        reminders=[before(600)],
        recurrence=task_pb2.Recurrence(rrule="FREQ=DAILY"),
    )
    await flow.tasks.CompleteTask(ts.CompleteTaskRequest(task_id=task.task_id), metadata=flow.alice)

    async def next_occurrence() -> list[task_pb2.Task]:
        listed = await flow.tasks.ListTasks(
            ts.ListTasksRequest(series_id=task.recurrence.series_id, statuses=[task_pb2.TASK_STATUS_OPEN]),
            metadata=flow.alice,
        )
        return list(listed.tasks)

    [second] = await eventually(next_occurrence)
    [planned] = await in_state(flow, second.task_id, SCHEDULED)
    expected = second.due.instant.ToDatetime(tzinfo=UTC) - timedelta(minutes=10)
    assert planned.fire_time.ToDatetime(tzinfo=UTC) == expected
    assert second.due.instant.ToDatetime(tzinfo=UTC) - task.due.instant.ToDatetime(tzinfo=UTC) == timedelta(days=1)


async def test_snooze(flow: Flow) -> None:
    task = await create(flow, due=in_utc(timedelta(seconds=1)), reminders=[before(0)])
    [fired] = await in_state(flow, task.task_id, FIRED)
    snoozed = (
        await flow.reminders.SnoozeReminder(
            reminder_pb2.SnoozeReminderRequest(
                reminder_id=fired.reminder_id, snooze_for=duration_pb2.Duration(seconds=600)
            ),
            metadata=flow.alice,
        )
    ).reminder
    assert snoozed.state == SCHEDULED and snoozed.snoozed_from_reminder_id == fired.reminder_id
    delay = snoozed.fire_time.ToDatetime(tzinfo=UTC) - datetime.now(UTC)
    assert timedelta(minutes=9) < delay <= timedelta(minutes=10)
    ten_minutes = duration_pb2.Duration(seconds=600)
    for request, code in [
        (reminder_pb2.SnoozeReminderRequest(reminder_id=snoozed.reminder_id, snooze_for=ten_minutes),
         grpc.StatusCode.FAILED_PRECONDITION),  # not fired yet
        (reminder_pb2.SnoozeReminderRequest(reminder_id=fired.reminder_id, snooze_for=duration_pb2.Duration(seconds=5)),
         grpc.StatusCode.INVALID_ARGUMENT),
        (reminder_pb2.SnoozeReminderRequest(reminder_id=fired.reminder_id), grpc.StatusCode.INVALID_ARGUMENT),
        (reminder_pb2.SnoozeReminderRequest(reminder_id="nope", snooze_for=duration_pb2.Duration(seconds=600)),
         grpc.StatusCode.NOT_FOUND),
    ]:  # fmt: skip
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await flow.reminders.SnoozeReminder(request, metadata=flow.alice)
        assert raised.value.code() == code
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await flow.reminders.SnoozeReminder(
            reminder_pb2.SnoozeReminderRequest(
                reminder_id=fired.reminder_id, snooze_for=duration_pb2.Duration(seconds=600)
            ),
            metadata=flow.bob,
        )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    bobs = await flow.reminders.ListReminders(reminder_pb2.ListRemindersRequest(), metadata=flow.bob)
    assert list(bobs.reminders) == []


async def test_list_reminders_rejects_bad_input(flow: Flow) -> None:
    for request in [
        reminder_pb2.ListRemindersRequest(page_size=1_000_000),
        reminder_pb2.ListRemindersRequest(page_token="garbage"),
        reminder_pb2.ListRemindersRequest(task_id="not-a-task"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await flow.reminders.ListReminders(request, metadata=flow.alice)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_failure_mode_1_a_reminder_due_while_the_service_was_down_is_delivered_late(
    kit_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reminder_domain, "LATE_AFTER", timedelta(milliseconds=500))
    async with running_flow(kit_settings) as flow:
        # Due 4 s ahead (to the second), reminded 1 s before: 2 to 3 s from now, after the stop below.
        task = await create(flow, due=in_utc(timedelta(seconds=4)), reminders=[before(1)])
        await in_state(flow, task.task_id, SCHEDULED)
    await asyncio.sleep(4.5)  # everything is down when the reminder comes due
    async with running_flow(kit_settings) as flow:
        [fired] = await in_state(flow, task.task_id, FIRED)
        assert fired.late
        assert fired.lateness.ToTimedelta() >= timedelta(seconds=1)
        due_events = await due_events_of(flow, task.task_id)
        assert len(due_events) == 1 and due_events[0].message.reminder.late  # type: ignore[attr-defined]


async def test_a_reminder_firing_while_its_task_is_replanned_waits_for_the_plan(
    flow: Flow, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The planner holds the task's plan and is about to lock its reminders while their jobs fire:
    # a fire that locked its reminder first and then waited for the plan would deadlock with it.
    caplog.set_level(logging.WARNING)
    task = await create(flow, due=in_utc(timedelta(hours=2)), reminders=[before(3600), before(1800), before(600)])
    planned = await in_state(flow, task.task_id, SCHEDULED, 3)
    async with flow.host.databases["todo_reminder"].engine.begin() as conn:
        await conn.execute(
            reminders.update().where(reminders.c.task_id == task.task_id).values(fire_time=datetime.now(UTC))
        )
    planning = asyncio.Event()
    scheduled_of = ReminderRepository.scheduled_of

    async def slow_scheduled_of(self: ReminderRepository, task_id: str, *, rules_only: bool) -> Any:
        planning.set()  # the plan is locked; its reminders are next
        await asyncio.sleep(0.5)
        return await scheduled_of(self, task_id, rules_only=rules_only)

    monkeypatch.setattr(ReminderRepository, "scheduled_of", slow_scheduled_of)
    update = ts.UpdateTaskRequest(
        task=task_pb2.Task(task_id=task.task_id, due=in_utc(timedelta(hours=3))),
        update_mask=field_mask_pb2.FieldMask(paths=["due"]),
    )
    await flow.tasks.UpdateTask(update, metadata=flow.alice)
    await eventually(planning.is_set)
    fire = await flow.job_handler("reminder_svc", "reminder/")
    outcomes = await asyncio.gather(
        *(fire(reminder_domain.job_name(task.task_id, r.rule_id), r.reminder_id.encode()) for r in planned),
        return_exceptions=True,
    )
    assert [repr(o) for o in outcomes if o is not None] == []
    # The re-plan went first: the old plan's reminders are cancelled, not fired, and the new plan's wait.
    await in_state(flow, task.task_id, SCHEDULED, 3)
    states = {r.reminder_id: r.state for r in await reminders_of(flow, task.task_id)}
    assert [states[r.reminder_id] for r in planned] == [CANCELLED] * 3
    failures = [r for r in caplog.records if r.getMessage() == "event handler failed"]
    assert [getattr(r, "error", "") for r in failures] == []
    assert [e for e in await flow.events(DUE) if e.subject == task.task_id] == []


async def test_a_reminder_due_before_its_plan_is_committed_still_fires(
    flow: Flow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its job is scheduled inside the planning transaction and, already due, fires at once: the
    # fire must wait for the task's first plan to commit instead of finding nothing and dropping it.
    save_plan = ReminderRepository.save_plan

    async def slow_save_plan(self: ReminderRepository, plan: Any, now: datetime) -> None:
        await asyncio.sleep(0.5)  # the job fires meanwhile
        await save_plan(self, plan, now)

    monkeypatch.setattr(ReminderRepository, "save_plan", slow_save_plan)
    task = await create(flow, due=in_utc(timedelta(minutes=1)), reminders=[before(3600)])
    [fired] = await in_state(flow, task.task_id, FIRED)
    assert fired.late
    assert len(await due_events_of(flow, task.task_id)) == 1


async def test_editing_tasks_while_their_reminders_fire_never_deadlocks(
    flow: Flow, caplog: pytest.LogCaptureFixture
) -> None:
    # Many tasks whose reminders keep coming due while the tasks keep being re-planned: the planner
    # (task plan, then its reminders) and the fire handler run on the same rows at the same moments.
    caplog.set_level(logging.WARNING)

    def rules(edit: int) -> list[task_pb2.ReminderRule]:
        # Stable rule ids (jobs are overwritten in place); a changed offset re-plans every edit.
        return [
            task_pb2.ReminderRule(rule_id=f"r{i}", before_due=before(i / 1000 + edit / 100).before_due)
            for i in range(5)
        ]

    created = await asyncio.gather(
        *(create(flow, due=in_utc(timedelta(seconds=1)), reminders=rules(0)) for _ in range(20))
    )

    async def keep_editing(task: task_pb2.Task) -> task_pb2.Task:
        for edit in range(1, 9):
            update = ts.UpdateTaskRequest(
                task=task_pb2.Task(task_id=task.task_id, due=in_utc(timedelta(seconds=1)), reminders=rules(edit)),
                update_mask=field_mask_pb2.FieldMask(paths=["due", "reminders"]),
            )
            task = (await flow.tasks.UpdateTask(update, metadata=flow.alice)).task
            await asyncio.sleep(0.4)
        return task

    tasks = await asyncio.gather(*(keep_editing(t) for t in created))
    versions = {t.task_id: t.version for t in tasks}
    db = flow.host.databases["todo_reminder"]

    async def settled() -> bool:
        # Every task's last version planned, and no job left to fire.
        async with db.engine.connect() as conn:
            plans = dict((await conn.execute(sa.select(task_plans.c.task_id, task_plans.c.task_version))).all())
        assert flow.host.runtime is not None
        waiting = await flow.host.runtime.pending_jobs("reminder_svc")
        return plans == versions and waiting == []

    await eventually(settled, timeout=60)
    failures = [r for r in caplog.records if r.getMessage().startswith(("event handler failed", "job handler failed"))]
    assert [getattr(r, "error", "") for r in failures] == []
    async with db.engine.connect() as conn:
        query = sa.select(reminders, task_plans.c.plan_version.label("current")).join(
            task_plans, task_plans.c.task_id == reminders.c.task_id
        )
        rows = (await conn.execute(query)).all()
    assert [r.reminder_id for r in rows if r.state == SCHEDULED] == [], "reminders left that will never fire"

    async def all_due_events() -> list[envelope.DecodedEvent]:
        found = await flow.events(DUE)
        return found if len(found) >= sum(1 for r in rows if r.state == FIRED) else []

    await eventually(all_due_events)
    await asyncio.sleep(0.3)  # room for a wrong extra one
    published = Counter(e.message.reminder.reminder_id for e in await flow.events(DUE))  # type: ignore[attr-defined]
    assert max(published.values()) == 1, "a reminder was published twice"
    assert set(published) == {r.reminder_id for r in rows if r.state == FIRED}
    for task in tasks:
        mine = [r for r in rows if r.task_id == task.task_id]
        current = [r for r in mine if r.plan_version == r.current]
        # The last plan's reminders all fired (they were due within two seconds), each rule once.
        assert sorted((r.rule_id, r.state) for r in current) == [(f"r{i}", FIRED) for i in range(5)]
        assert {r.state for r in mine if r.plan_version != r.current} <= {FIRED, CANCELLED}


async def test_snoozes_of_one_reminder_are_capped(flow: Flow) -> None:
    task = await create(flow, due=in_utc(timedelta(seconds=1)), reminders=[before(0)])
    [fired] = await in_state(flow, task.task_id, FIRED)
    request = reminder_pb2.SnoozeReminderRequest(
        reminder_id=fired.reminder_id, snooze_for=duration_pb2.Duration(seconds=600)
    )
    for _ in range(reminder_domain.SNOOZES_MAX):
        await flow.reminders.SnoozeReminder(request, metadata=flow.alice)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await flow.reminders.SnoozeReminder(request, metadata=flow.alice)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"snoozed {reminder_domain.SNOOZES_MAX} times" in (raised.value.details() or "")
    listed = await flow.reminders.ListReminders(
        reminder_pb2.ListRemindersRequest(task_id=task.task_id, page_size=1000), metadata=flow.alice
    )
    assert sum(r.snoozed_from_reminder_id == fired.reminder_id for r in listed.reminders) == reminder_domain.SNOOZES_MAX


async def test_a_fired_reminder_writes_one_info_line(flow: Flow, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="reminder_svc")
    task = await create(flow, title="Call the landlord", due=in_utc(timedelta(seconds=1)), reminders=[before(0)])
    [fired] = await in_state(flow, task.task_id, FIRED)
    lines = [r for r in caplog.records if r.name.startswith("reminder_svc") and r.getMessage() == "reminder fired"]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    entry = json.loads(JsonFormatter().format(lines[0]))
    assert entry["reminder_id"] == fired.reminder_id
    assert (entry["task_id"], entry["user_id"], entry["late"]) == (task.task_id, "alice", False)
    assert entry["lateness_ms"] == fired.lateness.ToMilliseconds()
    assert "landlord" not in json.dumps(entry)  # the title is the user's content, not the operator's


async def prune_as_the_host_would(flow: Flow, after: timedelta) -> dict[str, int]:
    """Runs the reminder service's pruners as the host would run them `after` from now."""
    cutoff = datetime.now(UTC) + after - timedelta(days=flow.host.settings.retention_days)
    return {table: await prune(cutoff) for table, prune in flow.host.wirings["reminder_svc"].pruners.items()}


async def plan_of(flow: Flow, task_id: str) -> Any:
    async with flow.host.databases["todo_reminder"].engine.connect() as conn:
        return (await conn.execute(sa.select(task_plans).where(task_plans.c.task_id == task_id))).first()


async def test_an_old_event_of_a_deleted_task_replayed_after_pruning_plans_nothing(flow: Flow) -> None:
    task = await create(flow, due=in_utc(timedelta(hours=2)), reminders=[before(60), before(3600)])
    await in_state(flow, task.task_id, SCHEDULED, 2)
    await flow.tasks.DeleteTask(ts.DeleteTaskRequest(task_id=task.task_id), metadata=flow.alice)
    await in_state(flow, task.task_id, CANCELLED, 2)
    retention = timedelta(days=flow.host.settings.retention_days)
    # One retention period on, the cancelled reminders go; the deleted task's plan stays behind them.
    assert await prune_as_the_host_would(flow, retention + timedelta(seconds=1)) == {"reminders": 2, "task_plans": 0}
    assert await reminders_of(flow, task.task_id) == []
    assert (await plan_of(flow, task.task_id)).status == "deleted"
    [created] = [e for e in await flow.events("todo.task.v1.TaskCreated") if e.subject == task.task_id]
    scheduled_before = len(await flow.events("todo.reminder.v1.ReminderScheduled"))
    planner = flow.host.wirings["reminder_svc"].subscriptions[0].handler
    await planner(created)  # redelivered: the inbox knows it
    await planner(dataclasses.replace(created, id=str(uuid.uuid4())))  # replayed under a new id: the plan knows it
    assert await reminders_of(flow, task.task_id) == []
    assert flow.host.runtime is not None
    names = await flow.host.runtime.pending_jobs("reminder_svc")
    assert [n for n in names if task.task_id in n] == []
    await asyncio.sleep(0.3)
    assert len(await flow.events("todo.reminder.v1.ReminderScheduled")) == scheduled_before
    # Twice the retention on (when the inbox forgets the task's event ids too), the plan goes.
    assert await prune_as_the_host_would(flow, 2 * retention + timedelta(seconds=1)) == {
        "reminders": 0,
        "task_plans": 1,
    }
    assert await plan_of(flow, task.task_id) is None


async def test_a_task_reopened_after_its_plan_was_pruned_gets_new_reminders_only_ahead(flow: Flow) -> None:
    # Due in 2 hours: reminded 3 hours before (already past, fires at once) and 1 hour before.
    task = await create(flow, due=in_utc(timedelta(hours=2)), reminders=[before(3 * 3600), before(3600)])
    ahead_rule = task.reminders[1].rule_id
    await in_state(flow, task.task_id, FIRED)
    await in_state(flow, task.task_id, SCHEDULED)
    await flow.tasks.CompleteTask(ts.CompleteTaskRequest(task_id=task.task_id), metadata=flow.alice)
    await in_state(flow, task.task_id, CANCELLED)
    before_pruning = {r.reminder_id for r in await reminders_of(flow, task.task_id)}
    retention = timedelta(days=flow.host.settings.retention_days)
    pruned = await prune_as_the_host_would(flow, 2 * retention + timedelta(seconds=1))
    assert pruned == {"reminders": 2, "task_plans": 1}
    reopened = await flow.tasks.ReopenTask(ts.ReopenTaskRequest(task_id=task.task_id), metadata=flow.alice)
    [planned] = await in_state(flow, task.task_id, SCHEDULED)
    await asyncio.sleep(0.3)  # room for a wrong late reminder of the rule whose time passed
    assert [r.rule_id for r in await reminders_of(flow, task.task_id)] == [ahead_rule]
    assert planned.reminder_id not in before_pruning  # a new id: (task, rule, plan version) is published once
    assert planned.plan_version == reopened.task.version
