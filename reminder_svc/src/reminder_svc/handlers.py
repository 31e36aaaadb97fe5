"""ReminderService over gRPC, the task-events handler that plans reminders, and the fire handler."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from reminder_svc import domain
from reminder_svc.storage import CANCELLED, SCHEDULED, ReminderRepository, TaskPlan
from todo_contracts.envelope import DecodedEvent
from todo_contracts.reminder.v1 import events_pb2 as reminder_events
from todo_contracts.reminder.v1 import reminder_pb2, reminder_pb2_grpc
from todo_contracts.task.v1 import events_pb2 as task_events
from todo_contracts.task.v1 import task_pb2
from todo_kit import paging
from todo_kit.auth import current_user
from todo_kit.db import Database
from todo_kit.errors import FailedPrecondition, InvalidArgument, NotFound, Violations, shown
from todo_kit.inputs import text_problem
from todo_kit.messaging import Outbox, claim_event
from todo_kit.runtime.port import Runtime
from todo_kit.server import ServicerContext
from todo_kit.zoned import now_utc

log = logging.getLogger(__name__)

APP_ID = "reminder_svc"
PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 1000
REMINDER_ID_MAX = 512  # "<task id>/<rule id>/<plan>", plus "/snooze/<n>" per snooze of a snooze
Context = ServicerContext


class ReminderPlanner:
    """Keeps each task's reminders in line with the task: plans, re-plans and cancels them."""

    def __init__(self, db: Database, outbox: Outbox, runtime: Runtime) -> None:
        self.db = db
        self.outbox = outbox
        self.runtime = runtime

    async def __call__(self, event: DecodedEvent) -> None:
        message = event.message
        status = {
            task_events.TaskCreated: "open",
            task_events.TaskUpdated: "open",
            task_events.TaskReopened: "open",
            task_events.TaskCompleted: "completed",
            task_events.TaskDeleted: "deleted",
        }.get(type(message))
        if status is None:
            return
        task: task_pb2.Task = message.task  # type: ignore[attr-defined]
        user_id: str = message.user_id  # type: ignore[attr-defined]
        if isinstance(message, task_events.TaskCreated) and not task.reminders:
            return  # a new task without rules has nothing to plan, and no plan yet to keep
        jobs_to_delete: list[str] = []
        now = now_utc()
        async with self.db.transaction() as conn:
            if not await claim_event(conn, APP_ID, event.id):
                return
            repo = ReminderRepository(conn)
            plan = await repo.plan(task.task_id)
            if plan is not None and (plan.status == "deleted" or
                                     (task.version < plan.task_version) or
                                     (task.version == plan.task_version and status != "deleted")):  # fmt: skip
                return  # out of date or already seen: the task has moved on
            if status == "open" and task.status == task_pb2.TASK_STATUS_COMPLETED:
                status = "completed"
            key = domain.plan_key(task)
            version = plan.plan_version if plan is not None else 0
            replan = status == "open" and (plan is None or plan.plan_key != key or plan.status != "open")
            if status != "open" or replan:
                reason = {
                    "completed": reminder_events.CANCEL_REASON_TASK_COMPLETED,
                    "deleted": reminder_events.CANCEL_REASON_TASK_DELETED,
                }.get(status, reminder_events.CANCEL_REASON_REPLANNED)
                # Snoozes are the user's own "remind me later": only ending the task cancels them.
                for old, old_job in await repo.scheduled_of(task.task_id, rules_only=status == "open"):
                    await repo.set_state(old.reminder_id, CANCELLED)
                    old.state = CANCELLED
                    jobs_to_delete.append(old_job)
                    await self.outbox.add_event(
                        conn,
                        reminder_events.ReminderCancelled(user_id=user_id, reminder=old, reason=reason),
                        subject=task.task_id,
                    )
            if replan:
                version += 1
                reopened = plan is not None and plan.status == "completed"
                for planned in domain.planned_reminders(task):
                    if reopened and planned.fire_time <= now:
                        continue  # passed while the task was done: not worth a late reminder
                    await self._schedule(conn, repo, user_id, task, planned, version)
            elif status == "open" and plan is not None and plan.title != task.title:
                await repo.retitle(task.task_id, task.title)
            await repo.save_plan(TaskPlan(task.task_id, user_id, task.version, status, task.title, key, version), now)
        # After the commit: a job deleted too early would lose a reminder if
        # the commit failed; one deleted too late only fires into a stale check.
        for name in jobs_to_delete:
            if not any(name == domain.job_name(task.task_id, r.rule_id) for r in task.reminders) or status != "open":
                await self.runtime.delete_job(APP_ID, name)

    async def _schedule(
        self, conn: Any, repo: ReminderRepository, user_id: str, task: task_pb2.Task,
        planned: domain.PlannedReminder, version: int,
    ) -> None:  # fmt: skip
        reminder = reminder_pb2.Reminder(
            reminder_id=domain.reminder_id(task.task_id, planned.rule_id, version),
            user_id=user_id,
            task_id=task.task_id,
            rule_id=planned.rule_id,
            task_title=task.title,
            state=SCHEDULED,
            plan_version=version,
        )
        if task.HasField("due"):
            reminder.task_due.CopyFrom(task.due)
        reminder.fire_time.FromDatetime(planned.fire_time)
        name = domain.job_name(task.task_id, planned.rule_id)
        if not await repo.add(reminder, name):
            return
        # Scheduled before the commit, under a name that a later plan
        # overwrites: if the commit fails, the job finds no scheduled reminder
        # and the redelivered event schedules it again.
        await self.runtime.schedule_job(APP_ID, name, planned.fire_time, reminder.reminder_id.encode())
        await self.outbox.add_event(
            conn, reminder_events.ReminderScheduled(user_id=user_id, reminder=reminder), subject=task.task_id
        )

    async def fire(self, name: str, data: bytes) -> None:
        """Job handler: a reminder's time has come. Publishes ReminderDue once, however often it fires."""
        reminder_id = data.decode("utf-8", errors="replace")
        async with self.db.transaction() as conn:
            repo = ReminderRepository(conn)
            reminder = await repo.get(reminder_id, lock=True)
            if reminder is None or reminder.state != SCHEDULED:
                return  # stale (re-planned, cancelled) or a repeated delivery
            plan = await repo.plan(reminder.task_id)
            if plan is None or plan.status != "open":
                await repo.set_state(reminder_id, CANCELLED)
                return
            if not reminder.snoozed_from_reminder_id and reminder.plan_version != plan.plan_version:
                await repo.set_state(reminder_id, CANCELLED)
                return
            fired = now_utc()
            fire_time = reminder.fire_time.ToDatetime(tzinfo=UTC)
            if fired < fire_time:
                # Never early: a job delivered ahead of its time waits for it.
                await self.runtime.schedule_job(APP_ID, name, fire_time, data)
                return
            late_by = domain.lateness(fire_time, fired)
            late = late_by > domain.LATE_AFTER
            await repo.mark_fired(reminder_id, fired, int(late_by / timedelta(milliseconds=1)), late)
            reminder.state = reminder_pb2.REMINDER_STATE_FIRED
            reminder.fired_time.FromDatetime(fired)
            reminder.lateness.FromTimedelta(late_by)
            reminder.late = late
            reminder.task_title = plan.title
            await self.outbox.add_event(
                conn, reminder_events.ReminderDue(user_id=reminder.user_id, reminder=reminder), subject=reminder.task_id
            )
        if late:
            log.warning(
                "reminder delivered late", extra={"reminder_id": reminder_id, "late_by_s": late_by.total_seconds()}
            )


