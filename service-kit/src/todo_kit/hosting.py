"""What every host does, whichever runtime it brings: wire units, relay outboxes, prune, supervise, report health.

A host (embedded, Kafka, Dapr) subclasses HostBase and provides its runtime and
where each unit's database is; HostBase migrates and registers the units, runs
every outbox relay, the runtime's loops, the units' background work and the
periodic pruning under one Supervisor, and keeps health in line with it: a
unit whose loop is down is NOT_SERVING until the loop runs again.

Starting is all or nothing: a start that fails anywhere stops what it had
started (the server, databases, an embedded PostgreSQL), so a failed start
never leaves a child process or a bound port behind.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health_pb2

from todo_kit.auth import verifier_for
from todo_kit.config import Settings
from todo_kit.db import Database, ensure_database, migrate
from todo_kit.messaging import Outbox, OutboxRelay, prune_messaging
from todo_kit.ratelimit import (
    CommandRateLimiter,
    PostgresRateLimitStore,
    RateLimit,
    RateLimitStore,
    create_rate_limit_table,
)
from todo_kit.runtime.port import JobHandler, Runtime, ServiceUnit, Subscription, UnitContext, UnitWiring, check_wiring
from todo_kit.server import KitServer, configure_tracing
from todo_kit.supervision import HOST, Supervisor

log = logging.getLogger(__name__)

PRUNE_INTERVAL_SECONDS = 600
DEAD_LETTER_RETENTION_FACTOR = 4
"""Dead letters wait for an operator four retention periods before they are pruned."""


class HostedRuntime(Protocol):
    """What a host needs of its runtime besides the unit-facing port."""

    def for_unit(self, app_id: str) -> Runtime:
        """The port bound to one unit."""

    def add_subscription(self, app_id: str, subscription: Subscription) -> None:
        """Registers a unit's subscription before the workers start."""

    def add_job_handlers(self, app_id: str, handlers: dict[str, JobHandler]) -> None:
        """Registers a unit's job handlers before the workers start."""

    def workers(self) -> Sequence[tuple[str, str, Callable[[], Coroutine[Any, Any, None]]]]:
        """The runtime's loops: (name, owner app id or "host", coroutine function)."""

    async def pending_jobs(self, app_id: str) -> list[str]:
        """Names of a unit's jobs that have not fired yet, for operators and tests."""

    async def prune(self, before: datetime, dead_letters_before: datetime) -> dict[str, int]:
        """Deletes the runtime's own rows that are no longer needed; counts per table."""

    async def stop(self) -> None:
        """Releases what the runtime holds outside its workers."""


