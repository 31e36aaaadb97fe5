"""Server wiring: the task service as a unit any runtime can host."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import grpc

from task_svc import storage
from task_svc.handlers import OccurrenceHandler, TaskServicer
from todo_contracts import topics
from todo_contracts.task.v1 import events_pb2, task_service_pb2, task_service_pb2_grpc
from todo_kit.paging import PageTokens
from todo_kit.runtime.port import ServiceUnit, Subscription, UnitContext, UnitWiring

SERVICE_NAME = task_service_pb2.DESCRIPTOR.services_by_name["TaskService"].full_name


async def register(server: grpc.aio.Server, context: UnitContext) -> UnitWiring:
    """Adds TaskService to the server, subscribes to OccurrenceRequested, prunes old client request ids."""
    servicer = TaskServicer(context.db, context.outbox, PageTokens.for_settings(context.settings))
    task_service_pb2_grpc.add_TaskServiceServicer_to_server(servicer, server)
    occurrence = Subscription(
        topic=topics.TASK_EVENTS.name,
        handler=OccurrenceHandler(context.db, context.outbox),
        event_types=frozenset({topics.event_type_name(events_pb2.OccurrenceRequested)}),
    )

    async def prune_create_requests(before: datetime) -> int:
        return await storage.prune_create_requests(context.db, before)

    return UnitWiring(subscriptions=[occurrence], pruners={"create_requests": prune_create_requests})


unit = ServiceUnit(
    app_id="task_svc",
    database="todo_task",
    migrations=Path(__file__).parent / "migrations",
    service_names=(SERVICE_NAME,),
    register=register,
)