class ReminderServicer(reminder_pb2_grpc.ReminderServiceServicer):
    """Lists and snoozes the authenticated user's reminders."""

    def __init__(self, db: Database, outbox: Outbox, runtime: Runtime) -> None:
        self.db = db
        self.outbox = outbox
        self.runtime = runtime

    async def ListReminders(
        self, request: reminder_pb2.ListRemindersRequest, context: Context
    ) -> reminder_pb2.ListRemindersResponse:
        user = current_user()
        violations = Violations()
        if request.task_id:
            try:
                uuid.UUID(request.task_id)
            except ValueError:
                violations.add("task_id", "is not a task id")
        if not 0 <= request.page_size <= PAGE_SIZE_MAX:
            violations.add("page_size", f"must be between 1 and {PAGE_SIZE_MAX} (0 means {PAGE_SIZE_DEFAULT})")
        for state in request.states:
            if state not in (reminder_pb2.REMINDER_STATE_SCHEDULED, reminder_pb2.REMINDER_STATE_FIRED,
                             reminder_pb2.REMINDER_STATE_CANCELLED):  # fmt: skip
                violations.add("states", f"unknown state {state}")
        offset = 0
        fingerprint = paging.query_fingerprint(request)
        if request.page_token:
            try:
                offset = paging.decode_page_token(request.page_token, fingerprint)
            except ValueError as exc:
                violations.add("page_token", str(exc))
        violations.raise_if_any()
        size = request.page_size or PAGE_SIZE_DEFAULT
        start = (
            request.fire_range.start_time.ToDatetime(tzinfo=UTC) if request.fire_range.HasField("start_time") else None
        )
        end = request.fire_range.end_time.ToDatetime(tzinfo=UTC) if request.fire_range.HasField("end_time") else None
        async with self.db.engine.connect() as conn:
            found = await ReminderRepository(conn).list(
                user, request.task_id, list(request.states), start, end, size + 1, offset
            )
        response = reminder_pb2.ListRemindersResponse(reminders=found[:size])
        if len(found) > size:
            response.next_page_token = paging.encode_page_token(offset + size, fingerprint)
        return response

    async def SnoozeReminder(
        self, request: reminder_pb2.SnoozeReminderRequest, context: Context
    ) -> reminder_pb2.SnoozeReminderResponse:
        user = current_user()
        now = now_utc()
        self._check_reminder_id(request.reminder_id)
        until = self._snooze_until(request, now)
        async with self.db.transaction() as conn:
            repo = ReminderRepository(conn)
            original = await repo.get(request.reminder_id, user_id=user, lock=True)
            if original is None:
                raise NotFound(f"reminder {shown(request.reminder_id)} not found")
            if original.state != reminder_pb2.REMINDER_STATE_FIRED:
                raise FailedPrecondition("only a reminder that has fired can be snoozed")
            plan = await repo.plan(original.task_id)
            if plan is None or plan.status != "open":
                raise FailedPrecondition("the task is no longer open")
            number = await repo.count_snoozes(original.reminder_id) + 1
            snooze = reminder_pb2.Reminder(
                reminder_id=f"{original.reminder_id}/snooze/{number}",
                user_id=user,
                task_id=original.task_id,
                task_title=plan.title,
                state=SCHEDULED,
                plan_version=plan.plan_version,
                snoozed_from_reminder_id=original.reminder_id,
            )
            if original.HasField("task_due"):
                snooze.task_due.CopyFrom(original.task_due)
            snooze.fire_time.FromDatetime(until)
            name = domain.snooze_job_name(snooze.reminder_id)
            await repo.add(snooze, name)
            await self.runtime.schedule_job(APP_ID, name, until, snooze.reminder_id.encode())
            await self.outbox.add_event(
                conn, reminder_events.ReminderScheduled(user_id=user, reminder=snooze), subject=snooze.task_id
            )
        return reminder_pb2.SnoozeReminderResponse(reminder=snooze)

    @staticmethod
    def _check_reminder_id(reminder_id: str) -> None:
        problem = text_problem(reminder_id, REMINDER_ID_MAX, required=True)
        if problem is None and not reminder_id.isprintable():
            problem = "must be printable (no line breaks or control characters)"
        if problem is not None:
            raise InvalidArgument([("reminder_id", problem)])

    @staticmethod
    def _snooze_until(request: reminder_pb2.SnoozeReminderRequest, now: datetime) -> datetime:
        # Timestamp and Duration are within protobuf's range (the server checked), but one
        # from "now" may still leave the datetime range: bounds are checked before adding.
        which = request.WhichOneof("until")
        earliest = domain.SNOOZE_MIN - timedelta(seconds=1)
        if which == "snooze_until":
            field = "snooze_until"
            until = request.snooze_until.ToDatetime(tzinfo=UTC)
            within = now + earliest <= until <= now + domain.SNOOZE_MAX
        elif which == "snooze_for":
            field = "snooze_for"
            delay = request.snooze_for.ToTimedelta()
            within = earliest <= delay <= domain.SNOOZE_MAX
            until = now + delay if within else now
        else:
            raise InvalidArgument([("until", "set snooze_until or snooze_for")])
        if not within:
            raise InvalidArgument([(field, "must be between 1 minute and 365 days from now")])
        return until
