"""Task plans and reminders in the reminder service's own database."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from google.protobuf import duration_pb2
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from reminder_svc.domain import COMPLETED, DELETED, TaskPlan
from todo_contracts.reminder.v1 import reminder_pb2
from todo_kit import zoned
from todo_kit.db import Database, delete_in_batches

metadata = sa.MetaData()
task_plans = sa.Table(
    "task_plans",
    metadata,
    sa.Column("task_id", pg.UUID(as_uuid=False), primary_key=True),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("task_version", sa.BigInteger, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("plan_key", sa.Text, nullable=False),
    sa.Column("plan_version", sa.Integer, nullable=False),
    sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
)
reminders = sa.Table(
    "reminders",
    metadata,
    sa.Column("reminder_id", sa.Text, primary_key=True),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("task_id", pg.UUID(as_uuid=False), nullable=False),
    sa.Column("rule_id", sa.Text, nullable=False),
    sa.Column("task_title", sa.Text, nullable=False),
    sa.Column("due_local", sa.DateTime(timezone=False)),
    sa.Column("due_zone", sa.Text),
    sa.Column("due_at", sa.DateTime(timezone=True)),
    sa.Column("fire_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("state", sa.SmallInteger, nullable=False),
    sa.Column("plan_version", sa.Integer, nullable=False),
    sa.Column("fired_time", sa.DateTime(timezone=True)),
    sa.Column("lateness_ms", sa.BigInteger),
    sa.Column("late", sa.Boolean, nullable=False),
    sa.Column("snoozed_from", sa.Text),
    sa.Column("job_name", sa.Text, nullable=False),
    sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),  # the last change of state
)

SCHEDULED = reminder_pb2.REMINDER_STATE_SCHEDULED
FIRED = reminder_pb2.REMINDER_STATE_FIRED
CANCELLED = reminder_pb2.REMINDER_STATE_CANCELLED

PRUNE_BATCH = 1000
"""Rows deleted per pruning transaction, so that no transaction holds locks for long."""

# The class of the advisory locks that stand for a task's plan (the second key is the task's).
_PLAN_LOCK_CLASS = zlib.crc32(b"reminder_svc.task_plans") & 0x7FFFFFFF


def to_message(row: Any) -> reminder_pb2.Reminder:
    """The Reminder message of a row."""
    message = reminder_pb2.Reminder(
        reminder_id=row.reminder_id,
        user_id=row.user_id,
        task_id=row.task_id,
        rule_id=row.rule_id,
        task_title=row.task_title,
        state=row.state,
        late=row.late,
        snoozed_from_reminder_id=row.snoozed_from or "",
        plan_version=row.plan_version,
    )
    if row.due_local is not None:
        message.task_due.CopyFrom(zoned.ZonedTime(row.due_local, row.due_zone, row.due_at).to_proto())
    message.fire_time.FromDatetime(row.fire_time)
    if row.fired_time is not None:
        message.fired_time.FromDatetime(row.fired_time)
        message.lateness.CopyFrom(duration_pb2.Duration(seconds=(row.lateness_ms or 0) // 1000,
                                                        nanos=((row.lateness_ms or 0) % 1000) * 1_000_000))  # fmt: skip
    return message


class ReminderRepository:
    """Reads and writes plans and reminders inside the caller's transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def plan(self, task_id: str) -> TaskPlan | None:
        """The task's plan, locked for this transaction; call it before touching the task's reminders.

        One lock order everywhere (the task's plan, then its reminders) keeps the
        planner, fired jobs and snoozes from deadlocking. The lock is taken even when
        the plan does not exist yet: a job that fires while the task's first plan is
        being stored then waits for that plan's commit instead of missing its reminder.
        """
        await self.conn.execute(
            sa.select(sa.func.pg_advisory_xact_lock(_PLAN_LOCK_CLASS, sa.func.hashtext(sa.literal(task_id, sa.Text))))
        )
        row = (
            await self.conn.execute(sa.select(task_plans).where(task_plans.c.task_id == task_id).with_for_update())
        ).first()
        if row is None:
            return None
        return TaskPlan(
            row.task_id, row.user_id, row.task_version, row.status, row.title, row.plan_key, row.plan_version
        )

    async def save_plan(self, plan: TaskPlan, now: datetime) -> None:
        """Stores the task's plan."""
        values = {**plan.__dict__, "update_time": now}
        stmt = pg.insert(task_plans).values(**values)
        await self.conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[task_plans.c.task_id], set_={k: stmt.excluded[k] for k in values}
            )
        )

    async def scheduled_of(self, task_id: str, *, rules_only: bool) -> list[tuple[reminder_pb2.Reminder, str]]:
        """The task's reminders still to fire (only rule-made ones when rules_only), locked, with their job names."""
        query = sa.select(reminders).where(reminders.c.task_id == task_id, reminders.c.state == SCHEDULED)
        if rules_only:
            query = query.where(reminders.c.snoozed_from.is_(None))
        rows = (await self.conn.execute(query.with_for_update())).all()
        return [(to_message(r), r.job_name) for r in rows]

    async def fired_of(self, task_id: str) -> set[tuple[str, datetime]]:
        """(rule id, fire time) of the task's rule-made reminders that fired (snoozes aside)."""
        rows = await self.conn.execute(
            sa.select(reminders.c.rule_id, reminders.c.fire_time).where(
                reminders.c.task_id == task_id, reminders.c.state == FIRED, reminders.c.snoozed_from.is_(None)
            )
        )
        return {(r.rule_id, r.fire_time) for r in rows}

    async def set_state(self, reminder_id: str, state: int) -> None:
        """Changes a reminder's state."""
        await self.conn.execute(
            sa.update(reminders)
            .where(reminders.c.reminder_id == reminder_id)
            .values(state=state, update_time=sa.func.now())
        )

    async def retitle(self, task_id: str, title: str) -> None:
        """Keeps the task title of reminders still to fire current."""
        await self.conn.execute(
            sa.update(reminders)
            .where(reminders.c.task_id == task_id, reminders.c.state == SCHEDULED)
            .values(task_title=title, update_time=sa.func.now())
        )

    async def add(self, reminder: reminder_pb2.Reminder, job_name: str) -> bool:
        """Stores a new scheduled reminder; False if one with its id exists."""
        due = zoned.from_proto(reminder.task_due) if reminder.HasField("task_due") else None
        result = await self.conn.execute(
            pg.insert(reminders)
            .values(
                reminder_id=reminder.reminder_id,
                user_id=reminder.user_id,
                task_id=reminder.task_id,
                rule_id=reminder.rule_id,
                task_title=reminder.task_title,
                due_local=due.local if due else None,
                due_zone=due.zone if due else None,
                due_at=due.instant if due else None,
                fire_time=reminder.fire_time.ToDatetime(tzinfo=UTC),
                state=SCHEDULED,
                plan_version=reminder.plan_version,
                late=False,
                snoozed_from=reminder.snoozed_from_reminder_id or None,
                job_name=job_name,
                update_time=sa.func.now(),
            )
            .on_conflict_do_nothing()
            .returning(reminders.c.reminder_id)
        )
        return result.first() is not None

    async def get(
        self, reminder_id: str, *, user_id: str | None = None, lock: bool = False
    ) -> reminder_pb2.Reminder | None:
        """A reminder (only the user's, when user_id is given)."""
        query = sa.select(reminders).where(reminders.c.reminder_id == reminder_id)
        if user_id is not None:
            query = query.where(reminders.c.user_id == user_id)
        if lock:
            query = query.with_for_update()
        row = (await self.conn.execute(query)).first()
        return to_message(row) if row is not None else None

    async def mark_fired(self, reminder_id: str, fired: datetime, lateness_ms: int, late: bool) -> None:
        """Records that a reminder fired."""
        await self.conn.execute(
            sa.update(reminders)
            .where(reminders.c.reminder_id == reminder_id)
            .values(state=FIRED, fired_time=fired, lateness_ms=lateness_ms, late=late, update_time=sa.func.now())
        )

    async def count_snoozes(self, reminder_id: str) -> int:
        """How many snoozes a reminder has had."""
        return int(
            await self.conn.scalar(
                sa.select(sa.func.count()).select_from(reminders).where(reminders.c.snoozed_from == reminder_id)
            )
            or 0
        )

    async def list(
        self, user_id: str, task_id: str, states: list[int], start: datetime | None, end: datetime | None,
        limit: int, after: tuple[datetime, str] | None,
    ) -> list[reminder_pb2.Reminder]:  # fmt: skip
        """Up to limit of a user's reminders by fire time, strictly after (fire time, reminder id) if given."""
        query = sa.select(reminders).where(reminders.c.user_id == user_id)
        if task_id:
            query = query.where(reminders.c.task_id == task_id)
        if states:
            query = query.where(reminders.c.state.in_(states))
        if start is not None:
            query = query.where(reminders.c.fire_time >= start)
        if end is not None:
            query = query.where(reminders.c.fire_time < end)
        if after is not None:
            # One row comparison: a bound on the (user, fire time, reminder id) index.
            query = query.where(sa.tuple_(reminders.c.fire_time, reminders.c.reminder_id) > sa.tuple_(*after))
        query = query.order_by(reminders.c.fire_time, reminders.c.reminder_id).limit(limit)
        return [to_message(r) for r in (await self.conn.execute(query)).all()]


