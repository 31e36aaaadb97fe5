"""The embedded runtime: every unit in one process, on one PostgreSQL server.

Events: publish appends to an event log table (the embedded stand-in for a
Kafka topic, in the runtime's own database); one dispatcher per subscription
reads it in order from a stored position and hands each event to the unit.
Delivery is at least once: a crash after the handler committed and before the
position moved redelivers, which the unit's inbox absorbs. A failing handler is
retried with backoff; an event that cannot be decoded, or that keeps failing,
goes to the dead-letter table and the dispatcher moves on.

Jobs: rows in a jobs table, fired by a timer that sleeps exactly until the
earliest due time (woken early when a job is scheduled), so a job fires within
milliseconds of its time, and a job that came due while the process was down
fires as soon as it is back. A job row is deleted only after its handler
succeeded, so delivery is at least once.

Commands: gRPC over loopback to the one server that hosts every unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from todo_contracts import envelope, topics
from todo_kit.db import Database
from todo_kit.messaging import OutgoingEvent
from todo_kit.runtime.port import JobHandler, Subscription, handler_for_job

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
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)
jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("app_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("due_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Index("jobs_due", "due_time"),
)

_KNOWN_TYPES = frozenset(topics.event_types())

RETRY_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0, 4.0)
"""Pauses between a failing handler's attempts before its event is dead-lettered."""


@dataclass
class _Consumer:
    app_id: str
    subscription: Subscription

    @property
    def name(self) -> str:
        return self.app_id


