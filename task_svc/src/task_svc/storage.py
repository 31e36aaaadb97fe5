"""The task repository: tasks and their bookkeeping tables in the service's own database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from google.protobuf import json_format
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from task_svc import domain
from todo_contracts.ids import new_id
from todo_contracts.task.v1 import task_pb2, task_service_pb2
from todo_kit import paging, zoned
from todo_kit.db import Database, delete_in_batches
from todo_kit.livefeed import announce

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
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)
series_occurrences = sa.Table(
    "series_occurrences",
    metadata,
    sa.Column("series_id", pg.UUID(as_uuid=False), primary_key=True),
    sa.Column("occurrence_index", sa.Integer, primary_key=True),
    sa.Column("task_id", pg.UUID(as_uuid=False), nullable=False),
)
ended_series = sa.Table("ended_series", metadata, sa.Column("series_id", pg.UUID(as_uuid=False), primary_key=True))
change_counters = sa.Table(
    "change_counters",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
)
task_changes = sa.Table(
    "task_changes",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("kind", sa.SmallInteger, nullable=False),
    sa.Column("task_id", pg.UUID(as_uuid=False), nullable=False),
    sa.Column("task", sa.LargeBinary, nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
)

TASK_CHANGES_CHANNEL = "task_svc_changes"
"""The PostgreSQL NOTIFY channel of committed task changes; the payload is "<seq> <user id>"."""

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


@dataclass(frozen=True)
class StoredChange:
    """One recorded change of a user's task: its number in the user's feed, what happened, the task after it."""

    seq: int
    kind: task_service_pb2.TaskChangeKind.ValueType
    task: task_pb2.Task
    changed_at: datetime


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

    async def record_change(self, kind: task_service_pb2.TaskChangeKind.ValueType, task: task_pb2.Task) -> int:
        """Records a change of the task's owner's feed and announces it at commit; its number in that feed.

        Call it last in the transaction: it holds the user's counter until
        commit, so the user's changes commit in the order of their numbers.
        """
        user_id = task.user_id
        stmt = pg.insert(change_counters).values(user_id=user_id, last_seq=1)
        counted = stmt.on_conflict_do_update(
            index_elements=[change_counters.c.user_id], set_={"last_seq": change_counters.c.last_seq + 1}
        ).returning(change_counters.c.last_seq)
        seq = int((await self.conn.execute(counted)).scalar_one())
        await self.conn.execute(
            sa.insert(task_changes).values(
                user_id=user_id,
                seq=seq,
                kind=kind,
                task_id=task.task_id,
                task=task.SerializeToString(),
                # The clock once the counter is held: close to the commit, and in the order of the numbers.
                changed_at=sa.func.clock_timestamp(),
            )
        )
        await announce(self.conn, TASK_CHANGES_CHANNEL, user_id, seq)
        return seq

    async def last_change_seq(self, user_id: str) -> int:
        """The number of the user's newest committed change (0 when there was none), pruned or not."""
        value = await self.conn.scalar(
            sa.select(change_counters.c.last_seq).where(change_counters.c.user_id == user_id)
        )
        return int(value or 0)

    async def changes_after(self, user_id: str, seq: int, limit: int) -> list[StoredChange]:
        """Up to limit of the user's kept changes numbered after seq, oldest first."""
        rows = await self.conn.execute(
            sa.select(task_changes.c.seq, task_changes.c.kind, task_changes.c.task, task_changes.c.changed_at)
            .where(task_changes.c.user_id == user_id, task_changes.c.seq > seq)
            .order_by(task_changes.c.seq)
            .limit(limit)
        )
        return [
            StoredChange(
                int(r.seq),
                task_service_pb2.TaskChangeKind.ValueType(r.kind),
                task_pb2.Task.FromString(bytes(r.task)),
                r.changed_at,
            )
            for r in rows
        ]

    async def first_change_after(self, user_id: str, seq: int) -> int | None:
        """The number of the user's oldest kept change after seq, if any."""
        value = await self.conn.scalar(
            sa.select(sa.func.min(task_changes.c.seq)).where(
                task_changes.c.user_id == user_id, task_changes.c.seq > seq
            )
        )
        return int(value) if value is not None else None

    async def list(
        self, user_id: str, request: task_service_pb2.ListTasksRequest, page: domain.ListingPage, now: datetime
    ) -> tuple[list[task_pb2.Task], int, paging.Position | None]:
        """One page of the user's tasks matching request, how many match in all, and where the next page starts.

        Pages are keyset pages: the next one starts strictly after (sort key,
        task id) of this one's last task, so tasks added, changed or removed in
        between never make a task that stays in the listing come twice or not
        at all. The position is None on the last page.
        """
        conditions: list[sa.ColumnElement[bool]] = [tasks.c.user_id == user_id]
        statuses = set(request.statuses)
        if not statuses or statuses == {task_pb2.TASK_STATUS_OPEN}:
            conditions.append(_IS_OPEN)  # a todo list shows what is still to do unless asked otherwise
        elif statuses == {task_pb2.TASK_STATUS_COMPLETED}:
            conditions.append(tasks.c.status == task_pb2.TASK_STATUS_COMPLETED)
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
            conditions.append(_IS_OPEN)
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
        key = _ordering(page, ts_query)
        if ts_query is None:
            # Listings without words can walk an index in the requested order and
            # stop after the page; counting them is a query of its own.
            total = await self.conn.scalar(sa.select(sa.func.count()).select_from(tasks).where(where))
            rows = await self._rows_in_order(where, key, page)
            return _page_of(rows, page), int(total or 0), _next_position(rows, page)
        # Counting a search's matches visits every one of them anyway (and ranking
        # does too), so the page comes from that same pass: the count is taken
        # over every match before the page's position is applied, and the pass
        # carries only ids, sort keys and the count until the page is known; then
        # the page's rows are read by id.
        ranked = sa.select(
            tasks.c.task_id, key.value.label("sort_key"), sa.func.count().over().label("total_size")
        ).where(where)
        matches = ranked.subquery("matches")
        after = [] if page.after is None else [_after(key, matches.c.sort_key, matches.c.task_id, page.after)]
        ids = (
            sa.select(matches)
            .where(*after)
            .order_by(*_order_by(key, matches.c.sort_key, matches.c.task_id))
            .limit(page.size + 1)
            .subquery("page")
        )
        query = (
            sa.select(*_COLUMNS, ids.c.sort_key, ids.c.total_size)
            .join_from(ids, tasks, ids.c.task_id == tasks.c.task_id)
            .order_by(*_order_by(key, ids.c.sort_key, ids.c.task_id))
        )
        rows = (await self.conn.execute(query)).all()
        if rows:
            return _page_of(rows, page), int(rows[0].total_size), _next_position(rows, page)
        if page.after is None:
            return [], 0, None
        # A page after the last match carries no count with it.
        total = await self.conn.scalar(sa.select(sa.func.count()).select_from(tasks).where(where))
        return [], int(total or 0), None

    async def _rows_in_order(
        self, where: sa.ColumnElement[bool], key: _SortKey, page: domain.ListingPage
    ) -> Sequence[Any]:
        """Up to one more than a page of rows after page.after, each part read in the order of an index."""
        limit = page.size + 1
        select = sa.select(*_COLUMNS, key.value.label("sort_key")).where(where)
        ids_after = _ids_after(key, tasks.c.task_id, page.after)
        if not key.nullable:
            bound = [] if page.after is None else [_row_after(key, key.value, tasks.c.task_id, page.after)]
            query = select.where(*bound).order_by(*_order_by(key, key.value, tasks.c.task_id)).limit(limit)
            return list((await self.conn.execute(query)).all())
        # Tasks without a due time come after all others in both directions:
        # the dated ones are one walk (in the order of the due time index), the
        # undated ones another (by task id), and a page may take from both.
        rows: list[Any] = []
        if page.after is None or page.after[0] is not None:
            bound = [] if page.after is None else [_row_after(key, key.value, tasks.c.task_id, page.after)]
            direction = sa.desc if key.descending else sa.asc
            dated = (
                select.where(key.value.is_not(None), *bound)
                .order_by(direction(key.value), direction(tasks.c.task_id))
                .limit(limit)
            )
            rows += (await self.conn.execute(dated)).all()
            ids_after = None  # every undated task comes after a dated one
        if len(rows) < limit:
            undated = (
                select.where(key.value.is_(None), *([] if ids_after is None else [ids_after]))
                .order_by(tasks.c.task_id.desc() if key.descending else tasks.c.task_id.asc())
                .limit(limit - len(rows))
            )
            rows += (await self.conn.execute(undated)).all()
        return rows


