"""RecurrenceService over gRPC, the task-events handler and the lead-time job handler."""

from __future__ import annotations

import logging
from datetime import UTC

from recurrence_svc import domain
from recurrence_svc.storage import SeriesRepository
from todo_contracts.envelope import DecodedEvent
from todo_contracts.recurrence.v1 import recurrence_pb2, recurrence_pb2_grpc
from todo_contracts.task.v1 import events_pb2
from todo_kit import rrules, zoned
from todo_kit.db import Database
from todo_kit.errors import Violations
from todo_kit.messaging import Outbox, claim_event
from todo_kit.runtime.port import Runtime
from todo_kit.server import ServicerContext
from todo_kit.zoned import now_utc

log = logging.getLogger(__name__)

APP_ID = "recurrence_svc"
JOB_PREFIX = "occurrence/"
PREVIEW_DEFAULT = 10
PREVIEW_MAX = 1000
Context = ServicerContext


def job_name(series_id: str, index: int) -> str:
    """The deterministic name of the job that publishes a lead-time request."""
    return f"{JOB_PREFIX}{series_id}/{index}"


class RecurrenceServicer(recurrence_pb2_grpc.RecurrenceServiceServicer):
    """Previews and checks rules exactly as RFC 5545 defines them."""

    async def PreviewOccurrences(
        self, request: recurrence_pb2.PreviewOccurrencesRequest, context: Context
    ) -> recurrence_pb2.PreviewOccurrencesResponse:
        violations = Violations()
        for part, message in rrules.rule_problems(request.rrule):
            violations.add("rrule", f"{part}: {message}" if part else message)
        if not request.HasField("start"):
            violations.add("start", "is required")
        start = None
        try:
            start = zoned.from_proto(request.start) if request.HasField("start") else None
        except ValueError as exc:
            violations.add("start", str(exc))
        if request.count < 0 or request.count > PREVIEW_MAX:
            violations.add("count", f"must be between 1 and {PREVIEW_MAX} (0 means {PREVIEW_DEFAULT})")
        violations.raise_if_any()
        assert start is not None
        wanted = request.count or PREVIEW_DEFAULT
        response = recurrence_pb2.PreviewOccurrencesResponse()
        found = rrules.occurrences(request.rrule, start.local, start.zone)
        for occurrence in found:
            if len(response.occurrences) == wanted:
                response.rule_ended = False
                return response
            response.occurrences.append(
                recurrence_pb2.Occurrence(index=occurrence.index, time=occurrence.zoned(start.zone).to_proto())
            )
        response.rule_ended = True
        return response

    async def ValidateRule(
        self, request: recurrence_pb2.ValidateRuleRequest, context: Context
    ) -> recurrence_pb2.ValidateRuleResponse:
        problems = rrules.rule_problems(request.rrule)
        if not problems and rrules.never_occurs_again(request.rrule):
            problems = [("", "the rule never produces a date after its start (e.g. February 30)")]
        response = recurrence_pb2.ValidateRuleResponse(
            valid=not problems,
            problems=[recurrence_pb2.RuleProblem(part=part, message=message) for part, message in problems],
        )
        if not problems:
            response.description = rrules.describe(request.rrule)
        return response


class SeriesHandler:
    """Reacts to completions and deletions of recurring tasks."""

    def __init__(self, db: Database, outbox: Outbox, runtime: Runtime) -> None:
        self.db = db
        self.outbox = outbox
        self.runtime = runtime

    async def __call__(self, event: DecodedEvent) -> None:
        message = event.message
        if isinstance(message, events_pb2.TaskCompleted):
            await self._completed(event.id, message)
        elif isinstance(message, events_pb2.TaskDeleted):
            await self._deleted(event.id, message)

    async def _completed(self, event_id: str, completed: events_pb2.TaskCompleted) -> None:
        task = completed.task
        if not domain.is_recurring(task):
            return
        completed_at = task.complete_time.ToDatetime(tzinfo=UTC) if task.HasField("complete_time") else None
        now = now_utc()
        async with self.db.transaction() as conn:
            if not await claim_event(conn, APP_ID, event_id):
                return
            repo = SeriesRepository(conn)
            series_id = task.recurrence.series_id
            if await repo.lock_series(series_id, completed.user_id) is not None:
                return  # ended: deleted, or COUNT/UNTIL reached
            try:
                outcome = domain.next_occurrence(task, completed_at or now)
            except ValueError as exc:
                log.error("recurring task has a rule that cannot be evaluated",
                          extra={"series_id": series_id, "error": str(exc)})  # fmt: skip
                return
            if isinstance(outcome, domain.SeriesEnded):
                await repo.end(series_id, completed.user_id, outcome.reason, now)
                return
            request = events_pb2.OccurrenceRequested(
                user_id=completed.user_id,
                series_id=series_id,
                occurrence_index=outcome.index,
                due=outcome.due.to_proto(),
                template=task,
                previous_task_id=task.task_id,
            )
            publish_at = domain.publish_time(task, outcome.due, now)
            publish_now = publish_at <= now
            if not await repo.add_request(request, outcome.due.instant, publish_at, published=publish_now):
                return  # asked for before (reopened and completed again)
            if publish_now:
                await self.outbox.add_event(conn, request, subject=series_id)
            else:
                # Scheduled inside the transaction: if the commit then fails the
                # job finds no request and does nothing, and the redelivered
                # event schedules it again under the same name.
                await self.runtime.schedule_job(job_name(series_id, outcome.index), publish_at, b"")

    async def _deleted(self, event_id: str, deleted: events_pb2.TaskDeleted) -> None:
        task = deleted.task
        if not deleted.end_series or not task.recurrence.series_id:
            return  # deleting an occurrence leaves nothing to complete: the series stops by itself
        series_id = task.recurrence.series_id
        async with self.db.transaction() as conn:
            if not await claim_event(conn, APP_ID, event_id):
                return
            repo = SeriesRepository(conn)
            await repo.end(series_id, deleted.user_id, "deleted", now_utc())
            waiting = await repo.unpublished_of(series_id)
        for index in waiting:
            await self.runtime.delete_job(job_name(series_id, index))

    async def publish_due_request(self, name: str, data: bytes) -> None:
        """Job handler: the lead time of a requested occurrence has come."""
        series_id, _, index_text = name[len(JOB_PREFIX) :].rpartition("/")
        if not series_id or not index_text.isdigit():
            log.error("malformed occurrence job name", extra={"job": name})
            return
        async with self.db.transaction() as conn:
            repo = SeriesRepository(conn)
            pending = await repo.pending(series_id, int(index_text))
            if pending is None or pending.published:
                return  # never committed, or already published (a repeated fire)
            if await repo.lock_series(series_id, pending.request.user_id) == "deleted":
                return
            await self.outbox.add_event(conn, pending.request, subject=series_id)
            await repo.mark_published(series_id, pending.index)
