"""Live fan-out of per-user feeds: a committed row wakes the open streams of its user, in every replica.

A service that streams a user's new rows (notifications, task changes) numbers
them per user so they become visible in the order of their numbers (the
transaction that takes the next number holds the user's counter until it
commits), and announces each one in the same transaction with a PostgreSQL
NOTIFY carrying "<number> <user id>" (announce()). Each process listens on one
dedicated connection (LiveFeed.run) and wakes its streams of that user. A
stream then reads "number > the last it sent" from the database (follow()), so
a wake-up carries nothing that could be lost or repeated: a NOTIFY missed while
the listener reconnected is healed by waking every stream once it listens again.

An open stream costs a Subscriber (a user id, a number and an event) and its
handler's coroutine: no task, no connection of its own, and no query while it
is idle (it reads only when woken).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import defaultdict
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg  # type: ignore[import-untyped]
import grpc
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from todo_kit.config import Settings
from todo_kit.db import Database
from todo_kit.errors import DomainError, LimitExceeded
from todo_kit.supervision import wait_for_wake

log = logging.getLogger(__name__)

LISTENER_CHECK_SECONDS = 30.0
"""How often the listening connection is checked; a dead one is replaced and every stream re-reads."""

Item = TypeVar("Item")


class ServerStopping(DomainError):
    """The server is shutting down: the client reconnects (to another replica, or after the restart)."""

    code = grpc.StatusCode.UNAVAILABLE

    def __init__(self) -> None:
        super().__init__("the server is shutting down; reconnect with resume_after set to the last id seen")


@dataclass(eq=False, slots=True)
class Subscriber:
    """One open stream: whose it is, the number of the newest row it sent, and its wake-up."""

    user_id: str
    last_seq: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)


async def announce(conn: AsyncConnection, channel: str, user_id: str, seq: int) -> None:
    """Tells every replica's live streams of the user, when conn's transaction commits, that row seq exists."""
    await conn.execute(sa.select(sa.func.pg_notify(channel, f"{seq} {user_id}")))


def listener_dsn(db: Database) -> str:
    """The address of db for a listening connection of its own (asyncpg's form of the pool's URL)."""
    return db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def warn_if_streams_crowd_out_calls(max_streams: int, setting: str, settings: Settings) -> None:
    """Logs a warning when a unit's stream limit (named setting) leaves no room for other calls."""
    if max_streams >= settings.max_concurrent_rpcs:
        # Every open stream is a call in progress: grpc would refuse other calls first.
        log.warning(
            f"{setting} is not below TODO_GRPC_MAX_CONCURRENT_RPCS; streams can crowd out other calls",
            extra={"max_streams": max_streams, "max_concurrent_rpcs": settings.max_concurrent_rpcs},
        )