_IS_OPEN = tasks.c.status == sa.literal_column(str(int(task_pb2.TASK_STATUS_OPEN)), sa.SmallInteger)
"""Open tasks, as a constant in the SQL text so the partial index of open tasks applies in every plan."""


def _tags(values: Sequence[str]) -> list[str]:
    return [t.strip().lower() for t in values]


@dataclass(frozen=True)
class _SortKey:
    """What a listing sorts by: an expression on tasks, its SQL type, its direction, and whether it can be NULL."""

    value: Any
    type_: Any
    descending: bool
    nullable: bool


def _ordering(page: domain.ListingPage, ts_query: Any) -> _SortKey:
    order_by = page.order_by
    timestamp = sa.DateTime(timezone=True)
    if order_by == task_service_pb2.TASK_ORDER_BY_RELEVANCE and ts_query is not None:
        # A rank is a function of the task's text and the query: the same task
        # keeps its place between pages unless its text changes meanwhile.
        return _SortKey(sa.func.ts_rank_cd(tasks.c.search, ts_query, type_=sa.REAL), sa.REAL, page.descending, False)
    if order_by == task_service_pb2.TASK_ORDER_BY_PRIORITY:
        return _SortKey(tasks.c.priority, sa.SmallInteger(), page.descending, False)
    if order_by == task_service_pb2.TASK_ORDER_BY_CREATE_TIME:
        return _SortKey(tasks.c.create_time, timestamp, page.descending, False)
    if order_by == task_service_pb2.TASK_ORDER_BY_UPDATE_TIME:
        return _SortKey(tasks.c.update_time, timestamp, page.descending, False)
    if order_by == task_service_pb2.TASK_ORDER_BY_TITLE:
        return _SortKey(sa.func.lower(tasks.c.title, type_=sa.Text), sa.Text(), page.descending, False)
    return _SortKey(tasks.c.due_at, timestamp, page.descending, True)