class HostBase:
    """Hosts service units on a runtime; subclasses say where databases and the runtime come from."""

    def __init__(self, settings: Settings, units: list[ServiceUnit], *, observers: Sequence[Subscription] = ()) -> None:
        self.settings = settings
        self.units = units
        self.observers = list(observers)
        self.server: KitServer | None = None
        self.runtime: HostedRuntime | None = None
        self.databases: dict[str, Database] = {}
        self.wirings: dict[str, UnitWiring] = {}
        self.outboxes: dict[str, Outbox] = {}
        self.supervisor = Supervisor(self._report_health)
        self.limiter = CommandRateLimiter()
        self.rate_limit_stores: dict[str, RateLimitStore] = {}
        self._serving = False
        self.port = 0

    # --- what a host provides -------------------------------------------------

    async def open(self) -> None:
        """Acquires what the host runs on (a data folder, a database server) and creates self.runtime."""
        raise NotImplementedError

    def database_url(self, name: str) -> str:
        """The URL of database `name` (already prefixed)."""
        raise NotImplementedError

    def admin_url(self) -> str:
        """A URL of the server's maintenance database, to create databases."""
        raise NotImplementedError

    def signing_key(self) -> str:
        """The key that signs and verifies bearer tokens."""
        raise NotImplementedError

    async def prepare_database(self, unit: ServiceUnit, name: str) -> None:
        """Creates the unit's database `name` if missing and migrates it (a host may serialize this)."""
        await ensure_database(self.admin_url(), name)
        await migrate(unit.migrations, self.database_url(name), runtime_role=unit.runtime_role)

    async def rate_limit_store(self, unit: ServiceUnit, name: str, db: Database, limit: RateLimit) -> RateLimitStore:
        """Where the unit's per-user buckets live: by default a table in its own database `name` (made here, as the
        database's owner); a host may keep them elsewhere (the Dapr host: its state store)."""
        owner = Database(self.database_url(name), pool_size=1)
        try:
            await create_rate_limit_table(owner, grant_to=unit.runtime_role)
        finally:
            await owner.close()
        return PostgresRateLimitStore(db, limit)

    async def database_ready(self, unit: ServiceUnit, db: Database) -> None:
        """Called with the unit's migrated database before the unit is registered."""

    def add_host_services(self, server: grpc.aio.Server) -> None:
        """Adds the host's own servicers (a Dapr host's AppCallback) before the units register theirs."""

    async def serving(self) -> None:
        """Called once the gRPC server listens on self.port (before the workers start)."""

    async def workers_started(self) -> None:
        """Called once the workers were started, before SERVING is reported (a host may wait for them here)."""

    async def close(self) -> None:
        """Releases what open() acquired; must be safe after a partial open()."""

    # --- the common part --------------------------------------------------------

    @property
    def address(self) -> str:
        """host:port of the gRPC server."""
        return f"{self.settings.grpc_host}:{self.port}"

    async def serve_until(self, stopped: asyncio.Task[Any], serving_line: Callable[[], str]) -> None:
        """Starts, says serving_line() on stderr (the address is known once started), stops once `stopped` is done.

        A signal during the start stops what the start had begun; a failed start raises its error.
        """
        start = asyncio.create_task(self.start())
        await asyncio.wait([start, stopped], return_when=asyncio.FIRST_COMPLETED)
        if not start.done():
            start.cancel()
            await asyncio.gather(start, return_exceptions=True)
            return
        start.result()
        print(serving_line(), file=sys.stderr, flush=True)
        await stopped
        log.info("stopping")
        await self.stop()

    async def start(self) -> None:
        """Opens, migrates, registers, serves, starts the workers, then reports SERVING; all or nothing."""
        try:
            await self._start()
        except BaseException:
            await self.stop(grace=0)
            raise

    async def _start(self) -> None:
        await self.open()
        runtime = self.runtime
        assert runtime is not None
        settings = self.settings
        tracing = configure_tracing(settings, "todo-" + (self.units[0].app_id if len(self.units) == 1 else "host"))
        verifier = verifier_for(settings, self.signing_key)
        self.server = KitServer(settings, verifier, tracing=tracing, limiter=self.limiter)
        self.add_host_services(self.server.server)
        limit = RateLimit(settings.rate_limit_per_minute, settings.rate_limit_burst)
        for unit in self.units:
            name = settings.database_prefix + unit.database
            await self.prepare_database(unit, name)
            db = Database(self.database_url(name), role=unit.runtime_role)
            self.databases[unit.database] = db
            await self.database_ready(unit, db)
            if limit.per_minute:
                store = await self.rate_limit_store(unit, name, db, limit)
                self.rate_limit_stores[unit.app_id] = store
                self.limiter.add(unit.service_names, store)
            outbox = Outbox(source=f"/todo/{unit.app_id}")
            self.outboxes[unit.app_id] = outbox
            wiring = await unit.register(
                self.server.server, UnitContext(settings, db, outbox, runtime.for_unit(unit.app_id))
            )
            check_wiring(unit.app_id, wiring)
            self.wirings[unit.app_id] = wiring
            for subscription in wiring.subscriptions:
                runtime.add_subscription(unit.app_id, subscription)
            runtime.add_job_handlers(unit.app_id, wiring.job_handlers)
            relay = OutboxRelay(db, outbox, runtime.for_unit(unit.app_id))
            self.supervisor.add(f"outbox relay of {unit.app_id}", unit.app_id, relay.run)
            for number, work in enumerate(wiring.background):
                self.supervisor.add(f"background {number} of {unit.app_id}", unit.app_id, work)
        for number, observer in enumerate(self.observers):
            runtime.add_subscription(f"observer-{number}", observer)
        self.port = await self.server.start(name for unit in self.units for name in unit.service_names)
        await self.serving()
        for name, owner, work in runtime.workers():
            self.supervisor.add(name, owner, work)
        self.supervisor.add("pruning", HOST, self._prune_periodically)
        await self.supervisor.start()
        await self.workers_started()
        self._serving = True
        await self._report_health(self.supervisor.down)
        log.info("serving", extra={"address": self.address, "units": [u.app_id for u in self.units]})

    async def _report_health(self, down: frozenset[str]) -> None:
        """SERVING for units whose loops all run; NOT_SERVING (and overall) while one is down."""
        if not self._serving or self.server is None:
            return
        serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
        statuses: dict[str, int] = {}
        for unit in self.units:
            ok = HOST not in down and unit.app_id not in down
            for name in unit.service_names:
                statuses[name] = serving if ok else not_serving
        statuses[""] = not_serving if down else serving
        await self.server.set_health(statuses)
        if down:
            log.warning("not serving while background work is down", extra={"down": sorted(down)})

    async def prune(self) -> dict[str, int]:
        """Deletes events, event ids and unit rows older than the retention period; returns counts per table."""
        now = datetime.now(UTC)
        keep = timedelta(days=self.settings.retention_days)
        assert self.runtime is not None
        counts = await self.runtime.prune(now - keep, now - DEAD_LETTER_RETENTION_FACTOR * keep)
        for unit in self.units:
            outbox_rows, inbox_rows = await prune_messaging(
                self.databases[unit.database], published_before=now - keep, processed_before=now - 2 * keep
            )
            counts[f"{unit.app_id}.outbox"] = outbox_rows
            counts[f"{unit.app_id}.processed_events"] = inbox_rows
            store = self.rate_limit_stores.get(unit.app_id)
            if isinstance(store, PostgresRateLimitStore):
                counts[f"{unit.app_id}.rate_limits"] = await store.prune(time.time())
            for table, pruner in self.wirings[unit.app_id].pruners.items():
                counts[f"{unit.app_id}.{table}"] = await pruner(now - keep)
        return counts

    async def _prune_periodically(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_INTERVAL_SECONDS)
            counts = await self.prune()
            log.info("pruned old rows", extra={"deleted": counts})

    @staticmethod
    async def _run_hooks(kind: str, hooks: list[Callable[[], Awaitable[None]]]) -> None:
        """Runs a shutdown hook of every unit; one that fails is logged and the others still run."""
        for hook in hooks:
            try:
                await hook()
            except Exception:
                log.exception(f"a unit's {kind} hook failed")

    async def stop(self, grace: float = 3.0) -> None:
        """Ends open streams (the units' drain hooks), stops taking calls, then background work, then closes the
        databases and what open() acquired."""
        self._serving = False
        await self._run_hooks("drain", [hook for wiring in self.wirings.values() for hook in wiring.on_drain])
        if self.server is not None:
            await self.server.stop(grace)
        await self.supervisor.stop()
        if self.runtime is not None:
            await self.runtime.stop()
        await self._run_hooks("stop", [hook for wiring in self.wirings.values() for hook in wiring.on_stop])
        for db in self.databases.values():
            await db.close()
        self.databases.clear()
        await self.close()
