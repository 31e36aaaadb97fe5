"""Rules can never freeze the host: bad rules are INVALID_ARGUMENT, evaluation runs off the loop, poison is dropped.

Real hosts, real gRPC, real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import sqlalchemy as sa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from recurrence_svc import domain, handlers, storage
from recurrence_svc.unit import unit as recurrence_unit
from task_svc.unit import unit as task_unit
from todo_contracts import envelope, topics
from todo_contracts.common.v1 import common_pb2
from todo_contracts.recurrence.v1 import recurrence_pb2, recurrence_pb2_grpc
from todo_contracts.task.v1 import events_pb2, task_pb2, task_service_pb2_grpc
from todo_contracts.task.v1 import task_service_pb2 as ts
from todo_kit import rrules, zoned
from todo_kit.config import Settings
from todo_kit.embedded_host import EmbeddedHost
from todo_kit.messaging import OutgoingEvent
from todo_kit.runtime.embedded import dead_letters
from todo_kit.runtime.port import DropEvent
from todo_kit.testing import bearer, eventually, field_violations, running_host

BAD_RULES = [
    ("FREQ=DAILY;INTERVAL=0", "INTERVAL"),
    ("FREQ=DAILY;INTERVAL=-1", "INTERVAL"),
    ("FREQ=MONTHLY;BYDAY=+99MO", "BYDAY"),
    ("FREQ=MONTHLY;BYMONTHDAY=0", "BYMONTHDAY"),
    ("FREQ=WEEKLY;BYDAY=1MO", "BYDAY"),
    ("FREQ=DAILY;COUNT=0", "COUNT"),
]
NEVER = ["FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30",
         "FREQ=MONTHLY;BYMONTH=4;BYMONTHDAY=31", "FREQ=MINUTELY;BYMONTH=2;BYMONTHDAY=30"]  # fmt: skip


@dataclass
class Stubs:
    host: EmbeddedHost
    tasks: task_service_pb2_grpc.TaskServiceStub
    recurrence: recurrence_pb2_grpc.RecurrenceServiceStub
    health: health_pb2_grpc.HealthStub
    alice: list[tuple[str, str]]


@pytest.fixture
async def stubs(kit_settings: Settings) -> AsyncIterator[Stubs]:
    async with (
        running_host(kit_settings, [task_unit, recurrence_unit]) as host,
        grpc.aio.insecure_channel(host.address) as channel,
    ):
        yield Stubs(
            host,
            task_service_pb2_grpc.TaskServiceStub(channel),
            recurrence_pb2_grpc.RecurrenceServiceStub(channel),
            health_pb2_grpc.HealthStub(channel),
            bearer(kit_settings, "alice"),
        )


START = common_pb2.ZonedDateTime(local_time="2026-12-07T09:00", time_zone="Europe/Berlin")


@pytest.mark.parametrize(("rule", "part"), BAD_RULES)
async def test_bad_rules_are_invalid_argument_naming_their_part_in_every_rpc(
    stubs: Stubs, rule: str, part: str
) -> None:
    checked = await stubs.recurrence.ValidateRule(recurrence_pb2.ValidateRuleRequest(rrule=rule), metadata=stubs.alice)
    assert not checked.valid and checked.problems[0].part == part and not checked.description

    with pytest.raises(grpc.aio.AioRpcError) as preview:
        await stubs.recurrence.PreviewOccurrences(
            recurrence_pb2.PreviewOccurrencesRequest(rrule=rule, start=START), metadata=stubs.alice
        )
    assert preview.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [(f, d.split(":")[0]) for f, d in field_violations(preview.value)] == [("rrule", part)]

    recurrence = task_pb2.Recurrence(rrule=rule)
    with pytest.raises(grpc.aio.AioRpcError) as create:
        await stubs.tasks.CreateTask(
            ts.CreateTaskRequest(task=task_pb2.Task(title="Water plants", due=START, recurrence=recurrence)),
            metadata=stubs.alice,
        )
    assert create.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [(f, d.split(":")[0]) for f, d in field_violations(create.value)] == [("task.recurrence.rrule", part)]


async def test_rules_that_never_occur_are_invalid_argument_everywhere(stubs: Stubs) -> None:
    for rule in NEVER:
        checked = await stubs.recurrence.ValidateRule(
            recurrence_pb2.ValidateRuleRequest(rrule=rule), metadata=stubs.alice
        )
        assert not checked.valid and "never occurs" in checked.problems[0].message
        for call in (
            stubs.recurrence.PreviewOccurrences(
                recurrence_pb2.PreviewOccurrencesRequest(rrule=rule, start=START), metadata=stubs.alice
            ),
            stubs.tasks.CreateTask(
                ts.CreateTaskRequest(
                    task=task_pb2.Task(title="t", due=START, recurrence=task_pb2.Recurrence(rrule=rule))
                ),
                metadata=stubs.alice,
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "never occurs" in field_violations(raised.value)[0][1]


async def test_other_calls_are_answered_while_a_rule_evaluates(stubs: Stubs, monkeypatch: pytest.MonkeyPatch) -> None:
    started = threading.Event()
    real_preview = handlers.preview

    def slow_preview(rule: str, start: zoned.ZonedTime, wanted: int) -> tuple[list[rrules.Occurrence], bool]:
        # Computation that holds the interpreter, as a costly rule would.
        started.set()
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            sum(range(1000))
        return real_preview(rule, start, wanted)

    monkeypatch.setattr(handlers, "preview", slow_preview)

    async def preview() -> recurrence_pb2.PreviewOccurrencesResponse:
        request = recurrence_pb2.PreviewOccurrencesRequest(rrule="FREQ=DAILY", start=START)
        return await stubs.recurrence.PreviewOccurrences(request, metadata=stubs.alice)

    slow = asyncio.create_task(preview())
    await eventually(started.is_set)
    health = await stubs.health.Check(health_pb2.HealthCheckRequest())
    checked = await stubs.recurrence.ValidateRule(
        recurrence_pb2.ValidateRuleRequest(rrule="FREQ=WEEKLY;BYDAY=MO"), metadata=stubs.alice
    )
    answered_while_slow_ran = not slow.done()
    assert health.status == health_pb2.HealthCheckResponse.SERVING and checked.valid
    assert answered_while_slow_ran
    assert len((await slow).occurrences) == 10


# --- poison events ---------------------------------------------------------------------


def completed_event(rule: str) -> events_pb2.TaskCompleted:
    """A TaskCompleted of a recurring task with rule, as if stored before the checks existed."""
    due = zoned.resolve(datetime(2026, 12, 7, 9), "UTC")
    recurrence = task_pb2.Recurrence(rrule=rule, series_id=str(uuid.uuid4()), occurrence_index=1)
    recurrence.series_start.CopyFrom(due.to_proto())
    task = task_pb2.Task(
        task_id=str(uuid.uuid4()),
        user_id="alice",
        title="Water plants",
        status=task_pb2.TASK_STATUS_COMPLETED,
        due=due.to_proto(),
        recurrence=recurrence,
    )
    task.complete_time.FromDatetime(datetime(2026, 12, 7, 10, tzinfo=UTC))
    return events_pb2.TaskCompleted(user_id="alice", task=task)


def outgoing(event: events_pb2.TaskCompleted) -> OutgoingEvent:
    event_id = str(uuid.uuid4())
    payload = envelope.encode(event, source="/todo/task_svc", subject=event.task.task_id, event_id=event_id)
    return OutgoingEvent(event_id, topics.topic_of(event).name, "alice", topics.event_type_name(event), payload)


async def test_a_host_started_with_a_poison_completion_serves_and_dead_letters_it(kit_settings: Settings) -> None:
    poison = outgoing(completed_event("FREQ=DAILY;INTERVAL=0"))
    async with running_host(kit_settings, []) as first:
        assert first.runtime is not None
        await first.runtime.publish([poison])
    # The recurrence service reads the log from the start: the poison is the first thing it handles.
    async with (
        running_host(kit_settings, [recurrence_unit]) as host,
        grpc.aio.insecure_channel(host.address) as channel,
    ):
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        checked = await recurrence_pb2_grpc.RecurrenceServiceStub(channel).ValidateRule(
            recurrence_pb2.ValidateRuleRequest(rrule="FREQ=DAILY"), metadata=bearer(kit_settings, "alice"), timeout=5
        )
        assert checked.valid

        async def dead_lettered() -> list[str]:
            async with host.databases["todo_runtime"].engine.connect() as conn:
                rows = await conn.execute(
                    sa.select(dead_letters.c.error).where(dead_letters.c.event_id == poison.event_id)
                )
                return [r.error for r in rows]

        errors = await eventually(dead_lettered, timeout=30)
        assert len(errors) == 1 and "cannot be evaluated" in errors[0] and "INTERVAL" in errors[0]


async def test_completions_whose_rule_cannot_be_evaluated_are_dropped_not_retried(
    stubs: Stubs, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = stubs.host.wirings["recurrence_svc"].subscriptions[0].handler

    def decoded(event: events_pb2.TaskCompleted) -> envelope.DecodedEvent:
        return envelope.decode(outgoing(event).payload)

    with pytest.raises(DropEvent, match="INTERVAL"):
        await handler(decoded(completed_event("FREQ=DAILY;INTERVAL=0")))

    def over_budget(task: task_pb2.Task, completed_at: datetime) -> domain.NextOccurrence:
        raise rrules.EvaluationLimit("evaluating the rule needs more than 200000 steps")

    monkeypatch.setattr(domain, "next_occurrence", over_budget)
    with pytest.raises(DropEvent, match="200000 steps"):
        await handler(decoded(completed_event("FREQ=DAILY")))


# --- pruning ---------------------------------------------------------------------------


async def test_pruning_deletes_old_requests_and_ended_series_in_batches(kit_settings: Settings) -> None:
    async with running_host(kit_settings, [recurrence_unit]) as host:
        db = host.databases["todo_recurrence"]
        now = datetime.now(UTC)
        old, recent, cutoff = now - timedelta(days=30), now - timedelta(days=1), now - timedelta(days=7)
        running, deleted, counted, recently_ended, deleted_bare = (str(uuid.uuid4()) for _ in range(5))

        def request(series_id: str, index: int, published_at: datetime | None) -> dict[str, object]:
            return {"series_id": series_id, "occurrence_index": index, "user_id": "alice", "due_at": now,
                    "request": b"", "publish_at": now, "published_at": published_at}  # fmt: skip

        async with db.transaction() as conn:
            await conn.execute(sa.insert(storage.series), [
                {"series_id": series_id, "user_id": "alice", "end_reason": reason, "ended_at": ended}
                for series_id, reason, ended in [(running, None, None), (deleted, "deleted", old),
                                                 (counted, "count", old), (recently_ended, "until", recent),
                                                 (deleted_bare, "deleted", old)]
            ])  # fmt: skip
            await conn.execute(sa.insert(storage.requested), [
                *(request(running, i, old) for i in range(1, 6)),  # published long ago: go
                request(running, 6, recent),  # published lately: stays
                request(running, 7, None),  # waiting for its lead time: stays
                request(deleted, 1, None),  # waiting in a series deleted long ago: goes
                request(counted, 3, None),  # waiting in a series that ended by COUNT: its job will publish it
            ])  # fmt: skip

        assert await storage.prune_requests(db, cutoff, batch=2) == 6
        assert await storage.prune_series(db, cutoff, batch=1) == 2
        async with db.engine.connect() as conn:
            left = {(r.series_id, r.occurrence_index) for r in await conn.execute(sa.select(storage.requested))}
            series_left = {r.series_id for r in await conn.execute(sa.select(storage.series))}
            indexes = set((await conn.execute(sa.text("SELECT indexname FROM pg_indexes"))).scalars())
        assert left == {(running, 6), (running, 7), (counted, 3)}
        assert series_left == {running, counted, recently_ended}
        assert {"requested_occurrences_published_at", "series_ended_at"} <= indexes
        # The host runs them with its other pruning.
        counts = await host.prune()
        assert counts["recurrence_svc.requested_occurrences"] == 0 and counts["recurrence_svc.series"] == 0
