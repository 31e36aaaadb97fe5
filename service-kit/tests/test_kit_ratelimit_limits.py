"""Per-user rate limits: buckets in PostgreSQL shared by replicas, RESOURCE_EXHAUSTED with RetryInfo, fail open."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import AsyncIterator

import grpc
import pytest
import sqlalchemy as sa
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from todo_contracts.task.v1 import task_service_pb2, task_service_pb2_grpc
from todo_kit.config import Settings
from todo_kit.db import Database, ensure_database
from todo_kit.ratelimit import CommandRateLimiter, PostgresRateLimitStore, RateLimit, create_rate_limit_table
from todo_kit.testing import bearer, channel, running_host

LIMIT = RateLimit(per_minute=60, burst=10)  # one a second after ten at once


@pytest.fixture
async def database_url(postgres_url_template: str) -> str:
    name = f"ratelimit_{os.getpid()}_{id(object())}"
    await ensure_database(postgres_url_template.format(database="postgres"), name)
    url = postgres_url_template.format(database=name)
    db = Database(url, pool_size=1)
    try:
        await create_rate_limit_table(db)
        await create_rate_limit_table(db)  # idempotent
    finally:
        await db.close()
    return url


@pytest.fixture
async def replicas(database_url: str) -> AsyncIterator[tuple[PostgresRateLimitStore, PostgresRateLimitStore]]:
    """Two stores on two connection pools of one database: two replicas of a service."""
    first, second = Database(database_url, pool_size=5), Database(database_url, pool_size=5)
    try:
        yield PostgresRateLimitStore(first, LIMIT), PostgresRateLimitStore(second, LIMIT)
    finally:
        await first.close()
        await second.close()


async def test_concurrent_replicas_never_admit_more_than_the_burst_at_one_instant(
    replicas: tuple[PostgresRateLimitStore, PostgresRateLimitStore],
) -> None:
    first, second = replicas
    now = 1_000_000.0
    takes = [store.take("task/alice", now) for _ in range(40) for store in (first, second)]
    results = await asyncio.gather(*takes)
    assert sum(r is None for r in results) == LIMIT.burst
    refused = [r for r in results if r is not None]
    assert refused and all(0 < wait <= 1.0 / LIMIT.per_second + 1e-9 for wait in refused)


async def test_over_time_replicas_admit_at_most_the_burst_plus_the_rate(
    replicas: tuple[PostgresRateLimitStore, PostgresRateLimitStore],
) -> None:
    first, second = replicas
    start = 2_000_000.0
    admitted = 0
    for step in range(50):  # 5 seconds in steps of 0.1 s, both replicas hammering at every step
        now = start + step * 0.1
        results = await asyncio.gather(*(s.take("task/alice", now) for _ in range(4) for s in (first, second)))
        admitted += sum(r is None for r in results)
        elapsed = now - start
        assert admitted <= LIMIT.burst + LIMIT.per_second * elapsed + 1e-9, (step, admitted)
    assert admitted == LIMIT.burst + 4  # full use of what was allowed: ten at once, then one a second


async def test_another_user_has_a_bucket_of_their_own(
    replicas: tuple[PostgresRateLimitStore, PostgresRateLimitStore],
) -> None:
    first, second = replicas
    now = 3_000_000.0
    for _ in range(LIMIT.burst):
        assert await first.take("task/alice", now) is None
    assert await second.take("task/alice", now) is not None
    assert [await second.take("task/bob", now) for _ in range(LIMIT.burst)] == [None] * LIMIT.burst


async def test_a_clock_behind_does_not_refill_a_bucket(
    replicas: tuple[PostgresRateLimitStore, PostgresRateLimitStore],
) -> None:
    first, second = replicas
    now = 4_000_000.0
    for _ in range(LIMIT.burst):
        assert await first.take("task/alice", now) is None
    # A replica whose clock is a minute behind sees no time passing, rather than a negative refill or a full one.
    assert await second.take("task/alice", now - 60) is not None
    assert await second.take("task/alice", now + 1) is None


async def test_idle_full_buckets_are_pruned_and_active_ones_kept(
    replicas: tuple[PostgresRateLimitStore, PostgresRateLimitStore],
) -> None:
    first, _ = replicas
    now = 5_000_000.0
    await first.take("task/idle", now - LIMIT.refill_seconds - 5)
    await first.take("task/active", now - 1)
    assert await first.prune(now) == 1
    async with first.db.engine.connect() as conn:
        keys = (await conn.execute(sa.text("SELECT key FROM rate_limits"))).scalars().all()
    assert keys == ["task/active"]


class FailingStore:
    async def take(self, key: str, now: float) -> float | None:
        raise ConnectionError("the database is down")


async def test_a_failing_store_lets_commands_through_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    limiter = CommandRateLimiter()
    limiter.add(["todo.task.v1.TaskService"], FailingStore())
    with caplog.at_level(logging.WARNING, logger="todo_kit.ratelimit"):
        for _ in range(3):
            await limiter.admit("/todo.task.v1.TaskService/ListTasks", "alice")
    warnings = [r for r in caplog.records if "rate limit store failed" in r.getMessage()]
    assert len(warnings) == 1  # logged, but not once per call


async def test_a_database_that_is_down_lets_commands_through(caplog: pytest.LogCaptureFixture) -> None:
    down = Database("postgresql://todo@127.0.0.1:9/nowhere", pool_size=1)
    try:
        limiter = CommandRateLimiter()
        limiter.add(["todo.task.v1.TaskService"], PostgresRateLimitStore(down, RateLimit(60, 1)))
        with caplog.at_level(logging.WARNING, logger="todo_kit.ratelimit"):
            for _ in range(3):
                await limiter.admit("/todo.task.v1.TaskService/ListTasks", "alice")
        assert any("rate limit store failed" in r.getMessage() for r in caplog.records)
    finally:
        await down.close()


def limited(settings: Settings, per_minute: int, burst: int) -> Settings:
    return dataclasses.replace(settings, rate_limit_per_minute=per_minute, rate_limit_burst=burst)


async def test_a_host_answers_resource_exhausted_with_retry_info_to_one_user_only(kit_settings: Settings) -> None:
    from task_svc.unit import unit as task_unit

    settings = limited(kit_settings, per_minute=6, burst=3)
    async with running_host(settings, [task_unit]) as host, channel(host) as chan:
        stub = task_service_pb2_grpc.TaskServiceStub(chan)
        health = health_pb2_grpc.HealthStub(chan)
        alice, bob = bearer(settings, "alice"), bearer(settings, "bob")
        for _ in range(3):
            await stub.ListTasks(task_service_pb2.ListTasksRequest(), metadata=alice)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListTasks(task_service_pb2.ListTasksRequest(), metadata=alice)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "too many requests" in (caught.value.details() or "")
        status = rpc_status.from_call(caught.value)
        assert status is not None
        retry = error_details_pb2.RetryInfo()
        assert any(detail.Unpack(retry) for detail in status.details)
        delay = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
        assert 0 < delay <= 10.0  # one token every 10 s
        await stub.ListTasks(task_service_pb2.ListTasksRequest(), metadata=bob)
        for _ in range(10):  # probes are not commands
            reply = await health.Check(health_pb2.HealthCheckRequest())
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert "task_svc.rate_limits" in await host.prune()


async def test_limits_are_off_when_the_rate_is_zero(kit_settings: Settings) -> None:
    from task_svc.unit import unit as task_unit

    settings = limited(kit_settings, per_minute=0, burst=1)
    async with running_host(settings, [task_unit]) as host, channel(host) as chan:
        stub = task_service_pb2_grpc.TaskServiceStub(chan)
        alice = bearer(settings, "alice")
        for _ in range(20):
            await stub.ListTasks(task_service_pb2.ListTasksRequest(), metadata=alice)
        assert host.rate_limit_stores == {}


def test_the_rate_limit_settings_default_on_in_a_cluster_and_off_embedded() -> None:
    distributed = {"TODO_RUNTIME": "kafka", "TODO_DATABASE_URL": "postgresql:///{database}", "TODO_JWT_SECRET": "k"}
    assert (Settings.from_env(distributed).rate_limit_per_minute, Settings.from_env({}).rate_limit_per_minute) == (
        600,
        0,
    )
    chosen = Settings.from_env({"TODO_RATE_LIMIT_PER_MINUTE": "30", "TODO_RATE_LIMIT_BURST": "5"})
    assert (chosen.rate_limit_per_minute, chosen.rate_limit_burst) == (30, 5)
    for env in ({"TODO_RATE_LIMIT_PER_MINUTE": "-1"}, {"TODO_RATE_LIMIT_BURST": "0"}, {"TODO_RATE_LIMIT_BURST": "x"}):
        with pytest.raises(SystemExit, match=next(iter(env))):
            Settings.from_env(env)


async def test_a_service_acting_as_a_role_that_does_not_own_its_tables_can_use_its_buckets(
    kit_settings: Settings,
) -> None:
    from audit_svc.unit import unit as audit_unit
    from todo_contracts.audit.v1 import audit_pb2, audit_pb2_grpc

    settings = limited(kit_settings, per_minute=60, burst=2)
    async with running_host(settings, [audit_unit]) as host, channel(host) as chan:
        stub = audit_pb2_grpc.AuditServiceStub(chan)
        alice = bearer(settings, "alice")
        for _ in range(2):
            await stub.ListActivity(audit_pb2.ListActivityRequest(), metadata=alice)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListActivity(audit_pb2.ListActivityRequest(), metadata=alice)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
