"""The activity log and its chain heads in the audit service's own database (see migrations/ for what guards them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from audit_svc.domain import ZERO_HASH, ChainHead, Entry
from todo_kit.db import Database

metadata = sa.MetaData()
activity_log = sa.Table(
    "activity_log",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("sequence", sa.BigInteger, primary_key=True),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("task_id", sa.Text, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("payload_json", sa.Text, nullable=False),
    sa.Column("occur_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("record_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("previous_hash", sa.LargeBinary, nullable=False),
    sa.Column("entry_hash", sa.LargeBinary, nullable=False),
)
chain_heads = sa.Table(
    "chain_heads",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("last_sequence", sa.BigInteger, nullable=False),
    sa.Column("last_hash", sa.LargeBinary, nullable=False),
    sa.Column("pruned_through_sequence", sa.BigInteger, nullable=False),
    sa.Column("anchor_hash", sa.LargeBinary, nullable=False),
    sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
)

_ENTRY_COLUMNS = [activity_log.c[name] for name in Entry.__dataclass_fields__]


@dataclass(frozen=True)
class ActivityFilter:
    """Which of a user's entries a listing shows, in which order, from where."""

    user_id: str
    task_id: str = ""
    event_types: tuple[str, ...] = ()
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive
    newest_first: bool = True
    after: tuple[datetime, int] | None = None  # (occur_time, sequence) of the previous page's last entry


def _entry(row: Any) -> Entry:
    return Entry(**{name: row._mapping[name] for name in Entry.__dataclass_fields__})


def _head(row: Any) -> ChainHead:
    return ChainHead(row.user_id, row.last_sequence, bytes(row.last_hash), row.pruned_through_sequence,
                     bytes(row.anchor_hash))  # fmt: skip


# --- appending --------------------------------------------------------------------------


async def lock_head(conn: AsyncConnection, user_id: str) -> ChainHead:
    """The user's chain head, locked until the transaction ends (created for a first entry).

    Every append of a user takes this lock first, so appends of one user take
    turns whichever consumer or replica makes them, and the chain never forks.
    """
    await conn.execute(
        pg.insert(chain_heads)
        .values(
            user_id=user_id,
            last_sequence=0,
            last_hash=ZERO_HASH,
            pruned_through_sequence=0,
            anchor_hash=ZERO_HASH,
            update_time=sa.func.now(),
        )
        .on_conflict_do_nothing()
    )
    row = (await conn.execute(sa.select(chain_heads).where(chain_heads.c.user_id == user_id).with_for_update())).one()
    return _head(row)


async def has_event(conn: AsyncConnection, event_id: str) -> bool:
    """Whether an entry of this event exists (of any user)."""
    found = await conn.scalar(sa.select(sa.literal(1)).where(activity_log.c.event_id == event_id))
    return found is not None


async def append(conn: AsyncConnection, entry: Entry) -> None:
    """Stores the entry and moves its user's chain head (locked by lock_head) to it."""
    await conn.execute(sa.insert(activity_log).values(**entry.__dict__))
    await conn.execute(
        sa.update(chain_heads)
        .where(chain_heads.c.user_id == entry.user_id)
        .values(last_sequence=entry.sequence, last_hash=entry.entry_hash, update_time=sa.func.now())
    )


# --- reading ----------------------------------------------------------------------------


@asynccontextmanager
async def snapshot(db: Database) -> AsyncIterator[AsyncConnection]:
    """A read-only connection that sees the database as it was at its first statement (REPEATABLE READ).

    A chain is read in many pages; one snapshot keeps the pages and the chain
    head consistent while appends and pruning go on.
    """
    engine = db.engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    async with engine.connect() as conn, conn.begin():
        yield conn


async def head(conn: AsyncConnection, user_id: str) -> ChainHead | None:
    """The user's chain head, if the user has ever had an entry."""
    row = (await conn.execute(sa.select(chain_heads).where(chain_heads.c.user_id == user_id))).first()
    return _head(row) if row is not None else None


async def entries_after(conn: AsyncConnection, user_id: str, sequence: int, limit: int) -> list[Entry]:
    """Up to limit of the user's entries after sequence, in sequence order (the primary key's order)."""
    rows = await conn.execute(
        sa.select(*_ENTRY_COLUMNS)
        .where(activity_log.c.user_id == user_id, activity_log.c.sequence > sequence)
        .order_by(activity_log.c.sequence)
        .limit(limit)
    )
    return [_entry(r) for r in rows]


