"""The reminder service's planning and firing decisions, without a database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import duration_pb2

from reminder_svc import domain
from reminder_svc.domain import COMPLETED, DELETED, OPEN, FireOutcome, TaskPlan
from todo_contracts.common.v1 import common_pb2
from todo_contracts.reminder.v1 import events_pb2 as reminder_events
from todo_contracts.reminder.v1 import reminder_pb2
from todo_contracts.task.v1 import events_pb2 as task_events
from todo_contracts.task.v1 import task_pb2

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TASK_ID = str(uuid.uuid4())


def task(
    version: int = 1, due: str = "2026-12-01T14:00", *, before_s: tuple[int, ...] = (3600,), **fields: object
) -> task_pb2.Task:
    rules = [
        task_pb2.ReminderRule(rule_id=f"r{i}", before_due=duration_pb2.Duration(seconds=s))
        for i, s in enumerate(before_s)
    ]
    return task_pb2.Task(
        task_id=TASK_ID,
        title="Pay rent",
        version=version,
        due=common_pb2.ZonedDateTime(local_time=due, time_zone="UTC"),
        reminders=rules,
        **fields,  # type: ignore[arg-type]
    )


def plan_of(t: task_pb2.Task, status: str = OPEN, plan_version: int = 1, **changes: object) -> TaskPlan:
    fields: dict[str, object] = {
        "task_id": t.task_id,
        "user_id": "alice",
        "task_version": t.version,
        "status": status,
        "title": t.title,
        "plan_key": domain.plan_key(t),
        "plan_version": plan_version,
    }
    fields.update(changes)
    return TaskPlan(**fields)  # type: ignore[arg-type]


def change(
    plan: TaskPlan | None,
    t: task_pb2.Task,
    status: str = OPEN,
    *,
    reopening: bool = False,
    fired: frozenset[tuple[str, datetime]] = frozenset(),
) -> domain.PlanChange:
    decided = domain.change_plan(plan, t, "alice", status, NOW, reopening=reopening, fired=fired)
    assert decided is not None
    return decided


def test_planning_status_of_each_task_event() -> None:
    open_task, done_task = task(), task(status=task_pb2.TASK_STATUS_COMPLETED)
    assert domain.planning_status(task_events.TaskCreated(task=open_task)) == OPEN
    assert domain.planning_status(task_events.TaskCreated(task=task(before_s=()))) is None  # nothing to plan
    assert domain.planning_status(task_events.TaskUpdated(task=open_task)) == OPEN
    assert domain.planning_status(task_events.TaskUpdated(task=done_task)) == COMPLETED
    assert domain.planning_status(task_events.TaskReopened(task=open_task)) == OPEN
    assert domain.planning_status(task_events.TaskCompleted(task=done_task)) == COMPLETED
    assert domain.planning_status(task_events.TaskDeleted(task=open_task)) == DELETED
    assert domain.planning_status(reminder_events.ReminderDue()) is None


@pytest.mark.parametrize(
    ("plan_status", "plan_version", "event_version", "status"),
    [
        (OPEN, 3, 2, OPEN),  # an older event arriving late
        (OPEN, 3, 3, OPEN),  # a repeat
        (OPEN, 3, 3, COMPLETED),
        (DELETED, 3, 4, OPEN),  # nothing follows a delete
        (DELETED, 3, 3, DELETED),
    ],
)
def test_a_stale_event_changes_nothing(plan_status: str, plan_version: int, event_version: int, status: str) -> None:
    plan = plan_of(task(plan_version), plan_status)
    assert domain.change_plan(plan, task(event_version), "alice", status, NOW, reopening=False) is None


def test_a_delete_of_the_version_seen_is_not_stale() -> None:
    # The task service deletes without a version bump; the delete still ends the plan.
    decided = change(plan_of(task(3)), task(3), DELETED)
    assert decided.cancel == "all" and decided.plan.status == DELETED


def test_a_new_task_plans_every_placeable_rule() -> None:
    t = task(before_s=(3600, 600))
    t.reminders.append(task_pb2.ReminderRule(rule_id="bad", at=common_pb2.ZonedDateTime(local_time="nope")))
    decided = change(None, t)
    assert decided.cancel is None  # no plan yet, so nothing to cancel
    assert decided.plan.plan_version == 1
    assert [(p.rule_id, p.fire_time) for p in decided.schedule] == [
        ("r0", datetime(2026, 12, 1, 13, 0, tzinfo=UTC)),
        ("r1", datetime(2026, 12, 1, 13, 50, tzinfo=UTC)),
    ]


def test_a_first_plan_after_a_pruned_one_starts_at_the_tasks_version() -> None:
    # Plan versions grow with task versions, so the ids of a pruned plan's reminders never come back.
    decided = change(None, task(7))
    assert decided.plan.plan_version == 7
    assert domain.reminder_id(TASK_ID, "r0", decided.plan.plan_version) == f"{TASK_ID}/r0/7"


def test_a_due_change_replans_the_rules_but_keeps_snoozes() -> None:
    decided = change(plan_of(task(1), plan_version=4), task(2, due="2026-12-02T14:00"))
    assert decided.cancel == "rules"
    assert decided.cancel_reason == reminder_events.CANCEL_REASON_REPLANNED
    assert decided.plan.plan_version == 5
    assert [p.fire_time for p in decided.schedule] == [datetime(2026, 12, 2, 13, 0, tzinfo=UTC)]
    assert not decided.retitle


def test_a_replan_does_not_remind_again_of_a_moment_already_reminded_of() -> None:
    # Due at 14:00 with a reminder an hour before and one at 11:00; both fired (it is 12:00).
    at_eleven = task_pb2.ReminderRule(
        rule_id="a", at=common_pb2.ZonedDateTime(local_time="2026-12-01T11:00", time_zone="UTC")
    )
    first = task(1)
    first.reminders.append(at_eleven)
    fired = frozenset(
        {("r0", datetime(2026, 12, 1, 13, 0, tzinfo=UTC)), ("a", datetime(2026, 12, 1, 11, 0, tzinfo=UTC))}
    )
    # The due time moves to 15:00: the relative reminder follows it, the absolute one stays fired.
    later = task(2, due="2026-12-01T15:00")
    later.reminders.append(at_eleven)
    moved = change(plan_of(first, plan_version=1), later, fired=fired)
    assert [(p.rule_id, p.fire_time) for p in moved.schedule] == [("r0", datetime(2026, 12, 1, 14, 0, tzinfo=UTC))]
    # And back to 14:00: the 13:00 reminder was given already.
    back = task(3)
    back.reminders.append(at_eleven)
    returned = change(plan_of(later, plan_version=2), back, fired=fired)
    assert (returned.schedule, returned.cancel, returned.plan.plan_version) == ([], "rules", 3)


def test_a_title_change_only_retitles() -> None:
    renamed = task(2)
    renamed.title = "Pay the rent"
    decided = change(plan_of(task(1), plan_version=4), renamed)
    assert (decided.cancel, decided.schedule, decided.retitle) == (None, [], True)
    assert decided.plan.plan_version == 4 and decided.plan.title == "Pay the rent"


@pytest.mark.parametrize(
    ("status", "reason"),
    [(COMPLETED, reminder_events.CANCEL_REASON_TASK_COMPLETED), (DELETED, reminder_events.CANCEL_REASON_TASK_DELETED)],
)
def test_ending_a_task_cancels_every_reminder(status: str, reason: int) -> None:
    decided = change(plan_of(task(1)), task(2), status)
    assert (decided.cancel, decided.cancel_reason, decided.schedule) == ("all", reason, [])
    assert decided.plan.status == status


def test_reopening_plans_again_but_not_what_passed_meanwhile() -> None:
    # Due at 12:30: the 1-hour reminder (11:30) has passed, the 10-minute one (12:20) has not.
    reopened = task(3, due="2026-12-01T12:30", before_s=(3600, 600))
    done = plan_of(task(2, due="2026-12-01T12:30", before_s=(3600, 600)), COMPLETED, plan_version=1)
    decided = change(done, reopened)
    assert [p.rule_id for p in decided.schedule] == ["r1"]
    assert decided.plan.plan_version == 2 and decided.cancel == "rules"
    # The same when the completed plan was pruned meanwhile: the event says it is a reopen.
    assert [p.rule_id for p in change(None, reopened, reopening=True).schedule] == ["r1"]
    # An update that finds no plan (a task that had no rules) schedules even what is due already.
    assert [p.rule_id for p in change(None, reopened).schedule] == ["r0", "r1"]


def test_jobs_taken_over_by_the_new_plan_are_kept() -> None:
    cancelled = ["reminder/t/a", "reminder/t/b", "snooze/t/a/1/snooze/1", "reminder/t/a"]
    assert domain.jobs_to_delete(cancelled, ["reminder/t/a"]) == ["reminder/t/b", "snooze/t/a/1/snooze/1"]
    assert domain.jobs_to_delete([], ["reminder/t/a"]) == []


def reminder(fire_time: datetime, plan_version: int = 1, **fields: object) -> reminder_pb2.Reminder:
    fields.setdefault("state", reminder_pb2.REMINDER_STATE_SCHEDULED)
    message = reminder_pb2.Reminder(
        reminder_id=domain.reminder_id(TASK_ID, "r0", plan_version),
        task_id=TASK_ID,
        plan_version=plan_version,
        **fields,  # type: ignore[arg-type]
    )
    message.fire_time.FromDatetime(fire_time)
    return message


def test_a_reminder_fires_at_its_time_late_only_past_the_threshold() -> None:
    plan = plan_of(task(1))
    on_time = domain.decide_fire(reminder(NOW), plan, NOW + timedelta(milliseconds=30))
    assert on_time == domain.FireDecision(FireOutcome.FIRE, timedelta(milliseconds=30), late=False)
    late = domain.decide_fire(reminder(NOW), plan, NOW + domain.LATE_AFTER + timedelta(seconds=1))
    assert (late.outcome, late.late, late.late_by) == (FireOutcome.FIRE, True, domain.LATE_AFTER + timedelta(seconds=1))
    assert domain.decide_fire(reminder(NOW), plan, NOW - timedelta(seconds=1)).outcome is FireOutcome.WAIT


def test_a_stale_fire_changes_nothing_or_cancels() -> None:
    plan = plan_of(task(1), plan_version=2)
    fired = reminder(NOW, 2, state=reminder_pb2.REMINDER_STATE_FIRED)
    assert domain.decide_fire(None, plan, NOW).outcome is FireOutcome.SKIP
    assert domain.decide_fire(fired, plan, NOW).outcome is FireOutcome.SKIP  # a repeated delivery
    assert domain.decide_fire(reminder(NOW, 1), plan, NOW).outcome is FireOutcome.CANCEL  # an older plan's
    assert domain.decide_fire(reminder(NOW, 2), plan_of(task(1), COMPLETED, 2), NOW).outcome is FireOutcome.CANCEL
    assert domain.decide_fire(reminder(NOW, 2), None, NOW).outcome is FireOutcome.CANCEL
    # A snooze outlives re-plans while its task is open.
    snooze = reminder(NOW, 1, snoozed_from_reminder_id=f"{TASK_ID}/r0/1")
    assert domain.decide_fire(snooze, plan, NOW).outcome is FireOutcome.FIRE


def test_the_task_of_a_reminder_is_read_from_its_id() -> None:
    assert domain.task_id_of(domain.reminder_id(TASK_ID, "r0", 3)) == TASK_ID
    assert domain.task_id_of(f"{TASK_ID}/r0/3/snooze/2") == TASK_ID
    assert domain.task_id_of("garbage") is None
    assert domain.task_id_of("") is None


def test_closed_plans_outlive_their_reminders_by_a_retention_period() -> None:
    assert domain.closed_plans_cutoff(NOW, timedelta(days=7)) == NOW - timedelta(days=7)
