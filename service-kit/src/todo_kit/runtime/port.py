"""The runtime port: what a service unit may ask of whatever hosts it.

A unit declares its servicers, subscriptions and job handlers (ServiceUnit)
and uses a Runtime, bound to the unit by its host, to publish, call other
services and schedule its jobs. The embedded runtime runs every unit in one
process; the Kafka and Dapr runtimes run each in its own process. A unit cannot
tell which one hosts it: every runtime gives these calls the same meaning.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from todo_contracts.envelope import DecodedEvent
from todo_kit.messaging import OutgoingEvent

if TYPE_CHECKING:
    from todo_kit.config import Settings
    from todo_kit.db import Database
    from todo_kit.messaging import Outbox


class HandlerOutcome(enum.Enum):
    """What an event handler says about an event (Dapr's SUCCESS / RETRY / DROP)."""

    SUCCESS = "success"
    """Handled (or deliberately ignored): the event is acknowledged."""
    RETRY = "retry"
    """Not handled now: delivered again after a backoff (the same as raising)."""
    DROP = "drop"
    """Can never be handled: dead-lettered at once with a log line (the same as raising DropEvent)."""


EventHandler = Callable[[DecodedEvent], Awaitable[HandlerOutcome | None]]
"""Handles one event. None means SUCCESS; raising DropEvent means DROP; raising anything else means RETRY."""

JobHandler = Callable[[str, bytes], Awaitable[None]]
"""Handles one fired job (its name and data); raising means "fire again later" (see FailurePolicy)."""

Pruner = Callable[[datetime], Awaitable[int]]
"""Deletes a unit's rows that are no longer needed and older than the cut-off it is given.

The host calls every pruner of every unit periodically with now minus the
retention period. A pruner deletes in bounded batches (so no transaction holds
locks for long) and returns how many rows it deleted.
"""


class DropEvent(Exception):
    """Raised by an event handler for an event that can never succeed (malformed, impossible).

    The runtime dead-letters it at once with a log line naming the reason,
    instead of retrying. Any other exception means "retry later": the event is
    redelivered with capped exponential backoff for a long time (hours) before
    it is given up, so a database restart never turns into lost events.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JobExists(Exception):
    """schedule_job(..., JobOptions(overwrite=False)) found a job of that name."""


@dataclass(frozen=True)
class FailurePolicy:
    """What happens when a job handler raises (Dapr's job failure policy).

    max_retries: how many times a failed job fires again before it is dropped
      with an error log line; None retries until it succeeds.
    interval: a constant pause between attempts; None means capped exponential
      backoff (0.1 s doubling up to a minute).
    """

    max_retries: int | None = None
    interval: timedelta | None = None


@dataclass(frozen=True)
class JobOptions:
    """How a job is scheduled.

    overwrite: replace a job of the same name (True), or raise JobExists (False).
    """

    overwrite: bool = True
    failure_policy: FailurePolicy = field(default_factory=FailurePolicy)


class Runtime(Protocol):
    """What a service unit can ask of its host; bound to the unit (its app id) by the host."""

    @property
    def app_id(self) -> str:
        """The unit this runtime is bound to."""

    async def publish(self, events: Sequence[OutgoingEvent]) -> None:
        """Publishes encoded events, in order, each on its topic keyed by its partition key.

        Returns only when every event was accepted (the outbox relay marks them
        published afterwards).
        """

    def channel(self, target_app_id: str) -> grpc.aio.Channel:
        """A gRPC channel for commands to the unit target_app_id.

        Calls made on it while handling an RPC carry that caller's identity
        (authorization) and trace context, so the target acts as the same user.
        """

    async def schedule_job(self, name: str, due_time: datetime, data: bytes, options: JobOptions | None = None) -> None:
        """Schedules job `name` of this unit to fire once at due_time (at least once, never early)."""

    async def delete_job(self, name: str) -> None:
        """Deletes a job of this unit that has not fired; deleting a missing job is not an error."""


class ProcessRuntime(Protocol):
    """A runtime as a process holds it, for all of its units: each call names the unit."""

    async def publish(self, events: Sequence[OutgoingEvent]) -> None:
        """See Runtime.publish."""

    def channel(self, target_app_id: str) -> grpc.aio.Channel:
        """See Runtime.channel."""

    async def schedule_job(
        self, app_id: str, name: str, due_time: datetime, data: bytes, options: JobOptions | None = None
    ) -> None:
        """See Runtime.schedule_job; app_id's job."""

    async def delete_job(self, app_id: str, name: str) -> None:
        """See Runtime.delete_job; app_id's job."""


class UnitRuntime:
    """The runtime port as one unit sees it: a process's runtime with the unit's app id bound (its jobs only)."""

    def __init__(self, runtime: ProcessRuntime, app_id: str) -> None:
        self._runtime = runtime
        self._app_id = app_id

    @property
    def app_id(self) -> str:
        """The unit this runtime is bound to."""
        return self._app_id

    async def publish(self, events: Sequence[OutgoingEvent]) -> None:
        """Publishes through the process's runtime."""
        await self._runtime.publish(events)

    def channel(self, target_app_id: str) -> grpc.aio.Channel:
        """A command channel to the target, as the process's runtime reaches it."""
        return self._runtime.channel(target_app_id)

    async def schedule_job(self, name: str, due_time: datetime, data: bytes, options: JobOptions | None = None) -> None:
        """Schedules this unit's job."""
        await self._runtime.schedule_job(self._app_id, name, due_time, data, options)

    async def delete_job(self, name: str) -> None:
        """Deletes this unit's job; a missing job is not an error."""
        await self._runtime.delete_job(self._app_id, name)


@dataclass(frozen=True)
class Subscription:
    """A unit's interest in the events of a topic (one subscription per topic per unit)."""

    topic: str
    handler: EventHandler
    # Only these event types are handed to the handler; others are acknowledged
    # and skipped. Empty means every type on the topic.
    event_types: frozenset[str] = frozenset()


@dataclass
class UnitContext:
    """What a unit gets when it is wired into a host."""

    settings: Settings
    db: Database
    outbox: Outbox
    runtime: Runtime


@dataclass
class ServiceUnit:
    """One service as a unit that a host can run.

    app_id: the service's name (and Dapr app id), e.g. "task_svc".
    database: the name of its own database.
    migrations: its Alembic script folder.
    service_names: full names of the gRPC services it serves (for health and reflection).
    register: adds its servicers to the server, given its context.
    subscriptions / job_handlers: filled by register() from the context.
    runtime_role: the PostgreSQL role the service acts as at run time, when it
      must not act as the owner of its tables (an append-only log): every
      connection of its Database runs as that role, while migrations keep
      running as the URL's role, the owner. The unit's migrations create the
      role and grant it what it needs (todo_kit.db.migration_runtime_role());
      where the login role may not create roles, an administrator creates it
      (NOLOGIN) beforehand and makes the service's login role a member of it.
      None: the service runs as the URL's role.
    """

    app_id: str
    database: str
    migrations: Path
    service_names: tuple[str, ...]
    register: Callable[[grpc.aio.Server, UnitContext], Awaitable[UnitWiring]]
    runtime_role: str | None = None


@dataclass
class UnitWiring:
    """What a unit declared when it was registered."""

    subscriptions: list[Subscription] = field(default_factory=list)
    # Job name prefix -> handler; a job goes to the handler of its longest matching prefix.
    job_handlers: dict[str, JobHandler] = field(default_factory=dict)
    # Background work the unit runs while it is up (started after the server, restarted if it fails).
    background: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    # Called when shutdown begins, before the server stops: ends calls that would otherwise run until the
    # server's grace period is over (open streams), and refuses new ones.
    on_drain: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Called on shutdown, after the server stopped taking calls.
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Table name (for logs) -> pruner; the host runs them periodically.
    pruners: dict[str, Pruner] = field(default_factory=dict)


def handler_for_job(handlers: dict[str, JobHandler], name: str) -> JobHandler | None:
    """The handler of the longest prefix of name, if any."""
    best = max((p for p in handlers if name.startswith(p)), key=len, default=None)
    return handlers[best] if best is not None else None


def check_wiring(app_id: str, wiring: UnitWiring) -> None:
    """Refuses wiring no runtime can honour the same way (raises ValueError).

    One subscription per topic per unit: a unit is one consumer group on a
    topic in every runtime, with one position.
    """
    seen: set[str] = set()
    for subscription in wiring.subscriptions:
        if subscription.topic in seen:
            raise ValueError(f"{app_id} subscribes to {subscription.topic} twice; use one handler per topic")
        seen.add(subscription.topic)
