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
from todo_kit.errors import LimitExceeded, Violations
from todo_kit.messaging import Outbox, claim_event
from todo_kit.offloop import OffLoop
from todo_kit.runtime.port import DropEvent, Runtime
from todo_kit.server import ServicerContext
from todo_kit.zoned import now_utc

log = logging.getLogger(__name__)

APP_ID = "recurrence_svc"
JOB_PREFIX = "occurrence/"
PREVIEW_DEFAULT = 10
PREVIEW_MAX = 1000
EVALUATION_WORKERS = 2
Context = ServicerContext


def job_name(series_id: str, index: int) -> str:
    """The deterministic name of the job that publishes a lead-time request."""
    return f"{JOB_PREFIX}{series_id}/{index}"


def evaluation_pool() -> OffLoop:
    """Where rules are evaluated: two worker threads, each evaluation bounded by rrules' budget."""
    return OffLoop("rrules", workers=EVALUATION_WORKERS, timeout=rrules.EVALUATION_SECONDS + 1.0)


def preview(rule: str, start: zoned.ZonedTime, wanted: int) -> tuple[list[rrules.Occurrence], bool]:
    """The first wanted occurrences of a checked rule, and whether the rule ends after them."""
    found: list[rrules.Occurrence] = []
    for occurrence in rrules.occurrences(rule, start.local, start.zone):
        if len(found) == wanted:
            return found, False
        found.append(occurrence)
    return found, True


def checked(rule: str) -> tuple[list[tuple[str, str]], str]:
    """What is wrong with a rule (never occurring included) and, when nothing is, the rule in words."""
    problems = rrules.rule_problems(rule)
    return problems, ("" if problems else rrules.describe(rule))


class RecurrenceServicer(recurrence_pb2_grpc.RecurrenceServiceServicer):
    """Previews and checks rules exactly as RFC 5545 defines them, off the event loop."""

    def __init__(self, pool: OffLoop) -> None:
        self.pool = pool

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
        try:
            found, ended = await self.pool.run(preview, request.rrule, start, request.count or PREVIEW_DEFAULT)
        except (rrules.EvaluationLimit, TimeoutError) as exc:
            raise LimitExceeded(f"the rule needs too much work to preview: {exc}") from None
        return recurrence_pb2.PreviewOccurrencesResponse(
            occurrences=[recurrence_pb2.Occurrence(index=o.index, time=o.zoned(start.zone).to_proto()) for o in found],
            rule_ended=ended,
        )

    async def ValidateRule(
        self, request: recurrence_pb2.ValidateRuleRequest, context: Context
    ) -> recurrence_pb2.ValidateRuleResponse:
        try:
            problems, description = await self.pool.run(checked, request.rrule)
        except (rrules.EvaluationLimit, TimeoutError) as exc:
            raise LimitExceeded(f"the rule needs too much work to check: {exc}") from None
        return recurrence_pb2.ValidateRuleResponse(
            valid=not problems,
            problems=[recurrence_pb2.RuleProblem(part=part, message=message) for part, message in problems],
            description=description,
        )


class SeriesHandler:
    """Reacts to completions and deletions of recurring tasks."""

    def __init__(self, db: Database, outbox: Outbox, runtime: Runtime, pool: OffLoop) -> None:
        self.db = db
        self.outbox = outbox
        self.runtime = runtime
        self.pool = pool

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
        series_id = task.recurrence.series_id
        # Evaluated before the transaction (the event alone decides it), in a
        # worker thread and within a budget. A rule that cannot be evaluated
        # never will be: retrying would only repeat the work, so the event is
        # dead-lettered.
        try:
            outcome = await self.pool.run(domain.next_occurrence, task, completed_at or now)
        except (ValueError, rrules.EvaluationLimit, TimeoutError) as exc:
            raise DropEvent(f"series {series_id}: its rule cannot be evaluated: {exc or type(exc).__name__}") from exc
        async with self.db.transaction() as conn:
            if not await claim_event(conn, APP_ID, event_id):
                return
            repo = SeriesRepository(conn)
            if await repo.lock_series(series_id, completed.user_id) is not None:
                return  # ended: deleted, or COUNT/UNTIL reached
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
