"""The transactional outbox and the idempotent inbox.

A state change and the events it causes commit in one transaction (add_event
writes the encoded CloudEvent to the service's outbox table); OutboxRelay then
publishes outbox rows in order and marks them published. A crash between
commit and publish only delays the event; a crash between publish and marking
publishes it again, which consumers absorb: each stores the ids of the events
it processed in the same transaction as their effect (claim_event).
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from google.protobuf.message import Message
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from todo_contracts import envelope, topics
from todo_kit.db import Database, delete_in_batches
from todo_kit.request_context import current_traceparent
from todo_kit.supervision import wait_for_wake

log = logging.getLogger(__name__)

metadata = sa.MetaData()

outbox_table = sa.Table(
    "outbox",
    metadata,
    sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("event_id", sa.Text, nullable=False, unique=True),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("partition_key", sa.Text, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("published_at", sa.DateTime(timezone=True)),
)

processed_events_table = sa.Table(
    "processed_events",
    metadata,
    sa.Column("consumer", sa.Text, primary_key=True),
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

AFTER_COMMIT = "todo_after_commit"
_INSERT_OUTBOX = sa.insert(outbox_table)


def create_messaging_tables() -> None:
    """Creates the outbox and inbox tables; call from a service's first Alembic migration."""
    from alembic import op

    op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", sa.Text, nullable=False, unique=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("partition_key", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("published_at", sa.DateTime(timezone=True)),
    )
    # The relay reads only what is still to be published, in order.
    op.create_index("outbox_unpublished", "outbox", ["seq"], postgresql_where=sa.text("published_at IS NULL"))
    op.create_table(
        "processed_events",
        sa.Column("consumer", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def create_messaging_indexes() -> None:
    """Indexes what pruning filters on (publish and process times).

    Call it from a service's migration after create_messaging_tables (in a new
    service's first migration, or in a later one of a service that had none).
    """
    from alembic import op

    op.create_index(
        "outbox_published_at", "outbox", ["published_at"], postgresql_where=sa.text("published_at IS NOT NULL")
    )
    op.create_index("processed_events_processed_at", "processed_events", ["processed_at"])


def after_commit(conn: AsyncConnection, callback: Callable[[], None]) -> None:
    """Runs callback once the transaction of conn commits (see Database.transaction)."""
    conn.info.setdefault(AFTER_COMMIT, []).append(callback)


@dataclass(frozen=True)
class OutgoingEvent:
    """One encoded event ready to publish."""

    event_id: str
    topic: str
    partition_key: str
    event_type: str
    payload: bytes


class Outbox:
    """Writes events into a service's outbox inside the caller's transaction."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.wake = asyncio.Event()

    async def add_event(
        self,
        conn: AsyncConnection,
        event: Message,
        *,
        subject: str = "",
        traceparent: str | None = None,
        time: datetime | None = None,
    ) -> str:
        """Adds event to the outbox in conn's transaction; returns its CloudEvent id."""
        return (await self.add_events(conn, [(event, subject)], traceparent=traceparent, time=time))[0]

    async def add_events(
        self,
        conn: AsyncConnection,
        events: Sequence[tuple[Message, str]],
        *,
        traceparent: str | None = None,
        time: datetime | None = None,
    ) -> list[str]:
        """Adds (event, subject) pairs in one statement; returns their CloudEvent ids.

        The trace context defaults to the current request's or event's, so an
        event carries the trace of the command that caused it.
        """
        if traceparent is None:
            traceparent = current_traceparent()
        rows: list[dict[str, Any]] = []
        for event, subject in events:
            ce = envelope.wrap(event, source=self.source, subject=subject, traceparent=traceparent, time=time)
            rows.append(
                {
                    "event_id": ce.id,
                    "topic": topics.topic_of(event).name,
                    "partition_key": ce.attributes[envelope.ATTR_PARTITION_KEY].ce_string,
                    "event_type": ce.type,
                    "payload": ce.SerializeToString(deterministic=True),
                }
            )
        if rows:
            await conn.execute(_INSERT_OUTBOX, rows)
            after_commit(conn, self.wake.set)
        return [r["event_id"] for r in rows]


async def claim_event(conn: AsyncConnection, consumer: str, event_id: str) -> bool:
    """Records that consumer processed event_id, in conn's transaction.

    Returns False if it already had: the caller then skips the effect, so a
    redelivered event has no second effect.
    """
    inserted = await conn.execute(
        pg.insert(processed_events_table)
        .values(consumer=consumer, event_id=event_id)
        .on_conflict_do_nothing()
        .returning(processed_events_table.c.event_id)
    )
    return inserted.first() is not None


class Publisher(Protocol):
    """What the relay needs from a runtime: publish encoded events in order."""

    async def publish(self, events: Sequence[OutgoingEvent]) -> None:
        """Publishes events; returns only when every one was accepted."""


async def prune_messaging(db: Database, *, published_before: datetime, processed_before: datetime) -> tuple[int, int]:
    """Deletes outbox rows published before published_before and inbox ids recorded before processed_before.

    The inbox must remember an event id for longer than the event can still be
    delivered again, so its cut-off is the earlier one.
    """
    outbox_rows = await delete_in_batches(
        db,
        outbox_table,
        [outbox_table.c.seq],
        sa.and_(outbox_table.c.published_at.is_not(None), outbox_table.c.published_at < published_before),
    )
    inbox_rows = await delete_in_batches(
        db,
        processed_events_table,
        [processed_events_table.c.consumer, processed_events_table.c.event_id],
        processed_events_table.c.processed_at < processed_before,
    )
    return outbox_rows, inbox_rows


class OutboxRelay:
    """Publishes a service's outbox rows in order and marks them published.

    One relay works at a time per database (an advisory lock), so events of a
    partition key leave in the order they were committed even with replicas.
    """

    BATCH = 500

    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        publisher: Publisher,
        *,
        poll_interval: float = 1.0,
        gather_delay: float = 0.005,
    ) -> None:
        self.db = db
        self.gather_delay = gather_delay
        self.outbox = outbox
        self.publisher = publisher
        self.poll_interval = poll_interval
        self._lock_key = zlib.crc32(f"outbox-relay:{outbox.source}".encode())

    async def publish_pending(self) -> int:
        """Publishes one batch of unpublished rows; returns how many were published."""
        async with self.db.transaction() as conn:
            got_lock = await conn.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(self._lock_key)))
            if not got_lock:
                return 0
            rows = (
                await conn.execute(
                    sa.select(outbox_table)
                    .where(outbox_table.c.published_at.is_(None))
                    .order_by(outbox_table.c.seq)
                    .limit(self.BATCH)
                )
            ).all()
            if not rows:
                return 0
            events = [OutgoingEvent(r.event_id, r.topic, r.partition_key, r.event_type, bytes(r.payload)) for r in rows]
            await self.publisher.publish(events)
            await conn.execute(
                sa.update(outbox_table)
                .where(outbox_table.c.seq.in_([r.seq for r in rows]))
                .values(published_at=sa.func.now())
            )
            return len(rows)

    async def run(self) -> None:
        """Publishes until cancelled; wakes on new commits, polls as a fallback.

        A failure (database or broker unavailable) ends it: the host's
        supervisor starts it again after a backoff and reports the unit
        NOT_SERVING meanwhile. Unpublished rows stay and go out in order later.
        """
        while True:
            self.outbox.wake.clear()
            published = await self.publish_pending()
            if published == self.BATCH:
                continue  # more are waiting
            await wait_for_wake(self.outbox.wake, self.poll_interval)
            # Let commits arriving together share one batch: a few milliseconds
            # of latency buy far fewer round trips under load.
            await asyncio.sleep(self.gather_delay)
