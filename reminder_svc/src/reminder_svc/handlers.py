"""ReminderService over gRPC, the task-events handler that plans reminders, and the fire handler."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from reminder_svc import domain
from reminder_svc.storage import CANCELLED, SCHEDULED, ReminderRepository
from todo_contracts.envelope import DecodedEvent
from todo_contracts.reminder.v1 import events_pb2 as reminder_events
from todo_contracts.reminder.v1 import reminder_pb2, reminder_pb2_grpc
from todo_contracts.task.v1 import events_pb2 as task_events
from todo_contracts.task.v1 import task_pb2
from todo_kit import paging
from todo_kit.auth import current_user
from todo_kit.db import Database
from todo_kit.errors import FailedPrecondition, InvalidArgument, LimitExceeded, NotFound, Violations, shown
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
    """Keeps each task's reminders in line with the task: plans, re-plans and cancels them, and fires them."""

    def __init__(self, db: Database, outbox: Outbox, runtime: Runtime) -> None:
        self.db = db
        self.outbox = outbox
        self.runtime = runtime

    async def __call__(self, event: DecodedEvent) -> None:
        message = event.message
        status = domain.planning_status(message)
        if status is None:
            return
        task: task_pb2.Task = message.task  # type: ignore[attr-defined]
        user_id: str = message.user_id  # type: ignore[attr-defined]
        cancelled_jobs: list[str] = []
        scheduled_jobs: list[str] = []
        now = now_utc()
        async with self.db.transaction() as conn:
            if not await claim_event(conn, APP_ID, event.id):
                return
            repo = ReminderRepository(conn)
            plan = await repo.plan(task.task_id)
            fired = await repo.fired_of(task.task_id) if plan is not None else set()
            change = domain.change_plan(
                plan, task, user_id, status, now, reopening=isinstance(message, task_events.TaskReopened), fired=fired
            )
            if change is None:
                return  # out of date or already seen: the task has moved on
            if change.cancel is not None:
                for old, old_job in await repo.scheduled_of(task.task_id, rules_only=change.cancel == "rules"):
                    await repo.set_state(old.reminder_id, CANCELLED)
                    old.state = CANCELLED
                    cancelled_jobs.append(old_job)
                    await self.outbox.add_event(
                        conn,
                        reminder_events.ReminderCancelled(user_id=user_id, reminder=old, reason=change.cancel_reason),
                        subject=task.task_id,
                    )
            for planned in change.schedule:
                name = await self._schedule(conn, repo, user_id, task, planned, change.plan.plan_version)
                if name is not None:
                    scheduled_jobs.append(name)
            if change.retitle:
                await repo.retitle(task.task_id, task.title)
            await repo.save_plan(change.plan, now)
        # After the commit: a job deleted too early would lose a reminder if
        # the commit failed; one deleted too late only fires into a stale check.
        for name in domain.jobs_to_delete(cancelled_jobs, scheduled_jobs):
            await self.runtime.delete_job(name)

    async def _schedule(
        self, conn: Any, repo: ReminderRepository, user_id: str, task: task_pb2.Task,
        planned: domain.PlannedReminder, version: int,
    ) -> str | None:  # fmt: skip
        """Stores and schedules a reminder of the plan; returns its job's name (None if it existed)."""
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
            return None
        # Scheduled before the commit, under a name that a later plan
        # overwrites: if the commit fails, the job finds no scheduled reminder
        # and the redelivered event schedules it again. A job that comes due
        # before the commit waits for it on the task's plan lock.
        await self.runtime.schedule_job(name, planned.fire_time, reminder.reminder_id.encode())
        await self.outbox.add_event(
            conn, reminder_events.ReminderScheduled(user_id=user_id, reminder=reminder), subject=task.task_id
        )
        return name

    async def fire(self, name: str, data: bytes) -> None:
        """Job handler: a reminder's time has come. Publishes ReminderDue once, however often it fires."""
        reminder_id = data.decode("utf-8", errors="replace")
        task_id = domain.task_id_of(reminder_id)
        if task_id is None:
            log.warning("job of no reminder ignored", extra={"job": name})
            return
        async with self.db.transaction() as conn:
            repo = ReminderRepository(conn)
            # The task's plan first, then the reminder: the order the planner locks them in.
            plan = await repo.plan(task_id)
            reminder = await repo.get(reminder_id, lock=True)
            fired = now_utc()
            decision = domain.decide_fire(reminder, plan, fired)
            if reminder is None or decision.outcome is domain.FireOutcome.SKIP:
                return  # stale (re-planned, cancelled) or a repeated delivery
            if decision.outcome is domain.FireOutcome.CANCEL:
                await repo.set_state(reminder_id, CANCELLED)
                return
            fire_time = reminder.fire_time.ToDatetime(tzinfo=UTC)
            if decision.outcome is domain.FireOutcome.WAIT:
                # Never early: a job delivered ahead of its time waits for it.
                await self.runtime.schedule_job(name, fire_time, data)
                return
            late_by, late = decision.late_by, decision.late
            lateness_ms = int(late_by / timedelta(milliseconds=1))
            await repo.mark_fired(reminder_id, fired, lateness_ms, late)
            reminder.state = reminder_pb2.REMINDER_STATE_FIRED
            reminder.fired_time.FromDatetime(fired)
            reminder.lateness.FromTimedelta(late_by)
            reminder.late = late
            assert plan is not None  # only an open plan's reminder fires
            reminder.task_title = plan.title
            await self.outbox.add_event(
                conn, reminder_events.ReminderDue(user_id=reminder.user_id, reminder=reminder), subject=reminder.task_id
            )
        # Logged once committed; the title is the user's content and stays out of logs.
        log.info(
            "reminder fired",
            extra={
                "reminder_id": reminder_id,
                "task_id": reminder.task_id,
                "user_id": reminder.user_id,
                "lateness_ms": lateness_ms,
                "late": late,
            },
        )
        if late:
            log.warning(
                "reminder delivered late", extra={"reminder_id": reminder_id, "late_by_s": late_by.total_seconds()}
            )


