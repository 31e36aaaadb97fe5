"""A service process beside its Dapr sidecar: `python -m todo_kit.dapr_host <app_id>` (or `todo-dapr-host`).

It hosts one unit (installed in the entry point group todo.service_units) on
the Dapr runtime (todo_kit.runtime.dapr). At start it waits (bounded) for the
sidecar with the Dapr SDK's health wait, reads every setting given as
`secret:<name>` from the secret store, migrates the unit's database (replicas
take turns, as in the Kafka host), then serves the unit's gRPC services and
Dapr's AppCallback on one grpc.aio server (TODO_GRPC_PORT, the app port the
sidecar calls). It reports SERVING once its outbox relay and sidecar watch
run, and stops cleanly on SIGTERM or SIGINT.

Settings (environment; a bad one stops the process with a message naming it):
  TODO_RUNTIME=dapr             informational (the process is a Dapr host whatever it says)
  TODO_DATABASE_URL             postgresql://user:password@host:port/{database} (required; may be secret:<name>)
  TODO_DATABASE_ADMIN_URL       where a missing database is created (default: the same URL's "postgres" database)
  TODO_JWT_SECRET or TODO_JWT_SECRET_FILE   the token signing key (required; TODO_JWT_SECRET may be secret:<name>)
  TODO_GRPC_HOST/TODO_GRPC_PORT where gRPC and AppCallback are served (the sidecar's app port)
  DAPR_GRPC_PORT, DAPR_HTTP_PORT, TODO_DAPR_HOST, DAPR_API_TOKEN, APP_API_TOKEN, TODO_DAPR_PUBSUB,
  TODO_DAPR_SECRET_STORE, TODO_DAPR_STATE_STORE, TODO_DAPR_CONVERSATION, TODO_DAPR_WAIT_SECONDS,
  TODO_DAPR_SIDECAR_DOWN_SECONDS, TODO_COMMAND_TIMEOUT_SECONDS: see todo_kit.runtime.dapr.DaprSettings
  and every setting of todo_kit.config.Settings.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Mapping, Sequence

import grpc

from todo_kit.auth import signing_key_for
from todo_kit.config import ConfigError, Settings
from todo_kit.db import Database
from todo_kit.embedded_host import check_port_free
from todo_kit.hosting import HostBase
from todo_kit.kafka_host import units_named
from todo_kit.logs import configure_logging
from todo_kit.migrate import prepare_database
from todo_kit.ratelimit import RateLimit, RateLimitStore
from todo_kit.runtime.dapr import (
    DaprRuntime,
    DaprSettings,
    DaprStateRateLimitStore,
    resolve_secret_settings,
    wait_for_sidecar,
)
from todo_kit.runtime.port import ServiceUnit

log = logging.getLogger(__name__)


class DaprHost(HostBase):
    """Hosts one service unit in this process beside its Dapr sidecar."""

    def __init__(
        self, settings: Settings, units: list[ServiceUnit], dapr: DaprSettings, *, env: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(settings, units)
        if len(units) != 1:
            raise ConfigError("a Dapr host runs exactly one unit (one app id per sidecar)")
        if not settings.database_url:
            raise ConfigError("TODO_DATABASE_URL is required by the Dapr host")
        if not (settings.jwt_secret or settings.jwt_secret_file):
            raise ConfigError("TODO_JWT_SECRET or TODO_JWT_SECRET_FILE is required by the Dapr host")
        self.dapr = dapr
        admin = (env or {}).get("TODO_DATABASE_ADMIN_URL", "")
        self._admin_url = admin or settings.database_url.format(database="postgres")
        self.runtime = DaprRuntime(dapr)

    async def open(self) -> None:
        """Checks the port (the runtime was made with the host)."""
        check_port_free(self.settings.grpc_host, self.settings.grpc_port)

    def add_host_services(self, server: grpc.aio.Server) -> None:
        """Dapr's AppCallback, AppCallbackAlpha and AppCallbackHealthCheck, guarded by APP_API_TOKEN."""
        from todo_kit.dapr_callback import add_callbacks

        assert isinstance(self.runtime, DaprRuntime)
        add_callbacks(server, self.runtime)

    def database_url(self, name: str) -> str:
        """TODO_DATABASE_URL with the name filled in."""
        return self.settings.database_url.format(database=name)

    def admin_url(self) -> str:
        """TODO_DATABASE_ADMIN_URL, or the server's maintenance database with the same credentials."""
        return self._admin_url

    def signing_key(self) -> str:
        """The configured key (TODO_JWT_SECRET, possibly from the secret store, or TODO_JWT_SECRET_FILE)."""
        return signing_key_for(self.settings, create=False)

    async def prepare_database(self, unit: ServiceUnit, name: str) -> None:
        """Creates the database if its role cannot reach it and migrates it, replicas taking turns."""
        await prepare_database(unit, self.database_url(name), self.admin_url(), job_table=False)

    async def rate_limit_store(self, unit: ServiceUnit, name: str, db: Database, limit: RateLimit) -> RateLimitStore:
        """Per-user buckets in the Dapr state store, shared by every replica of the app."""
        assert isinstance(self.runtime, DaprRuntime)
        settings = self.runtime.settings
        return DaprStateRateLimitStore(
            self.runtime.stub,
            settings.state_store,
            limit.per_minute,
            limit.burst,
            metadata=settings.api_metadata,
        )


async def resolved_env(env: Mapping[str, str], dapr: DaprSettings) -> dict[str, str]:
    """Waits for the sidecar, then env with its `secret:<name>` settings read from the secret store."""
    await wait_for_sidecar(dapr)
    if not any(k.startswith("TODO_") and v.startswith("secret:") for k, v in env.items()):
        return dict(env)
    runtime = DaprRuntime(dapr)
    try:
        return await resolve_secret_settings(env, runtime.get_secret, dapr.secret_store)
    finally:
        await runtime.stop()


async def serve(app_id: str, env: Mapping[str, str]) -> None:
    """Runs a Dapr host of app_id until SIGINT or SIGTERM."""
    dapr = DaprSettings.from_env(env)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopped = asyncio.create_task(stop.wait())
    prepare = asyncio.create_task(resolved_env(env, dapr))
    await asyncio.wait([prepare, stopped], return_when=asyncio.FIRST_COMPLETED)
    if not prepare.done():
        prepare.cancel()
        await asyncio.gather(prepare, return_exceptions=True)
        return
    full_env = prepare.result()
    settings = Settings.from_env(full_env)
    configure_logging(settings.log_level)
    host = DaprHost(settings, units_named([app_id]), dapr, env=full_env)
    await host.serve_until(
        stopped,
        lambda: f"{app_id} serving on {host.address} beside the Dapr sidecar at {dapr.grpc_address}; stop with SIGTERM",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: python -m todo_kit.dapr_host <app_id>."""
    import os

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m todo_kit.dapr_host <app_id>", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env.setdefault("TODO_RUNTIME", "dapr")
    configure_logging(env.get("TODO_LOG_LEVEL", "INFO") if env.get("TODO_LOG_LEVEL") in ("DEBUG", "INFO",
                      "WARNING", "ERROR") else "INFO")  # fmt: skip
    asyncio.run(serve(args[0], env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
