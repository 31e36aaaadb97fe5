"""What to remind of, and when, free of I/O."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta

from todo_contracts.task.v1 import task_pb2
from todo_kit import zoned

LATE_AFTER = timedelta(seconds=float(os.environ.get("TODO_REMINDER_LATE_AFTER_SECONDS", "10")))
"""A reminder that fires later than this after its time is flagged late (a service was down, say).

TODO_REMINDER_LATE_AFTER_SECONDS changes it (10 s by default)."""

SNOOZE_MIN = timedelta(minutes=1)
SNOOZE_MAX = timedelta(days=365)


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
