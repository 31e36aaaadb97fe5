"""Server wiring: the recurrence engine as a unit any runtime can host."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import grpc

from recurrence_svc.handlers import APP_ID, JOB_PREFIX, RecurrenceServicer, SeriesHandler, evaluation_pool
from recurrence_svc.storage import prune_requests, prune_series
from todo_contracts import topics
from todo_contracts.recurrence.v1 import recurrence_pb2, recurrence_pb2_grpc
from todo_contracts.task.v1 import events_pb2
from todo_kit.runtime.port import ServiceUnit, Subscription, UnitContext, UnitWiring

SERVICE_NAME = recurrence_pb2.DESCRIPTOR.services_by_name["RecurrenceService"].full_name


async def register(server: grpc.aio.Server, context: UnitContext) -> UnitWiring:
    """Adds RecurrenceService; subscribes to completions and deletions; handles lead-time jobs; prunes."""
    pool = evaluation_pool()
    recurrence_pb2_grpc.add_RecurrenceServiceServicer_to_server(RecurrenceServicer(pool), server)
    series = SeriesHandler(context.db, context.outbox, context.runtime, pool)
    subscription = Subscription(
        topic=topics.TASK_EVENTS.name,
        handler=series,
        event_types=frozenset(topics.event_type_name(t) for t in (events_pb2.TaskCompleted, events_pb2.TaskDeleted)),
    )

    async def close_pool() -> None:
        pool.close()

    return UnitWiring(
        subscriptions=[subscription],
        job_handlers={JOB_PREFIX: series.publish_due_request},
        on_stop=[close_pool],
        # Requests first: a series goes only once it has none left.
        pruners={"requested_occurrences": partial(prune_requests, context.db),
                 "series": partial(prune_series, context.db)},
    )  # fmt: skip


unit = ServiceUnit(
    app_id=APP_ID,
    database="todo_recurrence",
    migrations=Path(__file__).parent / "migrations",
    service_names=(SERVICE_NAME,),
    register=register,
)
