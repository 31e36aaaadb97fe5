"""Jobs of the runtimes: a table of due jobs, claimed with a lease, fired by a timer.

Both the embedded runtime (one table in the runtime's database, every unit's
jobs) and the Kafka runtime (one table in each service's own database) keep
their jobs here. A timer sleeps exactly until the earliest due time (woken
early when a job is scheduled). Due jobs are claimed with a lease (FOR UPDATE
SKIP LOCKED), so any number of processes sharing the table fire each job once;
a job is deleted only after its handler succeeded, so delivery is at least
once, and a job that came due while the process was down fires as soon as it
is back. Each job handler is a lane with its own number of jobs in flight, and
a lane claims only as many jobs as it has free places: slow handlers (a webhook
that times out) never delay another handler's jobs (reminders), and a claimed
job never waits for a place while its lease runs out.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import zlib
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from todo_kit.db import Database
from todo_kit.runtime.port import FailurePolicy, JobExists, JobHandler, JobOptions, handler_for_job
from todo_kit.supervision import wait_for_wake

log = logging.getLogger(__name__)

metadata = sa.MetaData()
jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("app_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("due_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_retries", sa.Integer),
    sa.Column("retry_interval_ms", sa.BigInteger),
    sa.Column("lease_until", sa.DateTime(timezone=True)),
    sa.Column("claim", sa.Text),
    sa.Index("jobs_due", "due_time"),
)

# Columns added after the first release: create_all does not alter an
# existing table, so a table made by an older version gets them here.
_UPGRADES = (
    "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS max_retries integer",
    "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS retry_interval_ms bigint",
    "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS lease_until timestamptz",
    "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS claim text",
)

FIRST_RETRY_DELAY = 0.1
"""The first pause after a job handler failed; it doubles up to a minute."""
JOB_LEASE = timedelta(seconds=15)
"""How long a claimed job is reserved for the process firing it; after a crash it fires again once this passed."""
JOB_LANE_SIZE = 64
"""How many jobs of one handler (job name prefix of a unit) run at once in one process."""
TIMER_SAFETY_NET = timedelta(seconds=30)
"""The job timer looks at the table at least this often (jobs another process scheduled)."""
_AWAKE = datetime.max.replace(tzinfo=UTC)
"""The job timer's wake-up time while it is not sleeping: every new job wakes it."""


