"""A service process of the distributed mode on Kafka: `python -m todo_kit.kafka_host <app_id> [<app_id> ...]`.

It hosts the named units (normally one; installed in the entry point group
todo.service_units) on the Kafka runtime (todo_kit.runtime.kafka) against a
PostgreSQL server. Two processes of the same unit are replicas: they share the
unit's consumer groups (the partitions are split between them) and its
database (each due job is claimed by one of them). It serves gRPC with health
and reflection, migrates its database at start (replicas starting together
take turns: a PostgreSQL advisory lock around the migrations), reports SERVING
only once its consumers, outbox relay and job timer run, and stops cleanly on
SIGTERM or SIGINT (consumers finish or roll back their handlers in flight,
commit and leave their groups).

Settings (environment; a bad one stops the process with a message naming it):
  TODO_RUNTIME=kafka            informational (the process is a Kafka host whatever it says)
  TODO_KAFKA_BOOTSTRAP          host:port[,host:port] of the brokers (required)
  TODO_DATABASE_URL             postgresql://user:password@host:port/{database} (required); the user is the
                                service's role, {database} becomes the unit's database (with TODO_DATABASE_PREFIX)
  TODO_DATABASE_ADMIN_URL       where a missing database is created (default: the same URL's "postgres"
                                database); not used when the unit's database exists and its role can reach it
  TODO_GRPC_HOST/TODO_GRPC_PORT where gRPC is served (default 127.0.0.1:50051)
  TODO_JWT_SECRET or TODO_JWT_SECRET_FILE   the token signing key (required)
  TODO_SERVICE_ADDRESSES        app_id=host:port,... where commands to other services go
  TODO_KAFKA_CREATE_TOPICS      create missing registry topics at start (default true)
  TODO_KAFKA_REPLICATION_FACTOR replicas of topics it creates (default 1; partitions from the registry)
  TODO_KAFKA_CLIENT_ID          client id the broker sees (default: app ids, host name and pid)
  TODO_KAFKA_SESSION_TIMEOUT_MS, TODO_KAFKA_HEARTBEAT_MS, TODO_KAFKA_BROKER_DOWN_SECONDS,
  TODO_KAFKA_PUBLISH_TIMEOUT_SECONDS, TODO_COMMAND_TIMEOUT_SECONDS: see todo_kit.runtime.kafka.KafkaSettings
  and every setting of todo_kit.config.Settings (TODO_EVENT_RETRY_SECONDS, TODO_LOG_LEVEL, ...).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Mapping, Sequence

from todo_kit.auth import signing_key_for
from todo_kit.config import ConfigError, Settings
from todo_kit.db import Database
from todo_kit.embedded_host import check_port_free, installed_units
from todo_kit.hosting import HostBase
from todo_kit.logs import configure_logging
from todo_kit.migrate import prepare_database
from todo_kit.runtime.kafka import KafkaRuntime, KafkaSettings
from todo_kit.runtime.port import ServiceUnit, Subscription

log = logging.getLogger(__name__)

JOIN_TIMEOUT_SECONDS = 30.0
"""How long a start waits for its consumers to join their groups before it reports SERVING regardless."""


def units_named(app_ids: Sequence[str]) -> list[ServiceUnit]:
    """The installed units of these app ids, in the order given; ConfigError naming an unknown one."""
    installed = {unit.app_id: unit for unit in installed_units()}
    missing = [a for a in app_ids if a not in installed]
    if missing:
        known = ", ".join(sorted(installed)) or "none"
        raise ConfigError(f"no installed service unit named {', '.join(missing)} (installed: {known})")
    if len(set(app_ids)) != len(app_ids):
        raise ConfigError("an app id is named twice")
    return [installed[a] for a in app_ids]


class KafkaHost(HostBase):
    """Hosts service units in this process on the Kafka runtime."""

    def __init__(
        self,
        settings: Settings,
        units: list[ServiceUnit],
        kafka: KafkaSettings,
        *,
        observers: Sequence[Subscription] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(settings, units, observers=observers)
        if not settings.database_url:
            raise ConfigError("TODO_DATABASE_URL is required by the Kafka host")
        if settings.auth_mode == "shared-key" and not (settings.jwt_secret or settings.jwt_secret_file):
            raise ConfigError("TODO_JWT_SECRET or TODO_JWT_SECRET_FILE is required by the Kafka host")
        self.kafka = kafka
        admin = (env or {}).get("TODO_DATABASE_ADMIN_URL", "")
        self._admin_url = admin or settings.database_url.format(database="postgres")

    async def open(self) -> None:
        """Checks the port, creates the runtime and (unless told not to) the missing topics."""
        check_port_free(self.settings.grpc_host, self.settings.grpc_port)
        runtime = KafkaRuntime(
            self.kafka,
            retry_for=self.settings.event_retry_seconds,
            max_retry_delay=self.settings.event_retry_max_delay_seconds,
            client_name="+".join(unit.app_id for unit in self.units),
        )
        self.runtime = runtime
        if self.kafka.create_topics:
            await runtime.ensure_topics()

    def database_url(self, name: str) -> str:
        """TODO_DATABASE_URL with the name filled in."""
        return self.settings.database_url.format(database=name)

    def admin_url(self) -> str:
        """TODO_DATABASE_ADMIN_URL, or the server's maintenance database with the same credentials."""
        return self._admin_url

    def signing_key(self) -> str:
        """The configured key (TODO_JWT_SECRET or TODO_JWT_SECRET_FILE)."""
        return signing_key_for(self.settings, create=False)

    async def prepare_database(self, unit: ServiceUnit, name: str) -> None:
        """Creates the database only if the unit's role cannot reach it; migrates it with replicas taking turns
        (todo_kit.migrate.prepare_database, which the migration Job of a release runs too)."""
        await prepare_database(unit, self.database_url(name), self.admin_url(), job_table=True)

    async def workers_started(self) -> None:
        """SERVING waits (bounded) until every consumer is a member of its group, so nothing published after
        SERVING is missed by a consumer that starts from the newest offset (an observer)."""
        assert isinstance(self.runtime, KafkaRuntime)
        if not await self.runtime.wait_joined(JOIN_TIMEOUT_SECONDS):
            log.warning("a consumer has not joined its group yet; serving anyway (it keeps trying)")

    async def database_ready(self, unit: ServiceUnit, db: Database) -> None:
        """The unit's jobs live in its own database."""
        assert isinstance(self.runtime, KafkaRuntime)
        self.runtime.attach_database(unit.app_id, db)


async def serve(settings: Settings, kafka: KafkaSettings, app_ids: Sequence[str], env: Mapping[str, str]) -> None:
    """Runs a Kafka host of app_ids until SIGINT or SIGTERM."""
    host = KafkaHost(settings, units_named(app_ids), kafka, env=env)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopped = asyncio.create_task(stop.wait())
    await host.serve_until(
        stopped,
        lambda: (
            f"{', '.join(app_ids)} serving on {host.address} (Kafka {kafka.bootstrap}); stop with SIGTERM or Ctrl-C"
        ),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: python -m todo_kit.kafka_host <app_id> [<app_id> ...]."""
    import os

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or any(a.startswith("-") for a in args):
        print("usage: python -m todo_kit.kafka_host <app_id> [<app_id> ...]", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env.setdefault("TODO_RUNTIME", "kafka")
    settings = Settings.from_env(env)
    kafka = KafkaSettings.from_env(env)
    configure_logging(settings.log_level)
    asyncio.run(serve(settings, kafka, args, env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