class LiveFeed:
    """This process's open streams of one feed, by user, and the listener that wakes them.

    channel: the NOTIFY channel announce() is called with.
    listener_name: the listening connection's application_name (as pg_stat_activity shows it).
    streams_noun: what the streams are called in limit messages ("notification streams").
    """

    def __init__(
        self, dsn: str, *, channel: str, listener_name: str, max_streams: int, max_streams_per_user: int,
        streams_noun: str = "streams",
    ) -> None:  # fmt: skip
        self._dsn = dsn
        self.channel = channel
        self.listener_name = listener_name
        self.max_streams = max_streams
        self.max_streams_per_user = max_streams_per_user
        self.streams_noun = streams_noun
        self._by_user: dict[str, set[Subscriber]] = defaultdict(set)
        self._count = 0
        self.closed = False
        self.listening = asyncio.Event()

    @property
    def open_streams(self) -> int:
        """How many streams are open in this process."""
        return self._count

    def subscribe(self, user_id: str) -> Subscriber:
        """Registers a new stream of the user; LimitExceeded when the user or the host has too many open.

        Register before the first read: a row committed after that read then wakes the stream.
        """
        if self.closed:
            raise ServerStopping()
        mine = self._by_user.get(user_id)
        if mine is not None and len(mine) >= self.max_streams_per_user:
            raise LimitExceeded(
                f"at most {self.max_streams_per_user} open {self.streams_noun} per user; close one first"
            )
        if self._count >= self.max_streams:
            raise LimitExceeded(f"this server holds as many {self.streams_noun} as it can; retry later")
        subscriber = Subscriber(user_id)
        self._by_user[user_id].add(subscriber)
        self._count += 1
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forgets a stream that ended."""
        mine = self._by_user.get(subscriber.user_id)
        if mine is None or subscriber not in mine:
            return
        mine.discard(subscriber)
        self._count -= 1
        if not mine:
            del self._by_user[subscriber.user_id]

    def wake_user(self, user_id: str, seq: int) -> None:
        """Row seq of the user exists: wakes the user's streams that have not sent it."""
        for subscriber in self._by_user.get(user_id, ()):
            if subscriber.last_seq < seq:
                subscriber.wake.set()

    def wake_all(self) -> None:
        """Wakes every stream to look for what it has not sent (after NOTIFYs may have been missed)."""
        for subscribers in self._by_user.values():
            for subscriber in subscribers:
                subscriber.wake.set()

    def _on_notify(self, connection: object, pid: int, channel: str, payload: str) -> None:
        seq, _, user_id = payload.partition(" ")
        try:
            number = int(seq)
        except ValueError:
            log.warning("live feed wake-up of unknown form ignored", extra={"channel": channel})
            return
        self.wake_user(user_id, number)

    async def run(self) -> None:
        """Listens until cancelled; ends with an error when the connection is lost (the host starts it again)."""
        connection = await asyncpg.connect(self._dsn, server_settings={"application_name": self.listener_name})
        lost = asyncio.Event()
        try:
            connection.add_termination_listener(lambda _connection: lost.set())
            await connection.add_listener(self.channel, self._on_notify)
            self.listening.set()
            # What was committed while nobody listened is found by a re-read.
            self.wake_all()
            while not lost.is_set():
                await wait_for_wake(lost, LISTENER_CHECK_SECONDS)
                if not lost.is_set():
                    await connection.fetchval("SELECT 1", timeout=10)
            raise ConnectionError(f"the connection listening on {self.channel} was lost")
        finally:
            self.listening.clear()
            connection.terminate()

    async def close(self) -> None:
        """Ends every stream and refuses new ones (the server is stopping); each stream ends at once."""
        self.closed = True
        self.wake_all()


class Quiet(enum.Enum):
    """What follow() yields when a stream was quiet for a heartbeat interval."""

    HEARTBEAT = "heartbeat"


ReadAfter = Callable[[int, int], Awaitable[Sequence[tuple[int, Item]]]]
"""Reads up to limit of the user's rows numbered after seq, oldest first, as (number, item): read(seq, limit)."""


async def follow(
    feed: LiveFeed, subscriber: Subscriber, read_after: ReadAfter[Item], *, page: int, heartbeat_seconds: float
) -> AsyncGenerator[Item | Quiet, None]:
    """The stream of a subscriber from subscriber.last_seq on: each row once, in order, and Quiet.HEARTBEAT
    whenever heartbeat_seconds passed without one; raises ServerStopping when the feed closes.

    The database is read at the start and after each wake-up only: an idle
    stream costs a heartbeat now and then, never a query. A replay longer than
    page is read page by page. subscriber.last_seq follows what was yielded.
    """
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    must_read = True
    while not feed.closed:
        if must_read:
            subscriber.wake.clear()
            rows = await read_after(subscriber.last_seq, page)
            for seq, item in rows:
                subscriber.last_seq = seq
                yield item
                quiet_since = loop.time()
            if len(rows) == page:
                continue  # more to replay
        left = quiet_since + heartbeat_seconds - loop.time()
        if left > 0 and await _woken(subscriber.wake, left):
            must_read = True
            continue
        must_read = subscriber.wake.is_set()
        if not must_read and not feed.closed:
            yield Quiet.HEARTBEAT
            quiet_since = loop.time()
    raise ServerStopping()


async def _woken(wake: asyncio.Event, timeout: float) -> bool:
    """Whether wake was set within timeout seconds."""
    try:
        async with asyncio.timeout(timeout):
            await wake.wait()
    except TimeoutError:
        return False
    return True
