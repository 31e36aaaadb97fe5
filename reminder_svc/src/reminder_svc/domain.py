"""What to remind of, and when, free of I/O: the planning and firing decisions of the reminder service.

The handlers load a task's plan and reminders, ask this module what to do, store
the outcome and publish it.
"""

from __future__ import annotations

import enum
import json
import os
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from google.protobuf.message import Message

from todo_contracts.reminder.v1 import events_pb2 as reminder_events
from todo_contracts.reminder.v1 import reminder_pb2
from todo_contracts.task.v1 import events_pb2 as task_events
from todo_contracts.task.v1 import task_pb2
from todo_kit import zoned

LATE_AFTER = timedelta(seconds=float(os.environ.get("TODO_REMINDER_LATE_AFTER_SECONDS", "10")))
"""A reminder that fires later than this after its time is flagged late (a service was down, say).

TODO_REMINDER_LATE_AFTER_SECONDS changes it (10 s by default)."""

SNOOZE_MIN = timedelta(minutes=1)
SNOOZE_MAX = timedelta(days=365)
SNOOZES_MAX = 100
"""How often one reminder may be snoozed: each snooze is a reminder of its own, so this bounds what one can grow to."""

OPEN = "open"
COMPLETED = "completed"
DELETED = "deleted"
"""A task's status as its plan records it."""


@dataclass(frozen=True)
class TaskPlan:
    """What the service knows of a task: enough to plan its reminders and to recognise stale events."""

    task_id: str
    user_id: str
    task_version: int
    status: str
    title: str
    plan_key: str
    plan_version: int


@dataclass(frozen=True)
class PlannedReminder:
    """One reminder a task's rules ask for."""

    rule_id: str
    fire_time: datetime


