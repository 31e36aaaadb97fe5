"""Per-user rate limits for commands: a token bucket per (service, user), shared by every replica of a service.

A user may send TODO_RATE_LIMIT_BURST commands to a service at once, and then
TODO_RATE_LIMIT_PER_MINUTE a minute; one more is RESOURCE_EXHAUSTED with
google.rpc.RetryInfo saying when to try again. The server's interceptor asks
CommandRateLimiter once per call, after authentication (a stream counts once,
when it opens); health, reflection and the sidecar's callbacks are not commands
of a unit's services and are never limited.

Where the buckets live is a RateLimitStore: in PostgreSQL (PostgresRateLimitStore,
one small table in each service's own database) in the embedded and Kafka
runtimes, in Dapr's state store in the Dapr runtime (todo_kit.runtime.dapr).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2

from todo_kit.db import Database
from todo_kit.errors import LimitExceeded

log = logging.getLogger(__name__)

STORE_DEADLINE_SECONDS = 1.0
"""How long a call waits for its bucket; a store slower than this lets the call through (see admit)."""
PRUNE_BATCH = 1000
FAILURE_LOG_INTERVAL = 60.0
"""A store that keeps failing is logged at most this often (seconds)."""


class RateLimitStore(Protocol):
    """Keeps token buckets by key."""

    async def take(self, key: str, now: float) -> float | None:
        """Takes one token of key's bucket at now (Unix seconds): None if taken, else seconds until one is there."""
        ...


@dataclass(frozen=True)
class RateLimit:
    """A token bucket's shape: burst tokens at most, refilled at per_minute a minute."""

    per_minute: int
    burst: int

    @property
    def per_second(self) -> float:
        """The refill rate."""
        return self.per_minute / 60.0

    @property
    def refill_seconds(self) -> float:
        """How long an empty bucket takes to be full again (then it is the same as no bucket at all)."""
        return self.burst / self.per_second


class RateLimited(LimitExceeded):
    """Too many commands: RESOURCE_EXHAUSTED with google.rpc.RetryInfo."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(retry_after, 0.001)
        super().__init__(f"too many requests from this user; retry in {math.ceil(self.retry_after * 10) / 10:g} s")

    def details(self) -> list[any_pb2.Any]:
        """A RetryInfo with the delay until the user's next token."""
        seconds = math.floor(self.retry_after)
        nanos = math.ceil((self.retry_after - seconds) * 1e9)
        if nanos >= 1_000_000_000:
            seconds, nanos = seconds + 1, 0
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=seconds, nanos=nanos)))
        return [detail]


metadata = sa.MetaData()
rate_limits = sa.Table(
    "rate_limits",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("tokens", sa.Float, nullable=False),
    # Unix seconds of the last take; a double, so replicas pass their own clocks (see take).
    sa.Column("updated", sa.Float, nullable=False),
    sa.Index("rate_limits_updated", "updated"),
)


async def create_rate_limit_table(db: Database, *, grant_to: str | None = None) -> None:
    """Creates the rate_limits table in db if it is missing; idempotent, safe to race (replicas starting together).

    grant_to: a role that must use the table without owning it (a unit's runtime role).
    """
    async with db.engine.begin() as conn:
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(zlib.crc32(b"todo-rate-limits-schema"))))
        await conn.run_sync(metadata.create_all)
        if grant_to is not None:
            await conn.execute(sa.text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON rate_limits TO {grant_to}"))


# One statement takes a token: a first take inserts a full bucket less one; later ones refill the bucket for the
# time passed and take one only if there is one (the WHERE), under the row's lock, so concurrent replicas never
# both take the last token. GREATEST keeps a replica whose clock is behind from refilling a negative amount.
_TAKE = sa.text(
    """
    INSERT INTO rate_limits AS b (key, tokens, updated) VALUES (:key, :burst - 1, :now)
    ON CONFLICT (key) DO UPDATE
       SET tokens = LEAST(:burst, b.tokens + GREATEST(0, :now - b.updated) * :rate) - 1,
           updated = GREATEST(b.updated, :now)
     WHERE LEAST(:burst, b.tokens + GREATEST(0, :now - b.updated) * :rate) >= 1
    RETURNING tokens
    """
)
_LEVEL = sa.text("SELECT LEAST(:burst, tokens + GREATEST(0, :now - updated) * :rate) FROM rate_limits WHERE key = :key")
_PRUNE = sa.text(
    "DELETE FROM rate_limits WHERE key IN (SELECT key FROM rate_limits WHERE updated < :before LIMIT :batch)"
)


class PostgresRateLimitStore:
    """Token buckets in a service's own database: one row per user who sent a command lately."""

    def __init__(self, db: Database, limit: RateLimit) -> None:
        self.db = db
        self.limit = limit

    async def take(self, key: str, now: float) -> float | None:
        """Takes a token of key's bucket at now; None if taken, else seconds until the next one."""
        params = {"key": key, "now": now, "burst": float(self.limit.burst), "rate": self.limit.per_second}
        async with self.db.engine.begin() as conn:
            taken = (await conn.execute(_TAKE, params)).first()
            if taken is not None:
                return None
            level = (await conn.execute(_LEVEL, params)).scalar_one_or_none()
        # Refused: the level is below one token (read again only to say how long to wait).
        return (1.0 - float(level if level is not None else 0.0)) / self.limit.per_second

    async def prune(self, now: float) -> int:
        """Deletes the buckets of users idle long enough for them to be full again (the same as no row); a count."""
        deleted = 0
        while True:
            async with self.db.engine.begin() as conn:
                result = await conn.execute(
                    _PRUNE, {"before": now - self.limit.refill_seconds - 1.0, "batch": PRUNE_BATCH}
                )
            count = int(getattr(result, "rowcount", 0) or 0)
            deleted += count
            if count < PRUNE_BATCH:
                return deleted


class CommandRateLimiter:
    """Admits or refuses a user's call to a service by that service's bucket store (no store: no limit)."""

    def __init__(self) -> None:
        self._stores: dict[str, RateLimitStore] = {}
        self._failure_logged_at = float("-inf")

    def add(self, service_names: Iterable[str], store: RateLimitStore) -> None:
        """Limits calls to these gRPC services (full names) with store."""
        for name in service_names:
            self._stores[name] = store

    async def admit(self, method: str, user_id: str) -> None:
        """Takes a token for user_id's call of method ("/pkg.Service/Method"); raises RateLimited when there is none.

        A store that fails or is slow lets the call through with a warning: the
        limit protects the services from one user's flood, and commands staying
        available while the store is down matters more than an exact limit for
        that while (the command itself needs its database anyway, or fails on
        its own).
        """
        service = method.split("/")[1] if method.count("/") >= 2 else ""
        store = self._stores.get(service)
        if store is None:
            return
        try:
            async with asyncio.timeout(STORE_DEADLINE_SECONDS):
                wait = await store.take(f"{service}/{user_id}", time.time())
        except Exception as exc:
            now = time.monotonic()
            if now - self._failure_logged_at >= FAILURE_LOG_INTERVAL:
                self._failure_logged_at = now
                log.warning(
                    "the rate limit store failed; commands pass unlimited meanwhile",
                    extra={"service": service, "error": repr(exc)},
                )
            return
        if wait is not None:
            raise RateLimited(wait)
