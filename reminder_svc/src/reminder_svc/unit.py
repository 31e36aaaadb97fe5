"""Server wiring: the reminder service as a unit any runtime can host."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import grpc

from reminder_svc import domain, storage
from reminder_svc.handlers import APP_ID, ReminderPlanner, ReminderServicer
from todo_contracts import topics
from todo_contracts.reminder.v1 import reminder_pb2, reminder_pb2_grpc
from todo_contracts.task.v1 import events_pb2
from todo_kit.paging import PageTokens
from todo_kit.runtime.port import ServiceUnit, Subscription, UnitContext, UnitWiring

SERVICE_NAME = reminder_pb2.DESCRIPTOR.services_by_name["ReminderService"].full_name
PLANNED_FROM = (
    events_pb2.TaskCreated,
    events_pb2.TaskUpdated,
    events_pb2.TaskCompleted,
    events_pb2.TaskReopened,
    events_pb2.TaskDeleted,
)


async def register(server: grpc.aio.Server, context: UnitContext) -> UnitWiring:
    """Adds ReminderService; plans from task events; fires reminder and snooze jobs; prunes what is done."""
    planner = ReminderPlanner(context.db, context.outbox, context.runtime)
    reminder_pb2_grpc.add_ReminderServiceServicer_to_server(
        ReminderServicer(context.db, context.outbox, context.runtime, PageTokens.for_settings(context.settings)), server
    )
    subscription = Subscription(
        topic=topics.TASK_EVENTS.name,
        handler=planner,
        event_types=frozenset(topics.event_type_name(t) for t in PLANNED_FROM),
    )
    retention = timedelta(days=context.settings.retention_days)

    async def prune_reminders(cutoff: datetime) -> int:
        return await storage.prune_reminders(context.db, cutoff)

    async def prune_task_plans(cutoff: datetime) -> int:
        return await storage.prune_task_plans(context.db, domain.closed_plans_cutoff(cutoff, retention))

    return UnitWiring(
        subscriptions=[subscription],
        job_handlers={"reminder/": planner.fire, "snooze/": planner.fire},
        # Reminders first: a closed task's plan goes only once its reminders have.
        pruners={"reminders": prune_reminders, "task_plans": prune_task_plans},
    )


unit = ServiceUnit(
    app_id=APP_ID,
    database="todo_reminder",
    migrations=Path(__file__).parent / "migrations",
    service_names=(SERVICE_NAME,),
    register=register,
)
