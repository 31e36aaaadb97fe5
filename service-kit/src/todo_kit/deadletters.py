"""Dead letters of the embedded default, for operators: list, replay, drop.

(The Kafka runtime keeps dead letters on each topic's dead-letter topic, <topic>-dlq, with headers naming the
original topic, partition, offset, consumer group and error; this command does not read them:
`python -m todo_kit.kafka_topics dead-letters` lists them.)

    python -m todo_kit.deadletters list [--consumer APP] [--json]
    python -m todo_kit.deadletters replay (ID ... | --all) [--consumer APP]
    python -m todo_kit.deadletters drop (ID ... | --all) [--consumer APP]

It reads the same settings as the host (TODO_DATA_DIR, TODO_DATABASE_URL,
TODO_DATABASE_PREFIX). A replay is picked up by the running host's dispatcher
of that consumer within seconds (or at the next start): delivered again, the
dead letter is gone; failing again, it stays with the new error. Listing never
prints an event's payload: it holds users' content.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from todo_kit import embedded_pg
from todo_kit.config import Settings
from todo_kit.db import Database
from todo_kit.embedded_host import RUNTIME_DATABASE, database_url
from todo_kit.runtime.embedded import dead_letters


def _selection(ids: Sequence[int], every: bool, consumer: str | None) -> Any:
    condition: Any = sa.true() if every else dead_letters.c.id.in_(list(ids))
    if consumer:
        condition = sa.and_(condition, dead_letters.c.consumer == consumer)
    return condition


async def list_dead_letters(db: Database, consumer: str | None = None) -> list[dict[str, Any]]:
    """Dead letters, oldest first, without payloads."""
    query = sa.select(
        dead_letters.c.id,
        dead_letters.c.consumer,
        dead_letters.c.topic,
        dead_letters.c.event_id,
        dead_letters.c.event_type,
        dead_letters.c.error,
        dead_letters.c.failed_at,
        dead_letters.c.replay_requested_at,
    ).order_by(dead_letters.c.id)
    if consumer:
        query = query.where(dead_letters.c.consumer == consumer)
    async with db.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        {
            **row._asdict(),
            "failed_at": row.failed_at.isoformat(),
            "replay_requested_at": row.replay_requested_at.isoformat() if row.replay_requested_at else None,
        }
        for row in rows
    ]


async def request_replay(db: Database, ids: Sequence[int], *, every: bool = False, consumer: str | None = None) -> int:
    """Marks dead letters for redelivery to their consumer; returns how many."""
    async with db.transaction() as conn:
        result = await conn.execute(
            sa.update(dead_letters).where(_selection(ids, every, consumer)).values(replay_requested_at=sa.func.now())
        )
    return int(result.rowcount)


async def drop(db: Database, ids: Sequence[int], *, every: bool = False, consumer: str | None = None) -> int:
    """Deletes dead letters for good; returns how many."""
    async with db.transaction() as conn:
        result = await conn.execute(sa.delete(dead_letters).where(_selection(ids, every, consumer)))
    return int(result.rowcount)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m todo_kit.deadletters", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="show dead letters (no payloads)")
    listing.add_argument("--consumer", help="only this consumer's (an app id such as reminder_svc)")
    listing.add_argument("--json", action="store_true", help="one JSON object a line")
    for name, text in (("replay", "deliver again to their consumer"), ("drop", "delete for good")):
        command = commands.add_parser(name, help=text)
        command.add_argument("ids", nargs="*", type=int, help="dead letter ids (from list)")
        command.add_argument("--all", action="store_true", help="every dead letter (of --consumer, if given)")
        command.add_argument("--consumer", help="only this consumer's")
    return parser


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    started_postgres = None
    if settings.database_url:
        url = settings.database_url.format(database=settings.database_prefix + RUNTIME_DATABASE)
    else:
        pgdata = settings.data_dir / "postgres"
        if not pgdata.exists():
            print(f"no data in {settings.data_dir}: nothing has run there yet", file=sys.stderr)
            return 2
        running = embedded_pg.postmaster_pid(pgdata) is not None
        server = await asyncio.to_thread(embedded_pg.start, pgdata)
        started_postgres = None if running else server
        url = database_url(server.admin_url, settings.database_prefix + RUNTIME_DATABASE)
    db = Database(url, pool_size=1)
    try:
        if args.command == "list":
            found = await list_dead_letters(db, args.consumer)
            if args.json:
                for item in found:
                    print(json.dumps(item))
            elif not found:
                print("no dead letters")
            else:
                for item in found:
                    replay = "  (replay requested)" if item["replay_requested_at"] else ""
                    print(f"{item['id']}  {item['failed_at']}  {item['consumer']}  {item['topic']}  "
                          f"{item['event_type']}  {item['event_id']}{replay}\n    {item['error']}")  # fmt: skip
            return 0
        if not args.ids and not args.all:
            print("name dead letter ids, or --all", file=sys.stderr)
            return 2
        if args.command == "replay":
            count = await request_replay(db, args.ids, every=args.all, consumer=args.consumer)
            print(f"{count} dead letter(s) marked for replay; the running host delivers them within seconds")
        else:
            count = await drop(db, args.ids, every=args.all, consumer=args.consumer)
            print(f"{count} dead letter(s) dropped")
        return 0
    finally:
        await db.close()
        if started_postgres is not None:
            await asyncio.to_thread(started_postgres.stop)


def main(argv: list[str] | None = None) -> int:
    """Entry point: python -m todo_kit.deadletters."""
    args = _parser().parse_args(argv)
    return asyncio.run(_run(args, Settings.from_env()))


if __name__ == "__main__":
    sys.exit(main())