def listing_query(wanted: ActivityFilter, limit: int) -> sa.Select[Any]:
    """The statement of one page of a listing: up to limit entries in (occur_time, sequence) order.

    Every shape reads the entries in the order of one index (see the first
    migration), so it stops after about limit index entries whatever the size
    of the user's log: a task filter walks (user, task, time, sequence); event
    types without a task walk (user, type, time, sequence) once per type, at
    most limit entries each, merged here; anything else walks (user, time, sequence).
    """
    log = activity_log
    if wanted.newest_first:
        order = [log.c.occur_time.desc(), log.c.sequence.desc()]
    else:
        order = [log.c.occur_time.asc(), log.c.sequence.asc()]
    conditions: list[Any] = [log.c.user_id == wanted.user_id]
    if wanted.task_id:
        conditions.append(log.c.task_id == wanted.task_id)
    if wanted.start is not None:
        conditions.append(log.c.occur_time >= wanted.start)
    if wanted.end is not None:
        conditions.append(log.c.occur_time < wanted.end)
    if wanted.after is not None:
        # One row comparison: a bound on each index's (time, sequence) part.
        position = sa.tuple_(log.c.occur_time, log.c.sequence)
        bound = sa.tuple_(sa.literal(wanted.after[0], log.c.occur_time.type), sa.literal(wanted.after[1]))
        conditions.append(position < bound if wanted.newest_first else position > bound)
    base = sa.select(*_ENTRY_COLUMNS).where(*conditions)
    if not wanted.event_types:
        return base.order_by(*order).limit(limit)
    if wanted.task_id or len(wanted.event_types) == 1:
        return base.where(log.c.event_type.in_(wanted.event_types)).order_by(*order).limit(limit)
    branches = [base.where(log.c.event_type == t).order_by(*order).limit(limit) for t in wanted.event_types]
    merged = sa.union_all(*branches).subquery("by_type")
    if wanted.newest_first:
        merged_order = [merged.c.occur_time.desc(), merged.c.sequence.desc()]
    else:
        merged_order = [merged.c.occur_time.asc(), merged.c.sequence.asc()]
    return sa.select(*merged.c).order_by(*merged_order).limit(limit)


async def list_entries(conn: AsyncConnection, wanted: ActivityFilter, limit: int) -> list[Entry]:
    """Up to limit of the user's entries the filter selects, in its order, after its position."""
    return [_entry(r) for r in await conn.execute(listing_query(wanted, limit))]


# --- pruning ------------------------------------------------------------------------------


async def users_due_for_pruning(
    conn: AsyncConnection, after_user: str, cutoff: datetime, limit: int
) -> tuple[str | None, list[str]]:
    """Of the next limit users after after_user (by id), those whose oldest entry was recorded before cutoff.

    Returns the last user looked at (None when there were none left) and those due.
    """
    heads = (
        sa.select(chain_heads.c.user_id, chain_heads.c.pruned_through_sequence)
        .where(chain_heads.c.user_id > after_user)
        .order_by(chain_heads.c.user_id)
        .limit(limit)
        .cte("heads")
    )
    oldest = activity_log.alias("oldest")
    rows = (
        await conn.execute(
            sa.select(heads.c.user_id, (oldest.c.record_time < cutoff).label("due"))
            .select_from(
                heads.outerjoin(
                    oldest,
                    sa.and_(
                        oldest.c.user_id == heads.c.user_id,
                        oldest.c.sequence == heads.c.pruned_through_sequence + 1,
                    ),
                )
            )
            .order_by(heads.c.user_id)
        )
    ).all()
    if not rows:
        return None, []
    return rows[-1].user_id, [r.user_id for r in rows if r.due]


async def prune_through(conn: AsyncConnection, user_id: str, through: int, cutoff: datetime) -> int:
    """Removes the user's entries up to sequence through that were recorded before cutoff; returns how many.

    Only the database function prune_activity (the owner's) may delete from the
    log: it removes a prefix of the chain and keeps the hash of its last entry
    as the chain's anchor, in this transaction.
    """
    deleted = await conn.scalar(
        sa.select(sa.func.prune_activity(user_id, through, sa.literal(cutoff, sa.DateTime(timezone=True))))
    )
    return int(deleted or 0)