def _order_by(key: _SortKey, value: Any, task_id: Any) -> list[Any]:
    """ORDER BY value then task id, in the key's direction; NULLs (no due time) last either way."""
    if key.descending:
        first, second = value.desc(), task_id.desc()
    else:
        first, second = value.asc(), task_id.asc()
    return [first.nulls_last() if key.nullable else first, second]


def _row_after(key: _SortKey, value: Any, task_id: Any, position: paging.Position) -> sa.ColumnElement[bool]:
    """(value, task id) strictly after a position with a non-NULL sort key, as one row comparison (an index bound)."""
    row = sa.tuple_(value, task_id)
    bound = sa.tuple_(sa.literal(position[0], key.type_), sa.literal(position[1], pg.UUID(as_uuid=False)))
    return row < bound if key.descending else row > bound


def _ids_after(key: _SortKey, task_id: Any, position: paging.Position | None) -> sa.ColumnElement[bool] | None:
    """Task ids strictly after the position's, in the key's direction (None for the first page)."""
    if position is None:
        return None
    bound = sa.literal(position[1], pg.UUID(as_uuid=False))
    after: sa.ColumnElement[bool] = task_id < bound if key.descending else task_id > bound
    return after


def _after(key: _SortKey, value: Any, task_id: Any, position: paging.Position) -> sa.ColumnElement[bool]:
    """Rows strictly after a position in the order of _order_by, NULL sort keys (coming last) included."""
    if position[0] is None:
        # The position is among the undated tasks: only undated ones after it remain.
        ids_after = _ids_after(key, task_id, position)
        assert ids_after is not None
        return sa.and_(value.is_(None), ids_after)
    after = _row_after(key, value, task_id, position)
    return sa.or_(after, value.is_(None)) if key.nullable else after


def _page_of(rows: Sequence[Any], page: domain.ListingPage) -> list[task_pb2.Task]:
    return [to_message(r) for r in rows[: page.size]]


def _next_position(rows: Sequence[Any], page: domain.ListingPage) -> paging.Position | None:
    """Where the next page starts: after the page's last row, if there is a row after it."""
    if len(rows) <= page.size:
        return None
    last = rows[page.size - 1]
    return (last.sort_key, str(last.task_id))


async def prune_create_requests(db: Database, before: datetime) -> int:
    """Forgets client request ids first used before `before`; a retry after that creates anew."""
    return await delete_in_batches(
        db,
        create_requests,
        [create_requests.c.user_id, create_requests.c.client_request_id],
        create_requests.c.created_at < before,
    )


async def prune_changes(db: Database, before: datetime) -> int:
    """Deletes feed changes recorded before `before` (the counters stay, so their ids stay recognisable)."""
    return await delete_in_batches(
        db,
        task_changes,
        [task_changes.c.user_id, task_changes.c.seq],
        task_changes.c.changed_at < before,
        order_by=[task_changes.c.changed_at],
    )


def new_task_id() -> str:
    """A new task id (UUIDv7: ids sort by creation)."""
    return new_id()
