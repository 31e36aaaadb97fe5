"""TaskService over gRPC, and the task service's event handler (OccurrenceRequested)."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncConnection

from task_svc import domain
from task_svc.settings import TaskFeedSettings
from task_svc.storage import StoredChange, TaskRepository, new_task_id
from todo_contracts.envelope import DecodedEvent
from todo_contracts.task.v1 import events_pb2, task_pb2, task_service_pb2, task_service_pb2_grpc
from todo_kit import paging
from todo_kit.auth import current_user
from todo_kit.db import Database
from todo_kit.errors import InvalidArgument, NotFound, VersionConflict, Violations
from todo_kit.livefeed import LiveFeed, Quiet, follow
from todo_kit.messaging import Outbox, claim_event
from todo_kit.server import ServicerContext
from todo_kit.zoned import now_utc

log = logging.getLogger(__name__)

CONSUMER = "task_svc"
Context = ServicerContext
CREATED = task_service_pb2.TASK_CHANGE_KIND_CREATED
UPDATED = task_service_pb2.TASK_CHANGE_KIND_UPDATED
COMPLETED = task_service_pb2.TASK_CHANGE_KIND_COMPLETED
REOPENED = task_service_pb2.TASK_CHANGE_KIND_REOPENED
DELETED = task_service_pb2.TASK_CHANGE_KIND_DELETED


def _not_found(task_id: str) -> NotFound:
    return NotFound(f"task {task_id} not found")


def _check_version(task: task_pb2.Task, expected: int) -> None:
    if expected and expected != task.version:
        raise VersionConflict(f"task {task.task_id} is at version {task.version}, not {expected}; reload and retry")


def _stamp_changed(task: task_pb2.Task) -> None:
    task.version += 1
    task.update_time.FromDatetime(now_utc())


async def _commit_change(
    conn: AsyncConnection,
    outbox: Outbox,
    kind: task_service_pb2.TaskChangeKind.ValueType,
    task: task_pb2.Task,
    event: Message,
) -> None:
    """Adds a change's event to the outbox and its entry to the owner's live feed, in the change's transaction.

    Last in the transaction: the feed entry holds the user's change counter until commit.
    """
    await outbox.add_event(conn, event, subject=task.task_id)
    await TaskRepository(conn).record_change(kind, task)


class TaskServicer(task_service_pb2_grpc.TaskServiceServicer):
    """Every TaskService RPC, acting as the authenticated user."""

    def __init__(
        self, db: Database, outbox: Outbox, page_tokens: paging.PageTokens, feed: LiveFeed,
        change_ids: domain.ChangeIds, feed_settings: TaskFeedSettings,
    ) -> None:  # fmt: skip
        self.db = db
        self.outbox = outbox
        self.page_tokens = page_tokens
        self.feed = feed
        self.change_ids = change_ids
        self.feed_settings = feed_settings

    async def CreateTask(
        self, request: task_service_pb2.CreateTaskRequest, context: Context
    ) -> task_service_pb2.CreateTaskResponse:
        user = current_user()
        request_id = request.client_request_id
        if request_id:
            domain.check_request_id(request_id)
        violations = Violations()
        if not request.HasField("task"):
            violations.add("task", "is required")
        task = domain.checked_task(request.task, violations)
        violations.raise_if_any()
        # Two tries: a concurrent create with the same request id may commit
        # first, and then the second try returns its task.
        for _ in range(2):
            async with self.db.transaction() as conn:
                repo = TaskRepository(conn)
                if request_id:
                    existing = await repo.task_for_request(user, request_id)
                    if existing is not None:
                        found = await repo.get(user, existing)
                        if found is None:
                            raise NotFound(f"the task created by request {request_id!r} has been deleted")
                        return task_service_pb2.CreateTaskResponse(task=found)
                created = self._new_task(user, task)
                if request_id and not await repo.remember_request(user, request_id, created.task_id):
                    continue
                if created.HasField("recurrence"):
                    await repo.claim_occurrence(created.recurrence.series_id, 1, created.task_id)
                await repo.insert(created)
                await _commit_change(
                    conn, self.outbox, CREATED, created, events_pb2.TaskCreated(user_id=user, task=created)
                )
                return task_service_pb2.CreateTaskResponse(task=created)
        raise VersionConflict(f"request {request_id!r} is being handled by another call; retry")

    @staticmethod
    def _new_task(user: str, checked: task_pb2.Task) -> task_pb2.Task:
        task = task_pb2.Task()
        task.CopyFrom(checked)
        task.task_id = new_task_id()
        task.user_id = user
        task.status = task_pb2.TASK_STATUS_OPEN
        now = now_utc()
        task.create_time.FromDatetime(now)
        task.update_time.FromDatetime(now)
        task.version = 1
        if task.HasField("recurrence"):
            task.recurrence.series_id = str(uuid.uuid4())
            task.recurrence.occurrence_index = 1
        return task

    async def GetTask(
        self, request: task_service_pb2.GetTaskRequest, context: Context
    ) -> task_service_pb2.GetTaskResponse:
        user = current_user()
        task_id = domain.check_task_id(request.task_id)
        async with self.db.transaction() as conn:
            task = await TaskRepository(conn).get(user, task_id)
        if task is None:
            raise _not_found(task_id)
        return task_service_pb2.GetTaskResponse(task=task)

    async def UpdateTask(
        self, request: task_service_pb2.UpdateTaskRequest, context: Context
    ) -> task_service_pb2.UpdateTaskResponse:
        user = current_user()
        if not request.HasField("task"):
            raise InvalidArgument([("task", "is required")])
        task_id = domain.check_task_id(request.task.task_id, "task.task_id")
        async with self.db.transaction() as conn:
            repo = TaskRepository(conn)
            current = await repo.get(user, task_id, for_update=True)
            if current is None:
                raise _not_found(task_id)
            _check_version(current, request.expected_version)
            updated, changed = domain.apply_update(current, request.task, request.update_mask.paths)
            if not changed:
                return task_service_pb2.UpdateTaskResponse(task=current)
            if updated.HasField("recurrence") and not updated.recurrence.series_id:
                # Becoming recurring starts a series with this task as its first occurrence.
                updated.recurrence.series_id = str(uuid.uuid4())
                updated.recurrence.occurrence_index = 1
                await repo.claim_occurrence(updated.recurrence.series_id, 1, updated.task_id)
            _stamp_changed(updated)
            await repo.update(updated)
            event = events_pb2.TaskUpdated(user_id=user, task=updated, previous=current, changed_fields=changed)
            await _commit_change(conn, self.outbox, UPDATED, updated, event)
        return task_service_pb2.UpdateTaskResponse(task=updated)

    async def CompleteTask(
        self, request: task_service_pb2.CompleteTaskRequest, context: Context
    ) -> task_service_pb2.CompleteTaskResponse:
        task = await self._set_status(request.task_id, request.expected_version, task_pb2.TASK_STATUS_COMPLETED)
        return task_service_pb2.CompleteTaskResponse(task=task)

    async def ReopenTask(
        self, request: task_service_pb2.ReopenTaskRequest, context: Context
    ) -> task_service_pb2.ReopenTaskResponse:
        task = await self._set_status(request.task_id, request.expected_version, task_pb2.TASK_STATUS_OPEN)
        return task_service_pb2.ReopenTaskResponse(task=task)

    async def _set_status(self, raw_task_id: str, expected_version: int, status: int) -> task_pb2.Task:
        user = current_user()
        task_id = domain.check_task_id(raw_task_id)
        async with self.db.transaction() as conn:
            repo = TaskRepository(conn)
            task = await repo.get(user, task_id, for_update=True)
            if task is None:
                raise _not_found(task_id)
            _check_version(task, expected_version)
            if task.status == status:
                return task  # completing a completed task (or reopening an open one) changes nothing
            task.status = status  # type: ignore[assignment]
            _stamp_changed(task)
            event: events_pb2.TaskCompleted | events_pb2.TaskReopened
            if status == task_pb2.TASK_STATUS_COMPLETED:
                task.complete_time.CopyFrom(task.update_time)
                event, kind = events_pb2.TaskCompleted(user_id=user, task=task), COMPLETED
            else:
                task.ClearField("complete_time")
                event, kind = events_pb2.TaskReopened(user_id=user, task=task), REOPENED
            await repo.update(task)
            await _commit_change(conn, self.outbox, kind, task, event)
        return task

    async def DeleteTask(
        self, request: task_service_pb2.DeleteTaskRequest, context: Context
    ) -> task_service_pb2.DeleteTaskResponse:
        user = current_user()
        task_id = domain.check_task_id(request.task_id)
        async with self.db.transaction() as conn:
            repo = TaskRepository(conn)
            task = await repo.get(user, task_id, for_update=True)
            if task is None:
                raise _not_found(task_id)
            _check_version(task, request.expected_version)
            await repo.delete(task_id)
            if request.end_series and task.recurrence.series_id:
                await repo.end_series(task.recurrence.series_id)
            event = events_pb2.TaskDeleted(user_id=user, task=task, end_series=request.end_series)
            event.delete_time.FromDatetime(now_utc())
            await _commit_change(conn, self.outbox, DELETED, task, event)
        return task_service_pb2.DeleteTaskResponse(task=task)

    async def ListTasks(
        self, request: task_service_pb2.ListTasksRequest, context: Context
    ) -> task_service_pb2.ListTasksResponse:
        user = current_user()
        page = domain.check_list_request(request, self.page_tokens, user)
        async with self.db.engine.connect() as conn:
            found, total, after = await TaskRepository(conn).list(user, request, page, now_utc())
        response = task_service_pb2.ListTasksResponse(tasks=found, total_size=total)
        if after is not None:
            response.next_page_token = self.page_tokens.issue(page.fingerprint, after)
        return response

    async def StreamTaskChanges(
        self, request: task_service_pb2.StreamTaskChangesRequest, context: Context
    ) -> AsyncIterator[task_service_pb2.StreamTaskChangesResponse]:
        user = current_user()
        resume_after = self.change_ids.read(user, request.resume_after) if request.resume_after else None
        # Registered before anything is read: a change committed after the read wakes it.
        subscriber = self.feed.subscribe(user)
        try:
            async with self.db.engine.connect() as conn:
                repo = TaskRepository(conn)
                last_seq = await repo.last_change_seq(user)
                first_kept = None
                if resume_after is not None and resume_after < last_seq:
                    first_kept = await repo.first_change_after(user, resume_after)
            start = domain.resume_point(resume_after, last_seq, first_kept, request.resume_after)
            subscriber.last_seq = start
            last_id = self.change_ids.issue(user, start)
            yield self._heartbeat(last_id)

            async def read_after(after: int, limit: int) -> list[tuple[int, task_service_pb2.TaskChange]]:
                async with self.db.engine.connect() as conn:
                    found = await TaskRepository(conn).changes_after(user, after, limit)
                domain.check_contiguous(after, [change.seq for change in found])
                return [(change.seq, self._change(user, change)) for change in found]

            beats = self.feed_settings.heartbeat_seconds
            async with contextlib.aclosing(
                follow(self.feed, subscriber, read_after, page=domain.REPLAY_PAGE, heartbeat_seconds=beats)
            ) as stream:
                async for item in stream:
                    if isinstance(item, Quiet):
                        yield self._heartbeat(last_id)
                    else:
                        yield task_service_pb2.StreamTaskChangesResponse(change=item)
                        last_id = item.change_id
        finally:
            self.feed.unsubscribe(subscriber)

    def _change(self, user: str, stored: StoredChange) -> task_service_pb2.TaskChange:
        change = task_service_pb2.TaskChange(
            change_id=self.change_ids.issue(user, stored.seq),
            kind=stored.kind,
            task=stored.task,
        )
        change.changed_at.FromDatetime(stored.changed_at)
        return change

    @staticmethod
    def _heartbeat(last_id: str) -> task_service_pb2.StreamTaskChangesResponse:
        heartbeat = task_service_pb2.TaskFeedHeartbeat(last_change_id=last_id)
        heartbeat.server_time.FromDatetime(now_utc())
        return task_service_pb2.StreamTaskChangesResponse(heartbeat=heartbeat)


class OccurrenceHandler:
    """Creates the occurrence an OccurrenceRequested asks for, once per (series, index)."""

    def __init__(self, db: Database, outbox: Outbox) -> None:
        self.db = db
        self.outbox = outbox

    async def __call__(self, event: DecodedEvent) -> None:
        request = event.message
        assert isinstance(request, events_pb2.OccurrenceRequested)
        problem = self._problem(request)
        async with self.db.transaction() as conn:
            if not await claim_event(conn, CONSUMER, event.id):
                return  # a redelivery: the effect is already there
            if problem:
                # A request that can never succeed is recorded as handled and
                # logged, instead of being retried forever.
                log.error("OccurrenceRequested rejected", extra={"event_id": event.id, "problem": problem})
                return
            template = task_pb2.Task()
            template.CopyFrom(request.template)
            template.due.CopyFrom(request.due)
            violations = Violations()
            checked = domain.checked_task(template, violations)
            if violations.items:
                log.error(
                    "OccurrenceRequested has an invalid template",
                    extra={"event_id": event.id, "violations": violations.items},
                )
                return
            repo = TaskRepository(conn)
            task = TaskServicer._new_task(request.user_id, checked)
            if not await repo.claim_occurrence(request.series_id, request.occurrence_index, task.task_id):
                return  # created before, or the series has ended
            task.recurrence.series_id = request.series_id
            task.recurrence.occurrence_index = request.occurrence_index
            if request.template.recurrence.HasField("series_start"):
                task.recurrence.series_start.CopyFrom(request.template.recurrence.series_start)
            await repo.insert(task)
            await _commit_change(
                conn, self.outbox, CREATED, task, events_pb2.TaskCreated(user_id=request.user_id, task=task)
            )
        # After the commit, so the line never tells of an occurrence that was rolled back. No title: user content.
        log.info(
            "occurrence created",
            extra={
                "series_id": request.series_id,
                "occurrence_index": request.occurrence_index,
                "task_id": task.task_id,
                "user_id": request.user_id,
            },
        )

    @staticmethod
    def _problem(request: events_pb2.OccurrenceRequested) -> str:
        if not request.user_id:
            return "no user_id"
        try:
            uuid.UUID(request.series_id)
        except ValueError:
            return "series_id is not a series id"
        if request.occurrence_index < 2:
            return "occurrence_index must be 2 or more (1 is the task that started the series)"
        if not request.HasField("due") or not request.HasField("template"):
            return "due and template are required"
        if not request.template.HasField("recurrence"):
            return "the template has no recurrence"
        return ""