class ReminderServicer(reminder_pb2_grpc.ReminderServiceServicer):
    """Lists and snoozes the authenticated user's reminders."""

    def __init__(self, db: Database, outbox: Outbox, runtime: Runtime, page_tokens: paging.PageTokens) -> None:
        self.db = db
        self.outbox = outbox
        self.runtime = runtime
        self.page_tokens = page_tokens

    async def ListReminders(
        self, request: reminder_pb2.ListRemindersRequest, context: Context
    ) -> reminder_pb2.ListRemindersResponse:
        user = current_user()
        violations = Violations()
        task_id = ""
        if request.task_id:
            # Only the canonical form: uuid.UUID also takes "{...}" and "urn:uuid:...", which the database does not.
            try:
                task_id = str(uuid.UUID(request.task_id))
            except ValueError:
                task_id = ""
            if task_id != request.task_id.lower():
                violations.add("task_id", f"{shown(request.task_id)} is not a task id")
        if not 0 <= request.page_size <= PAGE_SIZE_MAX:
            violations.add("page_size", f"must be between 1 and {PAGE_SIZE_MAX} (0 means {PAGE_SIZE_DEFAULT})")
        for state in request.states:
            if state not in (reminder_pb2.REMINDER_STATE_SCHEDULED, reminder_pb2.REMINDER_STATE_FIRED,
                             reminder_pb2.REMINDER_STATE_CANCELLED):  # fmt: skip
                violations.add("states", f"unknown state {state}")
        # Keyset pages: the next page starts strictly after (fire time, reminder id)
        # of this one's last reminder, whatever changed before it meanwhile.
        after: tuple[datetime, str] | None = None
        fingerprint = paging.query_fingerprint(request, user=user)
        if request.page_token:
            try:
                fire_time, reminder_id = self.page_tokens.read(
                    request.page_token, fingerprint, (paging.Part.TIME, paging.Part.TEXT)
                )
            except ValueError as exc:
                violations.add("page_token", str(exc))
            else:
                assert isinstance(fire_time, datetime) and isinstance(reminder_id, str)  # as the shape says
                after = (fire_time, reminder_id)
        violations.raise_if_any()
        size = request.page_size or PAGE_SIZE_DEFAULT
        start = (
            request.fire_range.start_time.ToDatetime(tzinfo=UTC) if request.fire_range.HasField("start_time") else None
        )
        end = request.fire_range.end_time.ToDatetime(tzinfo=UTC) if request.fire_range.HasField("end_time") else None
        async with self.db.engine.connect() as conn:
            found = await ReminderRepository(conn).list(
                user, task_id, list(request.states), start, end, size + 1, after
            )
        response = reminder_pb2.ListRemindersResponse(reminders=found[:size])
        if len(found) > size:
            last = found[size - 1]
            position = (last.fire_time.ToDatetime(tzinfo=UTC), last.reminder_id)
            response.next_page_token = self.page_tokens.issue(fingerprint, position)
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
            found = await repo.get(request.reminder_id, user_id=user)
            # The task's plan first, then the reminder: the order the planner locks them in.
            plan = await repo.plan(found.task_id) if found is not None else None
            original = await repo.get(request.reminder_id, user_id=user, lock=True) if found is not None else None
            if original is None:
                raise NotFound(f"reminder {shown(request.reminder_id)} not found")
            if original.state != reminder_pb2.REMINDER_STATE_FIRED:
                raise FailedPrecondition("only a reminder that has fired can be snoozed")
            if plan is None or plan.status != "open":
                raise FailedPrecondition("the task is no longer open")
            number = await repo.count_snoozes(original.reminder_id) + 1
            if number > domain.SNOOZES_MAX:
                raise LimitExceeded(f"reminder {original.reminder_id} was snoozed {domain.SNOOZES_MAX} times already")
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
            await self.runtime.schedule_job(name, until, snooze.reminder_id.encode())
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
