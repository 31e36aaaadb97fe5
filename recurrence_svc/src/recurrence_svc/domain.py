"""Which occurrence of a recurring task comes next, free of I/O.

Everything is computed on wall-clock local times in the task's zone (see
todo_kit.rrules), so a 09:00 task stays at 09:00 across daylight-saving changes
and month ends do not drift.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from todo_contracts.task.v1 import task_pb2
from todo_kit import rrules, zoned


@dataclass(frozen=True)
class NextOccurrence:
    """The occurrence to create after a completion."""

    index: int
    due: zoned.ZonedTime


@dataclass(frozen=True)
class SeriesEnded:
    """The rule has no further occurrence (COUNT or UNTIL reached)."""

    reason: str


def is_recurring(task: task_pb2.Task) -> bool:
    """A task that belongs to a series with a rule and a start."""
    rec = task.recurrence
    return bool(task.HasField("recurrence") and rec.series_id and rec.rrule and rec.HasField("series_start"))


def next_occurrence(
    task: task_pb2.Task, completed_at: datetime, *, budget: rrules.Budget | None = None
) -> NextOccurrence | SeriesEnded:
    """The occurrence after task, which was completed at completed_at (aware).

    From the due date (the default): the series' next occurrence after this
    one, by position, and after this one's due time; with skip_missed,
    occurrences already past at completion are skipped, so a late completion
    does not pile up overdue tasks.

    From the completion date: the rule evaluated afresh from the completion
    day at the series' time of day, strictly after both the completion and
    this occurrence's due time, so completing a daily task early never
    recreates it for the same day. COUNT still counts positions in the series.

    The work is bounded (rrules counts skipped occurrences, it does not step
    through them): raises ValueError (rrules.RuleError) for a rule that is not
    valid, e.g. one stored before the checks got stricter, and
    rrules.EvaluationLimit when the budget runs out.
    """
    rec = task.recurrence
    rule = rrules.parse(rec.rrule)
    start = zoned.from_proto(rec.series_start)
    zone = start.zone
    current_index = max(rec.occurrence_index, 1)
    current_due = zoned.from_proto(task.due).instant if task.HasField("due") else start.instant
    if rule.count is not None and current_index >= rule.count:
        return SeriesEnded("count")
    if rec.repeat_from == task_pb2.REPEAT_FROM_COMPLETION:
        completed_local = completed_at.astimezone(zoned.zone_named(zone)).replace(tzinfo=None)
        anchor = datetime.combine(completed_local.date(), start.local.time())
        floor = max(completed_at, current_due)
        found = rrules.first_after(replace(rule, count=None), anchor, zone, floor, budget=budget)
        if found is None:
            return SeriesEnded("until")
        return NextOccurrence(current_index + 1, found.zoned(zone))
    floor = max(current_due, completed_at) if rec.skip_missed else current_due
    found = rrules.first_after(rule, start.local, zone, floor, min_index=current_index + 1, budget=budget)
    if found is None:
        return SeriesEnded("count" if rule.count is not None else "until")
    return NextOccurrence(found.index, found.zoned(zone))


def publish_time(task: task_pb2.Task, due: zoned.ZonedTime, now: datetime) -> datetime:
    """When the next occurrence should appear: now, or its due time less the series' lead time."""
    rec = task.recurrence
    if not rec.HasField("create_lead_time"):
        return now
    lead = timedelta(seconds=rec.create_lead_time.seconds, microseconds=rec.create_lead_time.nanos // 1000)
    if lead <= timedelta(0):
        return now
    return max(now, due.instant - lead)
