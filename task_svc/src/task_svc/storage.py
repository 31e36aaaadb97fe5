"""The task repository: tasks and their bookkeeping tables in the service's own database."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from google.protobuf import json_format
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from task_svc import domain
from todo_contracts.common.v1 import common_pb2
from todo_contracts.ids import new_id
from todo_contracts.task.v1 import task_pb2, task_service_pb2
from todo_kit import zoned

metadata = sa.MetaData()

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("task_id", pg.UUID(as_uuid=False), primary_key=True),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("priority", sa.SmallInteger, nullable=False),
    sa.Column("tags", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("due_local", sa.DateTime(timezone=False)),
    sa.Column("due_zone", sa.Text),
    sa.Column("due_at", sa.DateTime(timezone=True)),
    sa.Column("reminders", pg.JSONB, nullable=False),
    sa.Column("recurrence", pg.JSONB),
    sa.Column("series_id", pg.UUID(as_uuid=False)),
    sa.Column("occurrence_index", sa.Integer),
    sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("complete_time", sa.DateTime(timezone=True)),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("search", pg.TSVECTOR),
)
create_requests = sa.Table(
    "create_requests",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("client_request_id", sa.Text, primary_key=True),
    sa.Column("task_id", pg.UUID(as_uuid=False), nullable=False),
)
series_occurrences = sa.Table(
    "series_occurrences",
    metadata,
    sa.Column("series_id", pg.UUID(as_uuid=False), primary_key=True),
    sa.Column("occurrence_index", sa.Integer, primary_key=True),
    sa.Column("task_id", pg.UUID(as_uuid=False), nullable=False),
)
ended_series = sa.Table("ended_series", metadata, sa.Column("series_id", pg.UUID(as_uuid=False), primary_key=True))

_COLUMNS = [c for c in tasks.c if c.name != "search"]
_INSERT_TASK = sa.insert(tasks)


def _values(task: task_pb2.Task) -> dict[str, Any]:
    """The row of a task message."""
    due = zoned.from_proto(task.due) if task.HasField("due") else None
    rec = task.recurrence if task.HasField("recurrence") else None
    return {
        "task_id": task.task_id,
        "user_id": task.user_id,
        "title": task.title,
        "description": task.description,
        "status": task.status,
        "priority": task.priority,
        "tags": list(task.tags),
        "due_local": due.local if due else None,
        "due_zone": due.zone if due else None,
        "due_at": due.instant if due else None,
        "reminders": [json_format.MessageToDict(r) for r in task.reminders],
        "recurrence": json_format.MessageToDict(rec) if rec is not None else None,
        "series_id": rec.series_id if rec is not None and rec.series_id else None,
        "occurrence_index": rec.occurrence_index if rec is not None else None,
        "create_time": task.create_time.ToDatetime(tzinfo=UTC),
        "update_time": task.update_time.ToDatetime(tzinfo=UTC),
        "complete_time": task.complete_time.ToDatetime(tzinfo=UTC) if task.HasField("complete_time") else None,
        "version": task.version,
    }


def to_message(row: sa.Row[Any]) -> task_pb2.Task:
    """The task message of a row."""
    task = task_pb2.Task(
        task_id=row.task_id,
        user_id=row.user_id,
        title=row.title,
        description=row.description,
        status=row.status,
        priority=row.priority,
        tags=row.tags,
        version=row.version,
    )
    if row.due_local is not None:
        task.due.CopyFrom(zoned.ZonedTime(row.due_local, row.due_zone, row.due_at).to_proto())
    for rule in row.reminders:
        task.reminders.append(json_format.ParseDict(rule, task_pb2.ReminderRule()))
    if row.recurrence is not None:
        task.recurrence.CopyFrom(json_format.ParseDict(row.recurrence, task_pb2.Recurrence()))
    task.create_time.FromDatetime(row.create_time)
    task.update_time.FromDatetime(row.update_time)
    if row.complete_time is not None:
        task.complete_time.FromDatetime(row.complete_time)
    return task


class TaskRepository:
    """Reads and writes tasks inside the caller's transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def get(self, user_id: str, task_id: str, *, for_update: bool = False) -> task_pb2.Task | None:
        """The user's task, or None (also when it belongs to someone else)."""
        query = sa.select(*_COLUMNS).where(tasks.c.task_id == task_id, tasks.c.user_id == user_id)
        if for_update:
            query = query.with_for_update()
        row = (await self.conn.execute(query)).first()
        return to_message(row) if row is not None else None

    async def insert(self, task: task_pb2.Task) -> None:
        """Stores a new task."""
        # A plain INSERT with parameters compiles once and is reused.
        await self.conn.execute(_INSERT_TASK, _values(task))

    async def update(self, task: task_pb2.Task) -> None:
        """Stores a changed task (its version was already increased)."""
        values = _values(task)
        values.pop("task_id")
        await self.conn.execute(sa.update(tasks).where(tasks.c.task_id == task.task_id).values(**values))

    async def delete(self, task_id: str) -> None:
        """Removes a task."""
        await self.conn.execute(sa.delete(tasks).where(tasks.c.task_id == task_id))

    async def task_for_request(self, user_id: str, client_request_id: str) -> str | None:
        """The task an earlier create with this request id made, if any."""
        return await self.conn.scalar(
            sa.select(create_requests.c.task_id).where(
                create_requests.c.user_id == user_id, create_requests.c.client_request_id == client_request_id
            )
        )

    async def remember_request(self, user_id: str, client_request_id: str, task_id: str) -> bool:
        """Records the task of a request id; False if another create took the id first."""
        result = await self.conn.execute(
            pg.insert(create_requests)
            .values(user_id=user_id, client_request_id=client_request_id, task_id=task_id)
            .on_conflict_do_nothing()
            .returning(create_requests.c.task_id)
        )
        return result.first() is not None

    async def claim_occurrence(self, series_id: str, index: int, task_id: str) -> bool:
        """Reserves (series, index) for task_id; False if that occurrence exists or existed."""
        ended = await self.conn.scalar(sa.select(ended_series.c.series_id).where(ended_series.c.series_id == series_id))
        if ended is not None:
            return False
        result = await self.conn.execute(
            pg.insert(series_occurrences)
            .values(series_id=series_id, occurrence_index=index, task_id=task_id)
            .on_conflict_do_nothing()
            .returning(series_occurrences.c.task_id)
        )
        return result.first() is not None

    async def end_series(self, series_id: str) -> None:
        """Marks a series ended: no further occurrence will be created."""
        await self.conn.execute(pg.insert(ended_series).values(series_id=series_id).on_conflict_do_nothing())

    async def list(
        self, user_id: str, request: task_service_pb2.ListTasksRequest, page_size: int, offset: int, now: datetime
    ) -> tuple[list[task_pb2.Task], int]:
        """One page of the user's tasks matching request, and how many match in all."""
        conditions: list[sa.ColumnElement[bool]] = [tasks.c.user_id == user_id]
        if request.statuses:
            conditions.append(tasks.c.status.in_(list(request.statuses)))
        if request.priorities:
            wanted = {p or task_pb2.PRIORITY_NONE for p in request.priorities}
            conditions.append(tasks.c.priority.in_(sorted(wanted)))
        if request.tags_any:
            conditions.append(tasks.c.tags.overlap(_tags(request.tags_any)))
        if request.tags_all:
            conditions.append(tasks.c.tags.contains(_tags(request.tags_all)))
        if request.due_range.HasField("start_time"):
            conditions.append(tasks.c.due_at >= request.due_range.start_time.ToDatetime(tzinfo=UTC))
        if request.due_range.HasField("end_time"):
            conditions.append(tasks.c.due_at < request.due_range.end_time.ToDatetime(tzinfo=UTC))
        if request.overdue:
            conditions.append(tasks.c.status == task_pb2.TASK_STATUS_OPEN)
            conditions.append(tasks.c.due_at < now)
        if request.series_id:
            conditions.append(tasks.c.series_id == request.series_id)
        words = domain.search_words(request.query)
        ts_query = None
        if request.query.strip() and not words:
            conditions.append(sa.false())  # only punctuation: nothing can match
        if words:
            # Every word must match; the last may be a prefix (search as you type).
            expression = " & ".join(f"{w}:*" if i == len(words) - 1 else w for i, w in enumerate(words))
            # Both queries are scalar subqueries so PostgreSQL computes each once
            # per statement: in a generic prepared plan a plain call would be
            # computed again for every row it ranks.
            ts_query = sa.select(
                sa.func.to_tsquery(sa.literal_column("'english'::regconfig"), expression)
            ).scalar_subquery()
            owner_query = sa.select(
                sa.func.owner_scoped_query(user_id, sa.literal(words, pg.ARRAY(sa.Text)))
            ).scalar_subquery()
            # The owner-scoped index finds this user's tasks with these lexemes
            # without reading other users' (migration 0002); the match on
            # `search` keeps exactly the meaning of ts_query (phrases included).
            conditions.append(sa.func.owner_scoped_search(tasks.c.user_id, tasks.c.search).op("@@")(owner_query))
            conditions.append(tasks.c.search.op("@@")(ts_query))
        where = sa.and_(*conditions)
        ordering = _ordering(request, ts_query)
        if ts_query is None:
            # Listings without words can walk an index in the requested order and
            # stop after the page; counting them is a query of its own.
            total = await self.conn.scalar(sa.select(sa.func.count()).select_from(tasks).where(where))
            query = sa.select(*_COLUMNS).where(where).order_by(*ordering).limit(page_size).offset(offset)
            rows = (await self.conn.execute(query)).all()
            return [to_message(r) for r in rows], int(total or 0)
        # Counting a search's matches visits every one of them anyway (and ranking
        # does too), so the page comes from that same pass: it carries only ids
        # and the count until the page is known, then reads the page's rows by id.
        page = (
            sa.select(tasks.c.task_id, sa.func.count().over().label("total_size"))
            .where(where)
            .order_by(*ordering)
            .limit(page_size)
            .offset(offset)
            .subquery("page")
        )
        query = (
            sa.select(*_COLUMNS, page.c.total_size)
            .join_from(page, tasks, page.c.task_id == tasks.c.task_id)
            .order_by(*ordering)
        )
        rows = (await self.conn.execute(query)).all()
        if rows:
            return [to_message(r) for r in rows], int(rows[0].total_size)
        if offset == 0:
            return [], 0
        # A page past the last match carries no count with it.
        total = await self.conn.scalar(sa.select(sa.func.count()).select_from(tasks).where(where))
        return [], int(total or 0)