def planned_reminders(task: task_pb2.Task) -> list[PlannedReminder]:
    """The reminders an open task's rules ask for; rules that cannot be placed are left out.

    A rule "before due" needs a due time; it follows the due time, so every
    occurrence of a recurring task gets its own reminders.
    """
    due = zoned.from_proto(task.due) if task.HasField("due") else None
    planned = []
    for rule in task.reminders:
        trigger = rule.WhichOneof("trigger")
        if trigger == "at":
            try:
                planned.append(PlannedReminder(rule.rule_id, zoned.from_proto(rule.at).instant))
            except ValueError:
                continue
        elif trigger == "before_due" and due is not None:
            offset = timedelta(seconds=rule.before_due.seconds, microseconds=rule.before_due.nanos // 1000)
            planned.append(PlannedReminder(rule.rule_id, due.instant - offset))
    return planned


def plan_key(task: task_pb2.Task) -> str:
    """What reminders depend on (due time, zone and rules): a change of it re-plans them."""
    due = [task.due.local_time, task.due.time_zone] if task.HasField("due") else None
    rules = [r.SerializeToString(deterministic=True).hex() for r in task.reminders]
    return json.dumps({"due": due, "rules": rules}, separators=(",", ":"))


def reminder_id(task_id: str, rule_id: str, plan_version: int) -> str:
    """The id of the reminder of a rule for one plan of the task: stable, so a repeated fire is recognised."""
    return f"{task_id}/{rule_id}/{plan_version}"


def job_name(task_id: str, rule_id: str) -> str:
    """The job of a rule's reminder; re-planning overwrites it."""
    return f"reminder/{task_id}/{rule_id}"


def snooze_job_name(reminder_id: str) -> str:
    """The job of a snoozed reminder."""
    return f"snooze/{reminder_id}"


def lateness(fire_time: datetime, fired: datetime) -> timedelta:
    """How late a reminder fired (never negative)."""
    return max(fired - fire_time, timedelta(0))


def task_id_of(reminder_id: str) -> str | None:
    """The task a reminder (or a snooze of one) belongs to, read from its id; None if it is not one of ours.

    Every reminder id starts with its task's id (see reminder_id), so a fired job
    can lock the task's plan before it even reads the reminder.
    """
    head = reminder_id.split("/", 1)[0]
    try:
        uuid.UUID(head)
    except ValueError:
        return None
    return head


_STATUS_OF_EVENT: dict[type[Message], str] = {
    task_events.TaskCreated: OPEN,
    task_events.TaskUpdated: OPEN,
    task_events.TaskReopened: OPEN,
    task_events.TaskCompleted: COMPLETED,
    task_events.TaskDeleted: DELETED,
}


def planning_status(event: Message) -> str | None:
    """The task status a task event tells the planner, or None when the event asks nothing of it.

    None for events that are not about a task's state, and for a new task without
    rules: it has nothing to plan and no plan yet to keep.
    """
    status = _STATUS_OF_EVENT.get(type(event))
    if status is None:
        return None
    task: task_pb2.Task = event.task  # type: ignore[attr-defined]
    if isinstance(event, task_events.TaskCreated) and not task.reminders:
        return None
    if status == OPEN and task.status == task_pb2.TASK_STATUS_COMPLETED:
        return COMPLETED  # an update of a completed task
    return status


_CANCEL_REASONS = {
    COMPLETED: reminder_events.CANCEL_REASON_TASK_COMPLETED,
    DELETED: reminder_events.CANCEL_REASON_TASK_DELETED,
    OPEN: reminder_events.CANCEL_REASON_REPLANNED,
}


@dataclass(frozen=True)
class PlanChange:
    """What one task event does to the task's reminders."""

    plan: TaskPlan
    """The plan to store."""
    cancel: Literal["rules", "all"] | None
    """Which scheduled reminders to cancel: the rule-made ones (a re-plan), all of them, snoozes too (the task
    ended), or none."""
    cancel_reason: reminder_events.CancelReason.ValueType
    schedule: list[PlannedReminder] = field(default_factory=list)
    """The reminders of the new plan version (plan.plan_version)."""
    retitle: bool = False
    """Only the title changed: reminders still to fire take the new one."""


def change_plan(
    plan: TaskPlan | None,
    task: task_pb2.Task,
    user_id: str,
    status: str,
    now: datetime,
    *,
    reopening: bool,
    fired: Collection[tuple[str, datetime]] = (),
) -> PlanChange | None:
    """What a task event (the task as it carries it, its planning_status) changes; None if the event is stale.

    An event is stale when the plan has seen the task's version already (a
    repeat, or an older event arriving late), or when the task was deleted.
    A change of what reminders depend on (plan_key), or the task opening again,
    re-plans: the rule-made reminders are cancelled and the new plan version's
    scheduled. Reminders whose time passed while the task was completed are
    left out. Completing or deleting cancels every reminder, snoozes too.

    reopening: the event is a TaskReopened. It stands in for a plan that said
    "completed" when that plan was pruned meanwhile.
    fired: (rule id, fire time) of the task's rule-made reminders that fired
    already. A re-plan leaves them out: a rule whose time did not change (an
    absolute one when the due time moves, or a due time moved back) must not
    remind of the same moment twice.
    """
    if plan is not None and (
        plan.status == DELETED
        or task.version < plan.task_version
        or (task.version == plan.task_version and status != DELETED)
    ):
        return None
    key = plan_key(task)
    # A first plan starts below the task's version rather than at 0: plan versions
    # only grow with task versions, so a task whose old plan was pruned never gets
    # a reminder id it had before.
    version = plan.plan_version if plan is not None else task.version - 1
    replan = status == OPEN and (plan is None or plan.plan_key != key or plan.status != OPEN)
    cancel: Literal["rules", "all"] | None = None
    if plan is not None and status != OPEN:
        cancel = "all"
    elif plan is not None and replan:
        cancel = "rules"  # snoozes are the user's own "remind me later": only ending the task cancels them
    schedule: list[PlannedReminder] = []
    if replan:
        version += 1
        reopened = plan.status == COMPLETED if plan is not None else reopening
        # Passed while the task was done: not worth a late reminder.
        schedule = [
            p
            for p in planned_reminders(task)
            if not (reopened and p.fire_time <= now) and (p.rule_id, p.fire_time) not in fired
        ]
    retitle = status == OPEN and not replan and plan is not None and plan.title != task.title
    return PlanChange(
        plan=TaskPlan(task.task_id, user_id, task.version, status, task.title, key, version),
        cancel=cancel,
        cancel_reason=_CANCEL_REASONS[status],
        schedule=schedule,
        retitle=retitle,
    )


def jobs_to_delete(cancelled_jobs: list[str], scheduled_jobs: list[str]) -> list[str]:
    """The jobs of cancelled reminders to delete: all but those a reminder of the new plan took over by name."""
    taken_over = set(scheduled_jobs)
    return [name for name in dict.fromkeys(cancelled_jobs) if name not in taken_over]


class FireOutcome(enum.Enum):
    """What a fired job does to its reminder."""

    SKIP = "skip"
    """Nothing: the reminder fired or was cancelled already (a repeated or stale delivery), or is unknown."""
    CANCEL = "cancel"
    """Cancel it: its task was closed or re-planned since (a job that outlived its plan)."""
    WAIT = "wait"
    """Fire it at its time: the job came early."""
    FIRE = "fire"
    """Fire it now."""


@dataclass(frozen=True)
class FireDecision:
    """A fired job's outcome and, when it fires, how late."""

    outcome: FireOutcome
    late_by: timedelta = timedelta(0)
    late: bool = False


def decide_fire(reminder: reminder_pb2.Reminder | None, plan: TaskPlan | None, now: datetime) -> FireDecision:
    """What to do with a reminder whose job fired at now, given its task's plan.

    Only a scheduled reminder of the current plan of an open task fires (a snooze
    fires whatever the plan version, while its task is open), never before its
    time; one more than LATE_AFTER after it is flagged late.
    """
    if reminder is None or reminder.state != reminder_pb2.REMINDER_STATE_SCHEDULED:
        return FireDecision(FireOutcome.SKIP)
    if plan is None or plan.status != OPEN:
        return FireDecision(FireOutcome.CANCEL)
    if not reminder.snoozed_from_reminder_id and reminder.plan_version != plan.plan_version:
        return FireDecision(FireOutcome.CANCEL)
    fire_time = reminder.fire_time.ToDatetime(tzinfo=UTC)
    if now < fire_time:
        return FireDecision(FireOutcome.WAIT)
    late_by = lateness(fire_time, now)
    return FireDecision(FireOutcome.FIRE, late_by, late_by > LATE_AFTER)


def closed_plans_cutoff(cutoff: datetime, retention: timedelta) -> datetime:
    """Before when a closed task's plan must have last changed to be pruned, given the reminders' cut-off.

    A plan is what makes an old event of its task stale, so a closed one outlives
    its reminders by one more retention period: as long as the inbox remembers the
    ids of the events processed until the task closed (twice the retention), an
    old event of the task, redelivered or replayed under a new id, still finds the
    plan and changes nothing.
    """
    return cutoff - retention
