"""Server wiring: the task service as a unit any runtime can host."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import grpc

from task_svc import storage
from task_svc.domain import ChangeIds
from task_svc.handlers import OccurrenceHandler, TaskServicer
from task_svc.settings import TaskFeedSettings
from todo_contracts import topics
from todo_contracts.task.v1 import events_pb2, task_service_pb2, task_service_pb2_grpc
from todo_kit.auth import signing_key_for
from todo_kit.livefeed import LiveFeed, listener_dsn, warn_if_streams_crowd_out_calls
from todo_kit.paging import PageTokens
from todo_kit.runtime.port import ServiceUnit, Subscription, UnitContext, UnitWiring
from todo_kit.zoned import now_utc

SERVICE_NAME = task_service_pb2.DESCRIPTOR.services_by_name["TaskService"].full_name
FEED_LISTENER_NAME = "task_svc listener"
"""The task feed's listening connection's application_name, as pg_stat_activity shows it."""


def build_unit(*, feed_settings: TaskFeedSettings | None = None) -> ServiceUnit:
    """The task unit; the feed's settings default to the environment's (tests pass their own)."""

    async def register(server: grpc.aio.Server, context: UnitContext) -> UnitWiring:
        """Adds TaskService, subscribes to OccurrenceRequested, runs the live feed, prunes what ages out."""
        settings = feed_settings or TaskFeedSettings.from_env()
        warn_if_streams_crowd_out_calls(settings.max_streams, "TODO_TASK_FEED_MAX_STREAMS", context.settings)
        feed = LiveFeed(
            listener_dsn(context.db),
            channel=storage.TASK_CHANGES_CHANNEL,
            listener_name=FEED_LISTENER_NAME,
            max_streams=settings.max_streams,
            max_streams_per_user=settings.max_streams_per_user,
            streams_noun="task change streams",
        )
        servicer = TaskServicer(
            context.db, context.outbox, PageTokens.for_settings(context.settings), feed,
            ChangeIds.derived_from(signing_key_for(context.settings)), settings,
        )  # fmt: skip
        task_service_pb2_grpc.add_TaskServiceServicer_to_server(servicer, server)
        occurrence = Subscription(
            topic=topics.TASK_EVENTS.name,
            handler=OccurrenceHandler(context.db, context.outbox),
            event_types=frozenset({topics.event_type_name(events_pb2.OccurrenceRequested)}),
        )

        async def prune_create_requests(before: datetime) -> int:
            return await storage.prune_create_requests(context.db, before)

        async def prune_changes(_before: datetime) -> int:
            # The feed keeps its own retention (hours), not the host's (days).
            return await storage.prune_changes(context.db, now_utc() - settings.retention)

        return UnitWiring(
            subscriptions=[occurrence],
            background=[feed.run],
            on_drain=[feed.close],
            pruners={"create_requests": prune_create_requests, "task_changes": prune_changes},
        )

    return ServiceUnit(
        app_id="task_svc",
        database="todo_task",
        migrations=Path(__file__).parent / "migrations",
        service_names=(SERVICE_NAME,),
        register=register,
    )


unit = build_unit()