def _tags(values: Sequence[str]) -> list[str]:
    return [t.strip().lower() for t in values]


def _ordering(request: task_service_pb2.ListTasksRequest, ts_query: Any) -> list[Any]:
    order_by = request.order_by
    if order_by == task_service_pb2.TASK_ORDER_BY_UNSPECIFIED:
        order_by = (
            task_service_pb2.TASK_ORDER_BY_RELEVANCE
            if ts_query is not None
            else task_service_pb2.TASK_ORDER_BY_DUE_TIME
        )
    column: Any
    default_descending = order_by in (
        task_service_pb2.TASK_ORDER_BY_RELEVANCE,
        task_service_pb2.TASK_ORDER_BY_PRIORITY,
        task_service_pb2.TASK_ORDER_BY_CREATE_TIME,
        task_service_pb2.TASK_ORDER_BY_UPDATE_TIME,
    )
    if order_by == task_service_pb2.TASK_ORDER_BY_RELEVANCE:
        column = sa.func.ts_rank_cd(tasks.c.search, ts_query)
    elif order_by == task_service_pb2.TASK_ORDER_BY_PRIORITY:
        column = tasks.c.priority
    elif order_by == task_service_pb2.TASK_ORDER_BY_CREATE_TIME:
        column = tasks.c.create_time
    elif order_by == task_service_pb2.TASK_ORDER_BY_UPDATE_TIME:
        column = tasks.c.update_time
    elif order_by == task_service_pb2.TASK_ORDER_BY_TITLE:
        column = sa.func.lower(tasks.c.title)
    else:
        column = tasks.c.due_at
    descending = (
        default_descending
        if request.sort_order == common_pb2.SORT_ORDER_UNSPECIFIED
        else request.sort_order == common_pb2.SORT_ORDER_DESCENDING
    )
    primary = column.desc() if descending else column.asc()
    # Tasks without a due time come last either way.
    primary = primary.nulls_last()
    return [primary, tasks.c.task_id.desc() if descending else tasks.c.task_id.asc()]


def new_task_id() -> str:
    """A new task id (UUIDv7: ids sort by creation)."""
    return new_id()
