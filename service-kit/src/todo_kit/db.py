"""PostgreSQL access: one database per service, SQLAlchemy 2 async on asyncpg, Alembic migrations."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

log = logging.getLogger(__name__)


def async_url(url: str) -> str:
    """Turns a postgresql:// URL into the asyncpg dialect's URL."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url!r}")


class Database:
    """One service's database: an engine and transactions on it."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = async_url(url)
        # hide_parameters: a failed statement's error (and so every log line
        # quoting it) must not carry its parameters, i.e. users' titles and notes.
        self.engine: AsyncEngine = create_async_engine(
            self.url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False, hide_parameters=True
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


def alembic_config(script_location: Path, url: str) -> Config:
    """An Alembic configuration for a service's migrations folder and database."""
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", async_url(url).replace("%", "%%"))
    return config


async def migrate(script_location: Path, url: str, revision: str = "head") -> None:
    """Applies a service's migrations up to revision.

    Alembic drives its own event loop in its env.py, so it runs in a thread.
    """
    config = alembic_config(script_location, url)
    await asyncio.to_thread(command.upgrade, config, revision)
