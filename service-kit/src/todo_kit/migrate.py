"""Runs one service's (or every installed service's) migrations and exits.

`python -m todo_kit.migrate task_svc` is what a Kubernetes Job runs before a
release; hosts also migrate at start, so running it twice is harmless.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from todo_kit import embedded_pg
from todo_kit.config import Settings
from todo_kit.db import ensure_database, migrate
from todo_kit.embedded_host import database_url, installed_units
from todo_kit.logs import configure_logging


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
    server = None
    if settings.database_url:
        admin = settings.database_url.format(database="postgres")
    else:
        pgdata = settings.data_dir / "postgres"
        # Stop the embedded server afterwards only if this command started it.
        was_running = embedded_pg.postmaster_pid(pgdata) is not None
        server = await asyncio.to_thread(embedded_pg.start, pgdata)
        admin = server.admin_url
    for unit in chosen:
        name = settings.database_prefix + unit.database
        url = settings.database_url.format(database=name) if settings.database_url else database_url(admin, name)
        await ensure_database(admin, name)
        await migrate(unit.migrations, url, runtime_role=unit.runtime_role)
        print(f"{unit.app_id}: database {name} is at the newest migration")
    if server is not None and not was_running:
        await asyncio.to_thread(server.stop)
    return 0


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("services", nargs="*", help="app ids, e.g. task_svc (default: all installed)")
    args = parser.parse_args()
    configure_logging(Settings.from_env().log_level)
    return asyncio.run(run(args.services))


if __name__ == "__main__":
    sys.exit(main())
