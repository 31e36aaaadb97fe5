"""Live fan-out: new notifications wake the open streams of their user, in every replica.

The transaction that creates a notification sends a PostgreSQL NOTIFY with
the user and the notification's number; each process listens on one
dedicated connection and wakes its streams of that user. A stream then reads
"seq > the last it sent" from the database, so a wake-up carries nothing that
could be lost or repeated: a NOTIFY missed while the listener reconnected is
healed by waking every stream once it listens again.

An open stream costs a Subscriber (a user id, a number and an event) and its
handler's coroutine: no task, no connection of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass, field

import asyncpg  # type: ignore[import-untyped]
import grpc

from notify_svc.storage import NEW_NOTIFICATION_CHANNEL
from todo_kit.errors import DomainError, LimitExceeded
from todo_kit.supervision import wait_for_wake

log = logging.getLogger(__name__)

LISTENER_NAME = "notify_svc listener"
"""The listening connection's application_name, as pg_stat_activity shows it."""
LISTENER_CHECK_SECONDS = 30.0
"""How often the listening connection is checked; a dead one is replaced and every stream re-reads."""


class ServerStopping(DomainError):
    """The server is shutting down: the client reconnects (to another replica, or after the restart)."""

    code = grpc.StatusCode.UNAVAILABLE

    def __init__(self) -> None:
        super().__init__("the server is shutting down; reconnect with resume_after set to the last id seen")


@dataclass(eq=False, slots=True)
class Subscriber:
    """One open stream: whose it is, the number of the newest notification it sent, and its wake-up."""

    user_id: str
    last_seq: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class LiveFeed:
    """This process's open streams, by user, and the listener that wakes them."""

    def __init__(self, dsn: str, *, max_streams: int, max_streams_per_user: int) -> None:
        self._dsn = dsn
        self.max_streams = max_streams
        self.max_streams_per_user = max_streams_per_user
        self._by_user: dict[str, set[Subscriber]] = defaultdict(set)
        self._count = 0
        self.closed = False
        self.listening = asyncio.Event()

    @property
    def open_streams(self) -> int:
        """How many streams are open in this process."""
        return self._count

    def subscribe(self, user_id: str) -> Subscriber:
        """Registers a new stream of the user; LimitExceeded when the user or the host has too many open."""
        if self.closed:
            raise ServerStopping()
        mine = self._by_user.get(user_id)
        if mine is not None and len(mine) >= self.max_streams_per_user:
            raise LimitExceeded(
                f"at most {self.max_streams_per_user} open notification streams per user; close one first"
            )
        if self._count >= self.max_streams:
            raise LimitExceeded("this server holds as many notification streams as it can; retry later")
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
        """Notification seq of the user exists: wakes the user's streams that have not sent it."""
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
            log.warning("notification wake-up of unknown form ignored")
            return
        self.wake_user(user_id, number)

    async def run(self) -> None:
        """Listens until cancelled; ends with an error when the connection is lost (the host starts it again)."""
        connection = await asyncpg.connect(self._dsn, server_settings={"application_name": LISTENER_NAME})
        lost = asyncio.Event()
        try:
            connection.add_termination_listener(lambda _connection: lost.set())
            await connection.add_listener(NEW_NOTIFICATION_CHANNEL, self._on_notify)
            self.listening.set()
            # What was created while nobody listened is found by a re-read.
            self.wake_all()
            while not lost.is_set():
                await wait_for_wake(lost, LISTENER_CHECK_SECONDS)
                if not lost.is_set():
                    await connection.fetchval("SELECT 1", timeout=10)
            raise ConnectionError("the connection listening for new notifications was lost")
        finally:
            self.listening.clear()
            connection.terminate()

    async def close(self) -> None:
        """Ends every stream and refuses new ones (the server is stopping); each stream ends at once."""
        self.closed = True
        self.wake_all()