class EmbeddedRuntime:
    """The runtime port for units hosted in one process."""

    def __init__(self, db: Database, server_address: str) -> None:
        self.db = db
        self.server_address = server_address
        self._consumers: list[_Consumer] = []
        self._job_handlers: dict[str, dict[str, JobHandler]] = {}
        self._topic_wakes: dict[str, list[asyncio.Event]] = defaultdict(list)
        self._jobs_wake = asyncio.Event()
        self._channel: grpc.aio.Channel | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def create_schema(self) -> None:
        """Creates the runtime's tables if they do not exist.

        This schema belongs to the embedded host itself, not to a service, and
        only ever grows tables, so create-if-missing is its whole migration.
        """
        async with self.db.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    # --- the port ---------------------------------------------------------

    async def publish(self, events: Sequence[OutgoingEvent]) -> None:
        """Appends events to the event log and wakes the topics' dispatchers."""
        if not events:
            return
        async with self.db.transaction() as conn:
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

    def channel(self, app_id: str) -> grpc.aio.Channel:
        """Every unit is served by this process's own server, over loopback."""
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.server_address)
        return self._channel

    async def schedule_job(self, app_id: str, name: str, due_time: datetime, data: bytes) -> None:
        """Stores the job (replacing one of the same name) and wakes the timer."""
        if due_time.tzinfo is None:
            raise ValueError("due_time must be timezone-aware")
        stmt = pg.insert(jobs).values(app_id=app_id, name=name, due_time=due_time, data=data, attempts=0)
        stmt = stmt.on_conflict_do_update(
            index_elements=[jobs.c.app_id, jobs.c.name],
            set_={"due_time": stmt.excluded.due_time, "data": stmt.excluded.data, "attempts": 0},
        )
        async with self.db.transaction() as conn:
            await conn.execute(stmt)
        self._jobs_wake.set()

    async def delete_job(self, app_id: str, name: str) -> None:
        """Deletes the job if it is still there."""
        async with self.db.transaction() as conn:
            await conn.execute(sa.delete(jobs).where(jobs.c.app_id == app_id, jobs.c.name == name))

    # --- hosting ----------------------------------------------------------

    def add_subscription(self, app_id: str, subscription: Subscription) -> None:
        """Registers a unit's subscription (before start)."""
        self._consumers.append(_Consumer(app_id, subscription))

    def add_job_handlers(self, app_id: str, handlers: dict[str, JobHandler]) -> None:
        """Registers a unit's job handlers (before start)."""
        self._job_handlers.setdefault(app_id, {}).update(handlers)

    async def start(self) -> None:
        """Starts one dispatcher per subscription and the job timer."""
        for consumer in self._consumers:
            wake = asyncio.Event()
            self._topic_wakes[consumer.subscription.topic].append(wake)
            self._tasks.append(asyncio.create_task(self._dispatch(consumer, wake)))
        self._tasks.append(asyncio.create_task(self._run_jobs()))

    async def stop(self) -> None:
        """Stops dispatching and firing; what was not acknowledged is redelivered after a restart."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

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
                    passed = await conn.scalar(
                        sa.select(sa.func.min(consumer_positions.c.position)).where(
                            consumer_positions.c.topic == topic, consumer_positions.c.consumer.in_(names)
                        )
                    )
                    condition = sa.and_(condition, event_log.c.seq <= (passed or 0))
                result = await conn.execute(sa.delete(event_log).where(condition))
                deleted += result.rowcount
        return deleted

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
        topic = consumer.subscription.topic
        wanted = consumer.subscription.event_types
        position = await self._position(consumer)
        while True:
            wake.clear()
            try:
                async with self.db.engine.connect() as conn:
                    query = (
                        sa.select(event_log.c.seq, event_log.c.event_id, event_log.c.event_type, event_log.c.payload)
                        .where(event_log.c.topic == topic, event_log.c.seq > position)
                        .order_by(event_log.c.seq)
                        .limit(500)
                    )
                    rows = (await conn.execute(query)).all()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading the event log failed; retrying", extra={"topic": topic})
                await asyncio.sleep(1.0)
                continue
            try:
                for row in rows:
                    # Types the unit did not subscribe to are passed over unread;
                    # an unknown type might be a poison message, so it is decoded.
                    if not wanted or row.event_type in wanted or row.event_type not in _KNOWN_TYPES:
                        await self._deliver(consumer, row.seq, row.event_id, bytes(row.payload))
                    position = row.seq
            except asyncio.CancelledError:
                # A clean stop keeps what was handled; only a crash repeats it.
                await asyncio.shield(self._save_position(consumer, position))
                raise
            if rows:
                # The position is stored once per batch: after a crash at most
                # one batch is delivered again, which consumers' inboxes absorb.
                await self._save_position(consumer, position)
            else:
                # The wake comes from publish in this process; the timeout
                # is only a safety net.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=5.0)

    async def _save_position(self, consumer: _Consumer, position: int) -> None:
        while True:
            try:
                async with self.db.transaction() as conn:
                    await conn.execute(
                        sa.update(consumer_positions)
                        .where(
                            consumer_positions.c.consumer == consumer.name,
                            consumer_positions.c.topic == consumer.subscription.topic,
                        )
                        .values(position=position)
                    )
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("saving a consumer position failed; retrying")
                await asyncio.sleep(0.5)

    async def _deliver(self, consumer: _Consumer, seq: int, event_id: str, payload: bytes) -> None:
        subscription = consumer.subscription
        try:
            event = envelope.decode(payload)
        except envelope.EnvelopeError as exc:
            log.error("undecodable event dead-lettered", extra={"consumer": consumer.name, "error": str(exc)})
            await self._dead_letter(consumer, seq, event_id, payload, f"undecodable: {exc}")
            return
        if subscription.event_types and event.type not in subscription.event_types:
            return
        last_error = ""
        for delay in (*RETRY_DELAYS, None):
            try:
                await subscription.handler(event)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "event handler failed",
                    extra={"consumer": consumer.name, "event_id": event_id, "type": event.type, "error": last_error},
                    exc_info=True,
                )
                if delay is not None:
                    await asyncio.sleep(delay)
        await self._dead_letter(consumer, seq, event_id, payload, f"handler kept failing: {last_error}")

    async def _dead_letter(self, consumer: _Consumer, seq: int, event_id: str, payload: bytes, error: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                sa.insert(dead_letters).values(
                    consumer=consumer.name,
                    topic=consumer.subscription.topic,
                    seq=seq,
                    event_id=event_id,
                    payload=payload,
                    error=error,
                )
            )

    # --- jobs -------------------------------------------------------------

    async def _run_jobs(self) -> None:
        limit = asyncio.Semaphore(64)
        in_flight: set[tuple[str, str]] = set()
        running: set[asyncio.Task[None]] = set()
        while True:
            self._jobs_wake.clear()
            try:
                async with self.db.engine.connect() as conn:
                    now = datetime.now(UTC)
                    due = (
                        await conn.execute(
                            sa.select(jobs.c.app_id, jobs.c.name, jobs.c.due_time, jobs.c.data, jobs.c.attempts)
                            .where(jobs.c.due_time <= now)
                            .order_by(jobs.c.due_time)
                            .limit(1000)
                        )
                    ).all()
                    next_due = await conn.scalar(sa.select(sa.func.min(jobs.c.due_time)).where(jobs.c.due_time > now))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading jobs failed; retrying")
                await asyncio.sleep(1.0)
                continue
            for job in due:
                key = (job.app_id, job.name)
                if key in in_flight:
                    continue
                in_flight.add(key)
                task = asyncio.create_task(self._fire(job, limit, in_flight))
                running.add(task)
                task.add_done_callback(running.discard)
            if len(due) >= 1000:
                await asyncio.sleep(0)  # more are due: go round again at once
                continue
            timeout = None if next_due is None else max(0.0, (next_due - datetime.now(UTC)).total_seconds())
            if due and (timeout is None or timeout > 0.05):
                # Jobs in flight may be rescheduled (retry); look again soon.
                timeout = 0.05 if timeout is None else min(timeout, 0.05)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._jobs_wake.wait(), timeout=timeout)

    async def _fire(self, job: Any, limit: asyncio.Semaphore, in_flight: set[tuple[str, str]]) -> None:
        app_id, name, due_time, data, attempts = job
        try:
            async with limit:
                handler = handler_for_job(self._job_handlers.get(app_id, {}), name)
                try:
                    if handler is None:
                        raise LookupError(f"no handler for job {name!r} of {app_id}")
                    await handler(name, bytes(data))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    delay = min(0.1 * 2**attempts, 60.0)
                    log.warning(
                        "job handler failed; firing again later",
                        extra={"app_id": app_id, "job": name, "error": f"{type(exc).__name__}: {exc}"},
                    )
                    async with self.db.transaction() as conn:
                        await conn.execute(
                            sa.update(jobs)
                            .where(jobs.c.app_id == app_id, jobs.c.name == name, jobs.c.due_time == due_time)
                            .values(
                                due_time=sa.func.now() + sa.func.make_interval(0, 0, 0, 0, 0, 0, delay),
                                attempts=attempts + 1,
                            )
                        )
                    return
                # Delete only the occurrence that fired: a job rescheduled
                # meanwhile (new due time) stays.
                async with self.db.transaction() as conn:
                    await conn.execute(
                        sa.delete(jobs).where(jobs.c.app_id == app_id, jobs.c.name == name, jobs.c.due_time == due_time)
                    )
        finally:
            in_flight.discard((app_id, name))
            self._jobs_wake.set()
