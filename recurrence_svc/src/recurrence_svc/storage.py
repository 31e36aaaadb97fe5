"""Series state and requested occurrences in the recurrence engine's own database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from todo_contracts.task.v1 import events_pb2
from todo_kit.db import Database, delete_in_batches

PRUNE_BATCH = 1000
"""Rows deleted per transaction when pruning, so no prune holds locks for long."""

metadata = sa.MetaData()
series = sa.Table(
    "series",
    metadata,
    sa.Column("series_id", pg.UUID(as_uuid=False), primary_key=True),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("end_reason", sa.Text),
    sa.Column("ended_at", sa.DateTime(timezone=True)),
    sa.Index("series_ended_at", "ended_at", postgresql_where=sa.text("ended_at IS NOT NULL")),
)
requested = sa.Table(
    "requested_occurrences",
    metadata,
    sa.Column("series_id", pg.UUID(as_uuid=False), primary_key=True),
    sa.Column("occurrence_index", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("request", sa.LargeBinary, nullable=False),
    sa.Column("publish_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True)),
    sa.Index(
        "requested_occurrences_published_at", "published_at", postgresql_where=sa.text("published_at IS NOT NULL")
    ),
)


@dataclass(frozen=True)
class PendingRequest:
    """An occurrence request waiting for its lead time."""

    series_id: str
    index: int
    request: events_pb2.OccurrenceRequested
    published: bool


class SeriesRepository:
    """Reads and writes series state inside the caller's transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def lock_series(self, series_id: str, user_id: str) -> str | None:
        """Makes sure the series is known and locks it; returns why it ended, or None while it runs."""
        await self.conn.execute(pg.insert(series).values(series_id=series_id, user_id=user_id).on_conflict_do_nothing())
        return await self.conn.scalar(
            sa.select(series.c.end_reason).where(series.c.series_id == series_id).with_for_update()
        )

    async def end(self, series_id: str, user_id: str, reason: str, now: datetime) -> None:
        """Marks the series ended (the first reason stays)."""
        await self.conn.execute(
            pg.insert(series)
            .values(series_id=series_id, user_id=user_id, end_reason=reason, ended_at=now)
            .on_conflict_do_update(
                index_elements=[series.c.series_id],
                set_={"end_reason": sa.func.coalesce(series.c.end_reason, reason),
                      "ended_at": sa.func.coalesce(series.c.ended_at, now)},
            )
        )  # fmt: skip

    async def add_request(
        self, request: events_pb2.OccurrenceRequested, due_at: datetime, publish_at: datetime, published: bool
    ) -> bool:
        """Records that occurrence (series, index) was asked for; False if it already was."""
        result = await self.conn.execute(
            pg.insert(requested)
            .values(
                series_id=request.series_id,
                occurrence_index=request.occurrence_index,
                user_id=request.user_id,
                due_at=due_at,
                request=request.SerializeToString(),
                publish_at=publish_at,
                published_at=sa.func.now() if published else None,
            )
            .on_conflict_do_nothing()
            .returning(requested.c.series_id)
        )
        return result.first() is not None

    async def pending(self, series_id: str, index: int) -> PendingRequest | None:
        """The request for (series, index), locked, if it was recorded."""
        row = (
            await self.conn.execute(
                sa.select(requested.c.request, requested.c.published_at)
                .where(requested.c.series_id == series_id, requested.c.occurrence_index == index)
                .with_for_update()
            )
        ).first()
        if row is None:
            return None
        message = events_pb2.OccurrenceRequested.FromString(row.request)
        return PendingRequest(series_id, index, message, row.published_at is not None)

    async def mark_published(self, series_id: str, index: int) -> None:
        """Notes that the request left through the outbox."""
        await self.conn.execute(
            sa.update(requested)
            .where(requested.c.series_id == series_id, requested.c.occurrence_index == index)
            .values(published_at=sa.func.now())
        )

    async def unpublished_of(self, series_id: str) -> list[int]:
        """Indexes of requests of the series still waiting for their lead time."""
        rows = await self.conn.execute(
            sa.select(requested.c.occurrence_index).where(
                requested.c.series_id == series_id, requested.c.published_at.is_(None)
            )
        )
        return [r.occurrence_index for r in rows]


async def prune_requests(db: Database, before: datetime, *, batch: int = PRUNE_BATCH) -> int:
    """Deletes requested occurrences published before the cut-off, and waiting ones of series deleted before it.

    A repeated completion after that asks again, and the task service's own
    record of the occurrences it made absorbs it. Returns how many rows went.
    """
    deleted_series = sa.select(series.c.series_id).where(series.c.end_reason == "deleted", series.c.ended_at < before)
    old = sa.or_(
        sa.and_(requested.c.published_at.is_not(None), requested.c.published_at < before),
        sa.and_(requested.c.published_at.is_(None), requested.c.series_id.in_(deleted_series)),
    )
    key = [requested.c.series_id, requested.c.occurrence_index]
    return await delete_in_batches(db, requested, key, old, batch=batch)


async def prune_series(db: Database, before: datetime, *, batch: int = PRUNE_BATCH) -> int:
    """Deletes series that ended before the cut-off and have no requested occurrence left; returns how many."""
    has_requests = sa.exists().where(requested.c.series_id == series.c.series_id)
    old = sa.and_(series.c.ended_at.is_not(None), series.c.ended_at < before, ~has_requests)
    return await delete_in_batches(db, series, [series.c.series_id], old, batch=batch)