async def prune_reminders(db: Database, before: datetime, *, batch: int = PRUNE_BATCH) -> int:
    """Deletes fired and cancelled reminders last changed before `before`, oldest first; returns how many.

    Scheduled reminders stay whatever their age. Each transaction deletes at most
    `batch` rows and skips rows another transaction holds (they go next time).
    """
    deleted = 0
    # Oldest first, fired before cancelled: a reminder then goes no later than its
    # snoozes (which change state after it), so a snooze number (their count + 1)
    # is never handed out twice.
    for state in (FIRED, CANCELLED):
        deleted += await delete_in_batches(
            db,
            reminders,
            [reminders.c.reminder_id],
            sa.and_(reminders.c.state == state, reminders.c.update_time < before),
            batch=batch,
            order_by=[reminders.c.update_time],
        )
    return deleted


async def prune_task_plans(db: Database, before: datetime, *, batch: int = PRUNE_BATCH) -> int:
    """Deletes plans of completed and deleted tasks last changed before `before` that have no reminders left.

    Plans of open tasks stay. Each transaction deletes at most `batch` rows and
    skips plans another transaction holds (a task being planned right now).
    """
    deleted = 0
    for status in (COMPLETED, DELETED):
        deleted += await delete_in_batches(
            db,
            task_plans,
            [task_plans.c.task_id],
            sa.and_(
                task_plans.c.status == status,
                task_plans.c.update_time < before,
                ~sa.exists().where(reminders.c.task_id == task_plans.c.task_id),
            ),
            batch=batch,
        )
    return deleted
