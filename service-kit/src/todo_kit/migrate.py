"""Runs one service's (or every installed service's) migrations and exits.

`todo-migrate task_svc` (or `python -m todo_kit.migrate task_svc`) is what a Kubernetes Job runs before a release,
with the same settings as the service; hosts also migrate at start, so running it twice is harmless.

With TODO_DATABASE_URL (a server, the distributed modes) it connects as the service's own role, like the host does:
the service's database is created only when that role cannot reach it (through TODO_DATABASE_ADMIN_URL, default the
same URL's "postgres" database), and replicas or a host starting meanwhile take turns (an advisory lock). Without
it, the embedded PostgreSQL of TODO_DATA_DIR is used.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import zlib

import sqlalchemy as sa

from todo_kit import embedded_pg
from todo_kit.config import Settings
from todo_kit.db import Database, ensure_database, migrate
from todo_kit.embedded_host import database_url, installed_units
from todo_kit.logs import configure_logging
from todo_kit.runtime.jobstore import create_job_table
from todo_kit.runtime.port import ServiceUnit


async def prepare_database(unit: ServiceUnit, url: str, admin_url: str, *, job_table: bool) -> None:
    """Creates the unit's database only if its role cannot reach it, then migrates it, one process at a time.

    A service's role usually may connect to its own database only (made by an administrator beforehand), so the
    maintenance database (admin_url) is tried only when the own one is not there. job_table: also the Kafka
    runtime's job table (todo_kit.runtime.jobstore), which lives in the unit's database.
    """
    name = sa.engine.make_url(url).database or ""
    owner = Database(url, pool_size=1)
    try:
        try:
            async with owner.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except Exception:
            await ensure_database(admin_url, name)
        async with owner.engine.connect() as conn:
            # A session lock (not a transaction's): Alembic runs on connections of its own meanwhile.
            key = zlib.crc32(f"todo-migrations:{unit.app_id}".encode())
            await conn.execute(sa.select(sa.func.pg_advisory_lock(key)))
            try:
                await migrate(unit.migrations, url, runtime_role=unit.runtime_role)
                if job_table:
                    await create_job_table(owner, grant_to=unit.runtime_role)
            finally:
                await conn.execute(sa.select(sa.func.pg_advisory_unlock(key)))
    finally:
        await owner.close()


async def run(app_ids: list[str]) -> int:
    """Migrates the named units (all when none are named) on the configured PostgreSQL."""
    settings = Settings.from_env()
    units = installed_units()
    known = {u.app_id for u in units}
    unknown = sorted(set(app_ids) - known)
    if unknown:
        print(f"unknown service(s): {', '.join(unknown)}; installed: {', '.join(sorted(known))}", file=sys.stderr)
        return 2
    chosen = [u for u in units if not app_ids or u.app_id in app_ids]
    if settings.database_url:
        admin = os.environ.get("TODO_DATABASE_ADMIN_URL", "") or settings.database_url.format(database="postgres")
        for unit in chosen:
            name = settings.database_prefix + unit.database
            url = settings.database_url.format(database=name)
            await prepare_database(unit, url, admin, job_table=settings.runtime == "kafka")
            print(f"{unit.app_id}: database {name} is at the newest migration")
        return 0
    pgdata = settings.data_dir / "postgres"
    # Stop the embedded server afterwards only if this command started it.
    was_running = embedded_pg.postmaster_pid(pgdata) is not None
    server = await asyncio.to_thread(embedded_pg.start, pgdata)
    for unit in chosen:
        name = settings.database_prefix + unit.database
        await ensure_database(server.admin_url, name)
        await migrate(unit.migrations, database_url(server.admin_url, name), runtime_role=unit.runtime_role)
        print(f"{unit.app_id}: database {name} is at the newest migration")
    if not was_running:
        await asyncio.to_thread(server.stop)
    return 0


def main() -> int:
    """Entry point of `todo-migrate [app_id ...]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("services", nargs="*", help="app ids, e.g. task_svc (default: all installed)")
    args = parser.parse_args()
    configure_logging(Settings.from_env().log_level)
    return asyncio.run(run(args.services))


if __name__ == "__main__":
    sys.exit(main())
