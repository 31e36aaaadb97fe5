"""The embedded runtime: every unit in one process, on one PostgreSQL server.

Events: publish appends to an event log table (the embedded stand-in for a
Kafka topic, in the runtime's own database); one dispatcher per subscription
reads it in order from a stored position and hands each event to the unit,
the events of one partition key (one user) in order and different keys' at
once, as a Kafka consumer of several partitions would.
Appends to a topic are serialized inside the publishing transaction (a
transaction-level advisory lock per topic), so a topic's sequence numbers
become visible in order and a dispatcher reading "seq > position" never passes
over an event that commits late. Delivery is at least once: a crash after the
handler committed and before the position moved redelivers, which the unit's
inbox absorbs. A failing handler is retried with capped exponential backoff for
a long time (TODO_EVENT_RETRY_SECONDS); only an event that can never succeed
(undecodable, unknown type, dropped by its handler) is dead-lettered at once.
Dead letters can be listed, replayed and dropped (python -m todo_kit.deadletters).

Jobs: rows in a jobs table in the runtime's database (todo_kit.runtime.jobstore,
shared with the Kafka runtime), fired by a timer that sleeps exactly until the
earliest due time (woken early when a job is scheduled). Due jobs are claimed
with a lease (FOR UPDATE SKIP LOCKED), so any number of hosts sharing the
database fire each job once; a job is deleted only after its handler
succeeded, so delivery is at least once, and a job that came due while the
process was down fires as soon as it is back. Each job handler is a lane with
its own number of jobs in flight, and a lane claims only as many jobs as it
has free places: slow handlers (a webhook that times out) never delay another
handler's jobs (reminders), and a claimed job never waits for a place while
its lease runs out.

Commands: gRPC over loopback to the one server that hosts every unit.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from todo_contracts import topics
from todo_kit.commands import command_channel
from todo_kit.db import Database, delete_in_batches
from todo_kit.messaging import OutgoingEvent
from todo_kit.runtime.delivery import Undelivered, deliver
from todo_kit.runtime.jobstore import JOB_LANE_SIZE, JobStore, create_job_table, jobs
from todo_kit.runtime.port import (
    JobHandler,
    JobOptions,
    Subscription,
    UnitRuntime,
)
from todo_kit.supervision import Supervisor, wait_for_wake

__all__ = ["JOB_LANE_SIZE", "EmbeddedRuntime", "dead_letters", "event_log", "jobs"]

log = logging.getLogger(__name__)

metadata = sa.MetaData()
event_log = sa.Table(
    "event_log",
    metadata,
    sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("partition_key", sa.Text, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("event_log_topic_seq", "topic", "seq"),
)
consumer_positions = sa.Table(
    "consumer_positions",
    metadata,
    sa.Column("consumer", sa.Text, primary_key=True),
    sa.Column("topic", sa.Text, primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
)
dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("consumer", sa.Text, nullable=False),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("event_type", sa.Text),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("replay_requested_at", sa.DateTime(timezone=True)),
)

# Columns and indexes added after the first release: create_all does not alter
# existing tables, so a data folder made by an older version gets them here.
_UPGRADES = (
    "ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS event_type text",
    "ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS replay_requested_at timestamptz",
    "CREATE INDEX IF NOT EXISTS event_log_published_at ON event_log (published_at)",
    "CREATE INDEX IF NOT EXISTS dead_letters_failed_at ON dead_letters (failed_at)",
    "CREATE INDEX IF NOT EXISTS dead_letters_replay ON dead_letters (consumer, topic, id)"
    " WHERE replay_requested_at IS NOT NULL",
)

_KNOWN_TYPES = frozenset(topics.event_types())

DISPATCH_KEYS_AT_ONCE = 16
"""How many partition keys (users) one consumer handles at once; each key's events stay in order."""
REPLAY_BATCH = 100
REPLAY_CHECK_INTERVAL = 5.0
"""Seconds between two looks of a dispatcher for dead letters an operator asked to replay."""


async def _ignore_health(down: frozenset[str]) -> None:
    return None


def topic_lock_key(topic: str) -> int:
    """The advisory lock that serializes appends to a topic."""
    return zlib.crc32(f"event-log:{topic}".encode())


@dataclass
class _Consumer:
    app_id: str
    subscription: Subscription

    @property
    def name(self) -> str:
        return self.app_id