async def create_job_table(db: Database, *, grant_to: str | None = None) -> None:
    """Creates the jobs table in db if it is missing (and adds later columns); idempotent, safe to race.

    grant_to: a role that must use the table without owning it (a unit's runtime role).
    """
    async with db.engine.begin() as conn:
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(zlib.crc32(b"todo-jobs-schema"))))
        await conn.run_sync(metadata.create_all)
        for statement in _UPGRADES:
            await conn.execute(sa.text(statement))
        if grant_to is not None:
            await conn.execute(sa.text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON jobs TO {grant_to}"))


class JobStore:
    """The jobs of some units in one table: schedule, delete, and the timer that fires them."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._job_handlers: dict[str, dict[str, JobHandler]] = {}
        self._jobs_wake = asyncio.Event()
        self._timer_wakes_at = _AWAKE
        self._running_jobs: set[asyncio.Task[None]] = set()
        self._lane_busy: dict[tuple[str, str], int] = defaultdict(int)

    def add_job_handlers(self, app_id: str, handlers: dict[str, JobHandler]) -> None:
        """Registers a unit's job handlers (before the timer starts)."""
        self._job_handlers.setdefault(app_id, {}).update(handlers)

    async def stop(self) -> None:
        """Cancels the jobs in flight (they fire again when their lease ends)."""
        for task in list(self._running_jobs):
            task.cancel()
        await asyncio.gather(*self._running_jobs, return_exceptions=True)

    async def schedule_job(
        self, app_id: str, name: str, due_time: datetime, data: bytes, options: JobOptions | None = None
    ) -> None:
        """Stores the job (replacing one of the same name unless options say not to) and wakes the timer."""
        if due_time.tzinfo is None:
            raise ValueError("due_time must be timezone-aware")
        options = options or JobOptions()
        policy = options.failure_policy
        values = {
            "app_id": app_id,
            "name": name,
            "due_time": due_time,
            "data": data,
            "attempts": 0,
            "max_retries": policy.max_retries,
            "retry_interval_ms": None if policy.interval is None else int(policy.interval / timedelta(milliseconds=1)),
            "lease_until": None,
            "claim": None,
        }
        stmt = pg.insert(jobs).values(**values)
        if options.overwrite:
            # A new schedule replaces the old one, including a claim in flight:
            # the claimant's delete then matches nothing and the new one stays.
            stmt = stmt.on_conflict_do_update(
                index_elements=[jobs.c.app_id, jobs.c.name],
                set_={k: stmt.excluded[k] for k in values if k not in ("app_id", "name")},
            )
        else:
            stmt = stmt.on_conflict_do_nothing()
        async with self.db.transaction() as conn:
            result = await conn.execute(stmt.returning(jobs.c.name))
            if result.first() is None:
                raise JobExists(f"job {name!r} of {app_id} exists")
        self._wake_timer_for(due_time)

    async def delete_job(self, app_id: str, name: str) -> None:
        """Deletes the job if it is still there."""
        async with self.db.transaction() as conn:
            await conn.execute(sa.delete(jobs).where(jobs.c.app_id == app_id, jobs.c.name == name))

    async def pending_jobs(self, app_id: str) -> list[str]:
        """Names of a unit's jobs that have not fired yet (or are firing), for operators and tests."""
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(sa.select(jobs.c.name).where(jobs.c.app_id == app_id).order_by(jobs.c.name))
            return list(rows.scalars())

    def _lanes(self) -> list[tuple[str, str]]:
        """Every (app id, job name prefix) that has a handler."""
        return [(app, prefix) for app, handlers in sorted(self._job_handlers.items()) for prefix in sorted(handlers)]

    def _free_lanes(self) -> list[tuple[str, str]]:
        return [lane for lane in self._lanes() if self._lane_busy[lane] < JOB_LANE_SIZE]

    def _lane_condition(self, lane: tuple[str, str]) -> Any:
        """Jobs of the lane: its app, names starting with its prefix and with no longer prefix of that app."""
        app, prefix = lane
        longer = [p for p in self._job_handlers[app] if p != prefix and p.startswith(prefix)]
        return sa.and_(
            jobs.c.app_id == app,
            jobs.c.name.startswith(prefix, autoescape=True),
            *(sa.not_(jobs.c.name.startswith(p, autoescape=True)) for p in longer),
        )

    @staticmethod
    def _claimable(now: datetime) -> Any:
        return sa.and_(jobs.c.due_time <= now, sa.or_(jobs.c.lease_until.is_(None), jobs.c.lease_until <= now))

    async def _claim_due(self, lane: tuple[str, str], now: datetime, places: int) -> list[Any]:
        """Leases up to `places` due jobs of one lane; another process skips what this one holds."""
        claim = uuid.uuid4().hex
        due = (
            sa.select(jobs.c.app_id, jobs.c.name)
            .where(self._lane_condition(lane), self._claimable(now))
            .order_by(jobs.c.due_time)
            .limit(places)
            .with_for_update(skip_locked=True)
            .cte("due")
        )
        stmt = (
            sa.update(jobs)
            .where(jobs.c.app_id == due.c.app_id, jobs.c.name == due.c.name)
            .values(lease_until=now + JOB_LEASE, claim=claim)
            .returning(
                jobs.c.app_id, jobs.c.name, jobs.c.due_time, jobs.c.data, jobs.c.attempts, jobs.c.max_retries,
                jobs.c.retry_interval_ms, jobs.c.claim,
            )
        )  # fmt: skip
        async with self.db.transaction() as conn:
            return list((await conn.execute(stmt)).all())

    async def _next_claimable(self, lanes: list[tuple[str, str]]) -> datetime | None:
        """When the earliest job of these lanes becomes claimable (its due time, or the end of its lease)."""
        if not lanes:
            return None
        async with self.db.engine.connect() as conn:
            return await conn.scalar(  # type: ignore[no-any-return]
                sa.select(sa.func.min(sa.func.greatest(jobs.c.due_time, sa.func.coalesce(jobs.c.lease_until,
                                                                                           jobs.c.due_time))))
                .where(sa.or_(*(self._lane_condition(lane) for lane in lanes)))
            )  # fmt: skip

    async def run(self) -> None:
        """Fires due jobs until cancelled. Database errors end it; the host's supervisor restarts it.

        It looks at the table only when something may have become claimable:
        at the earliest due time (or lease end) it knows of in a lane with a
        free place, when a job is scheduled earlier than that (schedule_job
        wakes it only then), or when a full lane gets a place back; so a burst
        of jobs planned for later costs no look at all.
        """
        while True:
            self._timer_wakes_at = _AWAKE
            self._jobs_wake.clear()
            now = datetime.now(UTC)
            lanes = self._free_lanes()
            next_time = await self._next_claimable(lanes)
            if next_time is not None and next_time <= now:
                claimed_any = False
                for lane in lanes:
                    places = JOB_LANE_SIZE - self._lane_busy[lane]
                    for job in await self._claim_due(lane, now, places):
                        claimed_any = True
                        self._lane_busy[lane] += 1
                        task = asyncio.create_task(self._fire(lane, job))
                        self._running_jobs.add(task)
                        task.add_done_callback(self._running_jobs.discard)
                if claimed_any:
                    await asyncio.sleep(0)  # more may be due: look again at once
                    continue
                next_time = now + timedelta(milliseconds=10)  # taken by a concurrent claim: look again shortly
            # A safety net for jobs scheduled by another process on the same table.
            wake_at = min(next_time or now + TIMER_SAFETY_NET, now + TIMER_SAFETY_NET)
            self._timer_wakes_at = wake_at
            await wait_for_wake(self._jobs_wake, max(0.0, (wake_at - now).total_seconds()))

    def _wake_timer_for(self, due_time: datetime) -> None:
        """Wakes the job timer if it would otherwise sleep past due_time."""
        if due_time < self._timer_wakes_at:
            self._jobs_wake.set()

    async def _fire(self, lane: tuple[str, str], job: Any) -> None:
        app_id, name, data, attempts, claim = job.app_id, job.name, bytes(job.data), job.attempts, job.claim
        mine = sa.and_(jobs.c.app_id == app_id, jobs.c.name == name, jobs.c.claim == claim)
        try:
            handler = handler_for_job(self._job_handlers.get(app_id, {}), name)
            try:
                if handler is None:
                    raise LookupError(f"no handler for job {name!r} of {app_id}")
                await handler(name, data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._job_failed(job, mine, f"{type(exc).__name__}: {exc}")
                return
            # Delete only the claim that fired: a job rescheduled meanwhile
            # (a new claim, or none) stays.
            async with self.db.transaction() as conn:
                await conn.execute(sa.delete(jobs).where(mine))
        except asyncio.CancelledError:
            raise
        except Exception:
            # The job stays leased and fires again when the lease ends.
            log.exception("recording a fired job failed", extra={"app_id": app_id, "job": name, "attempts": attempts})
        finally:
            self._lane_busy[lane] -= 1
            if self._lane_busy[lane] == JOB_LANE_SIZE - 1:
                self._jobs_wake.set()  # the lane was full: its waiting jobs may be claimed now

    async def _job_failed(self, job: Any, mine: Any, error: str) -> None:
        policy = FailurePolicy(
            job.max_retries, None if job.retry_interval_ms is None else timedelta(milliseconds=job.retry_interval_ms)
        )
        context = {"app_id": job.app_id, "job": job.name, "attempts": job.attempts + 1, "error": error}
        async with self.db.transaction() as conn:
            if policy.max_retries is not None and job.attempts >= policy.max_retries:
                await conn.execute(sa.delete(jobs).where(mine))
                log.error("job dropped after its last retry", extra=context)
                return
            delay = (
                policy.interval.total_seconds()
                if policy.interval is not None
                else min(FIRST_RETRY_DELAY * 2 ** min(job.attempts, 20), 60.0)
            )
            await conn.execute(
                sa.update(jobs)
                .where(mine)
                .values(
                    due_time=datetime.now(UTC) + timedelta(seconds=delay),
                    attempts=job.attempts + 1,
                    lease_until=None,
                    claim=None,
                )
            )
        self._wake_timer_for(datetime.now(UTC) + timedelta(seconds=delay))
        log.warning("job handler failed; firing again later", extra={**context, "retry_in_s": delay})
