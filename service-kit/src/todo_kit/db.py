"""PostgreSQL access: one database per service, SQLAlchemy 2 async on asyncpg, Alembic migrations."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

log = logging.getLogger(__name__)

RUNTIME_ROLE_OPTION = "todo_runtime_role"
"""The Alembic main option that carries a unit's runtime role to its migrations (see migration_runtime_role)."""

_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_role_name(role: str) -> str:
    """role if it is a plain lower-case PostgreSQL identifier (safe in SQL unquoted); ValueError otherwise."""
    if not _ROLE_NAME.match(role):
        raise ValueError(f"not a plain role name (lower-case letters, digits and _, at most 63): {role!r}")
    return role


def async_url(url: str) -> str:
    """Turns a postgresql:// URL into the asyncpg dialect's URL."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url!r}")


class Database:
    """One service's database: an engine and transactions on it.

    role: the PostgreSQL role every connection of the pool acts as (instead
    of the URL's login role). It is sent in the connection's startup packet,
    so it is the session's default from the first statement on: RESET ROLE,
    RESET ALL and DISCARD ALL (what poolers issue) return to it, not to the
    login role; only an explicit SET ROLE to another role the login role is a
    member of leaves it, and no code of the project issues one. A role that
    does not exist, or that the login role may not become, fails the connect.
    """

    def __init__(self, url: str, *, pool_size: int = 10, role: str | None = None) -> None:
        self.url = async_url(url)
        self.role = check_role_name(role) if role is not None else None
        connect_args: dict[str, Any] = {}
        if self.role is not None:
            connect_args["server_settings"] = {"role": self.role}
        # hide_parameters: a failed statement's error (and so every log line
        # quoting it) must not carry its parameters, i.e. users' titles and notes.
        self.engine: AsyncEngine = create_async_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=False,
            hide_parameters=True,
            connect_args=connect_args,
        )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection inside a transaction that commits on success and rolls back on error."""
        async with self.engine.begin() as conn:
            conn.info.pop("todo_after_commit", None)  # left over by a rolled-back use of this connection
            yield conn
            callbacks = conn.info.pop("todo_after_commit", [])
        # Reached only when the block succeeded and the commit went through.
        for callback in callbacks:
            callback()

    async def close(self) -> None:
        """Closes every pooled connection."""
        await self.engine.dispose()


async def delete_in_batches(
    db: Database,
    table: sa.Table,
    key: Sequence[Any],
    condition: Any,
    *,
    batch: int = 1000,
    order_by: Sequence[Any] = (),
) -> int:
    """Deletes the rows of table matching condition, at most batch rows per transaction; returns how many.

    key: the columns of the table's primary key. order_by: which rows go first.

    Pruning a large backlog in one statement would hold locks on every row
    until it ends; small transactions let the service work meanwhile. Rows
    another transaction holds are skipped (they go next time).
    """
    deleted = 0
    while True:
        chosen = sa.select(*key).where(condition).order_by(*order_by).limit(batch).with_for_update(skip_locked=True)
        async with db.transaction() as conn:
            result = await conn.execute(sa.delete(table).where(sa.tuple_(*key).in_(chosen)))
        deleted += result.rowcount
        if result.rowcount < batch:
            return deleted


async def ensure_database(admin_url: str, name: str) -> None:
    """Creates database `name` on the server of admin_url if it does not exist."""
    engine = create_async_engine(async_url(admin_url), isolation_level="AUTOCOMMIT", hide_parameters=True)
    try:
        async with engine.connect() as conn:
            exists = await conn.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            if not exists:
                await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
                log.info("created database", extra={"database": name})
    finally:
        await engine.dispose()


def alembic_config(script_location: Path, url: str, *, runtime_role: str | None = None) -> Config:
    """An Alembic configuration for a service's migrations folder and database (and the unit's runtime role)."""
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", async_url(url).replace("%", "%%"))
    if runtime_role is not None:
        config.set_main_option(RUNTIME_ROLE_OPTION, check_role_name(runtime_role))
    return config


async def migrate(script_location: Path, url: str, revision: str = "head", *, runtime_role: str | None = None) -> None:
    """Applies a service's migrations up to revision, as the URL's role (the owner of what they create).

    runtime_role: the role the unit's service runs as (ServiceUnit.runtime_role),
    for migrations that grant it what it may do (migration_runtime_role()).
    Alembic drives its own event loop in its env.py, so it runs in a thread.
    """
    config = alembic_config(script_location, url, runtime_role=runtime_role)
    await asyncio.to_thread(command.upgrade, config, revision)


def migration_runtime_role() -> str:
    """Inside a migration: the runtime role of the unit being migrated; RuntimeError if the unit declares none.

    Hosts and `python -m todo_kit.migrate` pass it; running Alembic by hand does not.
    """
    from alembic import context

    role = context.config.get_main_option(RUNTIME_ROLE_OPTION)
    if not role:
        raise RuntimeError(
            "this migration grants the service's runtime role, which only hosts and `python -m todo_kit.migrate` pass"
        )
    return check_role_name(role)