class EmbeddedRuntime:
    """The runtime port for units hosted in one process."""

    def __init__(
        self,
        db: Database,
        server_address: str,
        *,
        retry_for: float = 6 * 3600,
        max_retry_delay: float = 30.0,
    ) -> None:
        self.db = db
        self.server_address = server_address
        self.retry_for = retry_for
        self.max_retry_delay = max_retry_delay
        self._consumers: list[_Consumer] = []
        self.job_store = JobStore(db)
        self._topic_wakes: dict[str, list[asyncio.Event]] = defaultdict(list)
        self._channel: grpc.aio.Channel | None = None
        self._own_supervisor: Supervisor | None = None

    async def create_schema(self) -> None:
        """Creates the runtime's tables if they do not exist.

        This schema belongs to the embedded host itself, not to a service, and
        only ever grows (tables, columns, indexes), so create-if-missing is its
        whole migration.
        """
        async with self.db.engine.begin() as conn:
            # Two hosts starting on one database at once must not race on CREATE.
            await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(zlib.crc32(b"embedded-runtime-schema"))))
            await conn.run_sync(metadata.create_all)
            for statement in _UPGRADES:
                await conn.execute(sa.text(statement))
        await create_job_table(self.db)

    def for_unit(self, app_id: str) -> UnitRuntime:
        """The port bound to one unit."""
        return UnitRuntime(self, app_id)

    # --- the port ---------------------------------------------------------

    async def publish(self, events: Sequence[OutgoingEvent]) -> None:
        """Appends events to the event log, in order, and wakes the topics' dispatchers."""
        if not events:
            return
        async with self.db.transaction() as conn:
            # Appends to a topic take turns until commit, so a lower seq can
            # never become visible after a higher one was read. Sorted, so two
            # publishers of several topics cannot deadlock.
            for topic in sorted({e.topic for e in events}):
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(topic_lock_key(topic))))
            await conn.execute(
                sa.insert(event_log),
                [
                    {
                        "topic": e.topic,
                        "partition_key": e.partition_key,
                        "event_id": e.event_id,
                        "event_type": e.event_type,
                        "payload": e.payload,
                    }
                    for e in events
                ],
            )
        for topic in {e.topic for e in events}:
            for wake in self._topic_wakes.get(topic, []):
                wake.set()

    def channel(self, target_app_id: str) -> grpc.aio.Channel:
        """Every unit is served by this process's own server, over loopback."""
        if self._channel is None:
            self._channel = command_channel(self.server_address)
        return self._channel

    async def schedule_job(
        self, app_id: str, name: str, due_time: datetime, data: bytes, options: JobOptions | None = None
    ) -> None:
        """Stores the job (replacing one of the same name unless options say not to) and wakes the timer."""
        await self.job_store.schedule_job(app_id, name, due_time, data, options)

    async def delete_job(self, app_id: str, name: str) -> None:
        """Deletes the job if it is still there."""
        await self.job_store.delete_job(app_id, name)

    async def pending_jobs(self, app_id: str) -> list[str]:
        """Names of a unit's jobs that have not fired yet (or are firing), for operators and tests."""
        return await self.job_store.pending_jobs(app_id)

    # --- hosting ----------------------------------------------------------

    def add_subscription(self, app_id: str, subscription: Subscription) -> None:
        """Registers a unit's subscription (before the workers start)."""
        if any(c.app_id == app_id and c.subscription.topic == subscription.topic for c in self._consumers):
            raise ValueError(f"{app_id} subscribes to {subscription.topic} twice")
        self._consumers.append(_Consumer(app_id, subscription))

    def add_job_handlers(self, app_id: str, handlers: dict[str, JobHandler]) -> None:
        """Registers a unit's job handlers (before the workers start)."""
        self.job_store.add_job_handlers(app_id, handlers)

    def workers(self) -> list[tuple[str, str, Any]]:
        """The loops a host runs under supervision: (name, owner app id or "host", coroutine function)."""
        found: list[tuple[str, str, Any]] = []
        for consumer in self._consumers:
            wake = asyncio.Event()
            self._topic_wakes[consumer.subscription.topic].append(wake)
            found.append(
                (
                    f"dispatch {consumer.subscription.topic} -> {consumer.name}",
                    consumer.app_id,
                    lambda c=consumer, w=wake: self._dispatch(c, w),
                )
            )
        found.append(("job timer", "host", self.job_store.run))
        return found

    async def start(self) -> None:
        """Runs the runtime's loops under a supervisor of its own: for tools and tests without a host."""
        self._own_supervisor = Supervisor(_ignore_health)
        for name, owner, work in self.workers():
            self._own_supervisor.add(name, owner, work)
        await self._own_supervisor.start()

    async def stop(self) -> None:
        """Stops what runs outside the host's workers (jobs in flight, the command channel, start()'s loops)."""
        if self._own_supervisor is not None:
            await self._own_supervisor.stop()
            self._own_supervisor = None
        await self.job_store.stop()
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def prune(self, before: datetime, dead_letters_before: datetime) -> dict[str, int]:
        """Prunes the event log and old dead letters; counts per table."""
        return {
            "event_log": await self.prune_event_log(before),
            "dead_letters": await self.prune_dead_letters(dead_letters_before),
        }

    async def prune_event_log(self, before: datetime) -> int:
        """Deletes events published before `before` that every consumer of their topic has passed."""
        consumers_by_topic: dict[str, list[str]] = defaultdict(list)
        for consumer in self._consumers:
            consumers_by_topic[consumer.subscription.topic].append(consumer.name)
        deleted = 0
        async with self.db.transaction() as conn:
            topics_present = (await conn.execute(sa.select(event_log.c.topic).distinct())).scalars().all()
        for topic in topics_present:
            condition = sa.and_(event_log.c.topic == topic, event_log.c.published_at < before)
            names = consumers_by_topic.get(topic, [])
            if names:
                async with self.db.transaction() as conn:
                    passed = await conn.scalar(
                        sa.select(sa.func.min(consumer_positions.c.position)).where(
                            consumer_positions.c.topic == topic, consumer_positions.c.consumer.in_(names)
                        )
                    )
                condition = sa.and_(condition, event_log.c.seq <= (passed or 0))
            deleted += await delete_in_batches(self.db, event_log, [event_log.c.seq], condition)
        return deleted

    async def prune_dead_letters(self, before: datetime) -> int:
        """Deletes dead letters that failed before `before` and were not asked to be replayed."""
        condition = sa.and_(dead_letters.c.failed_at < before, dead_letters.c.replay_requested_at.is_(None))
        return await delete_in_batches(self.db, dead_letters, [dead_letters.c.id], condition)

    # --- event dispatch ---------------------------------------------------

    async def _position(self, consumer: _Consumer) -> int:
        topic = consumer.subscription.topic
        async with self.db.transaction() as conn:
            await conn.execute(
                pg.insert(consumer_positions)
                .values(consumer=consumer.name, topic=topic, position=0)
                .on_conflict_do_nothing()
            )
            position = await conn.scalar(
                sa.select(consumer_positions.c.position).where(
                    consumer_positions.c.consumer == consumer.name, consumer_positions.c.topic == topic
                )
            )
        return int(position or 0)

    async def _dispatch(self, consumer: _Consumer, wake: asyncio.Event) -> None:
        """Delivers a topic to one consumer in order. Database errors end it; the host's supervisor restarts it."""
        topic = consumer.subscription.topic
        wanted = consumer.subscription.event_types
        position = await self._position(consumer)
        saved = position
        loop = asyncio.get_running_loop()
        replays_checked = -REPLAY_CHECK_INTERVAL
        limit = asyncio.Semaphore(DISPATCH_KEYS_AT_ONCE)
        while True:
            wake.clear()
            # Replays are asked for by an operator, rarely: looked for every few
            # seconds, not at every wake-up of a busy topic.
            if loop.time() - replays_checked >= REPLAY_CHECK_INTERVAL:
                await self._replay_requested(consumer)
                replays_checked = loop.time()
            async with self.db.engine.connect() as conn:
                query = (
                    sa.select(
                        event_log.c.seq,
                        event_log.c.event_id,
                        event_log.c.event_type,
                        event_log.c.payload,
                        event_log.c.partition_key,
                    )
                    .where(event_log.c.topic == topic, event_log.c.seq > position)
                    .order_by(event_log.c.seq)
                    .limit(500)
                )
                rows = (await conn.execute(query)).all()
            # Types the unit did not subscribe to are passed over unread; an
            # unknown type might be a poison message, so it is decoded.
            handed = [r for r in rows if not wanted or r.event_type in wanted or r.event_type not in _KNOWN_TYPES]
            by_key: dict[str, list[Any]] = defaultdict(list)
            for row in handed:
                by_key[row.partition_key].append(row)
            try:
                # Like Kafka partitions: one key's (one user's) events in order,
                # different keys' at once; the position moves past the batch only
                # when every key's events are handled.
                async with asyncio.TaskGroup() as group:  # one failing key stops the others: the batch is retried
                    for key_rows in by_key.values():
                        group.create_task(self._deliver_in_order(consumer, key_rows, limit))
                if rows:
                    position = rows[-1].seq
            except asyncio.CancelledError:
                # A clean stop keeps what was handled; only a crash repeats it.
                if position != saved:
                    await asyncio.shield(self._save_position(consumer, position))
                raise
            if rows:
                # The position is stored once per batch: after a crash at most
                # one batch is delivered again, which consumers' inboxes absorb.
                await self._save_position(consumer, position)
                saved = position
            else:
                # The wake comes from publish in this process; the timeout
                # is only a safety net (and how replays asked for elsewhere arrive).
                await wait_for_wake(wake, 5.0)

    async def _deliver_in_order(self, consumer: _Consumer, rows: list[Any], limit: asyncio.Semaphore) -> None:
        """Delivers one partition key's events of a batch, one after the other, dead-lettering what must be."""
        async with limit:
            for row in rows:
                outcome = await self._deliver(consumer, bytes(row.payload))
                if outcome is not None:
                    await self._dead_letter(consumer, row.seq, row.event_id, row.event_type, bytes(row.payload),
                                            outcome.reason)  # fmt: skip

    async def _deliver(self, consumer: _Consumer, payload: bytes) -> Undelivered | None:
        return await deliver(
            consumer.subscription,
            payload,
            consumer=consumer.name,
            retry_for=self.retry_for,
            max_retry_delay=self.max_retry_delay,
        )

    async def _save_position(self, consumer: _Consumer, position: int) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                sa.update(consumer_positions)
                .where(
                    consumer_positions.c.consumer == consumer.name,
                    consumer_positions.c.topic == consumer.subscription.topic,
                )
                .values(position=position)
            )

    async def _dead_letter(
        self, consumer: _Consumer, seq: int, event_id: str, event_type: str, payload: bytes, error: str
    ) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                sa.insert(dead_letters).values(
                    consumer=consumer.name,
                    topic=consumer.subscription.topic,
                    seq=seq,
                    event_id=event_id,
                    event_type=event_type,
                    payload=payload,
                    error=error,
                )
            )
        log.error(
            "event dead-lettered",
            extra={"consumer": consumer.name, "topic": consumer.subscription.topic, "event_id": event_id,
                   "type": event_type, "reason": error},
        )  # fmt: skip

    async def _replay_requested(self, consumer: _Consumer) -> None:
        """Delivers this consumer's dead letters an operator asked to replay; a failure puts them back."""
        async with self.db.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(dead_letters.c.id, dead_letters.c.event_id, dead_letters.c.payload)
                    .where(
                        dead_letters.c.consumer == consumer.name,
                        dead_letters.c.topic == consumer.subscription.topic,
                        dead_letters.c.replay_requested_at.is_not(None),
                    )
                    .order_by(dead_letters.c.id)
                    .limit(REPLAY_BATCH)
                )
            ).all()
        for row in rows:
            outcome = await self._deliver(consumer, bytes(row.payload))
            async with self.db.transaction() as conn:
                if outcome is None:
                    await conn.execute(sa.delete(dead_letters).where(dead_letters.c.id == row.id))
                else:
                    await conn.execute(
                        sa.update(dead_letters)
                        .where(dead_letters.c.id == row.id)
                        .values(replay_requested_at=None, error=outcome.reason, failed_at=sa.func.now())
                    )
            if outcome is None:
                log.info("dead letter replayed", extra={"consumer": consumer.name, "event_id": row.event_id})
            else:
                log.error(
                    "dead letter failed again",
                    extra={"consumer": consumer.name, "event_id": row.event_id, "reason": outcome.reason},
                )
