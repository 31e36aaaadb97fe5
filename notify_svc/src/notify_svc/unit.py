"""Server wiring: the notification service as a unit any runtime can host."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

import grpc

from notify_svc import storage
from notify_svc.handlers import APP_ID, DeliveryJobs, NotificationCreator, NotificationServicer
from notify_svc.live import notification_feed
from notify_svc.senders import Channels, load_channels
from notify_svc.settings import NotifySettings
from todo_contracts import topics
from todo_contracts.notify.v1 import notify_pb2, notify_pb2_grpc
from todo_contracts.reminder.v1 import events_pb2 as reminder_events
from todo_kit.livefeed import warn_if_streams_crowd_out_calls
from todo_kit.paging import PageTokens
from todo_kit.runtime.port import ServiceUnit, Subscription, UnitContext, UnitWiring

log = logging.getLogger(__name__)

SERVICE_NAME = notify_pb2.DESCRIPTOR.services_by_name["NotificationService"].full_name
UNREAD_RETENTION_FACTOR = 10
"""Unread notifications are kept ten times as long as read ones (TODO_RETENTION_DAYS)."""


def build_unit(*, settings: NotifySettings | None = None, channels: Channels | None = None) -> ServiceUnit:
    """The notification unit; settings default to the environment's, channels to notify_svc.channels'.

    Tests pass their own settings and channels (senders that fail on purpose,
    say) through here rather than patching modules.
    """

    async def register(server: grpc.aio.Server, context: UnitContext) -> UnitWiring:
        """Adds NotificationService; creates notifications from ReminderDue; runs delivery jobs; prunes."""
        notify_settings = settings or NotifySettings.from_env()
        used = channels or load_channels(notify_settings)
        warn_if_streams_crowd_out_calls(notify_settings.max_streams, "TODO_NOTIFY_MAX_STREAMS", context.settings)
        db = context.db
        feed = notification_feed(db, notify_settings)
        jobs = DeliveryJobs(db, context.outbox, context.runtime, notify_settings, used)
        creator = NotificationCreator(db, context.outbox, notify_settings, used, jobs)
        notify_pb2_grpc.add_NotificationServiceServicer_to_server(
            NotificationServicer(db, notify_settings, used, feed, PageTokens.for_settings(context.settings)), server
        )
        subscription = Subscription(
            topic=topics.REMINDER_EVENTS.name,
            handler=creator,
            event_types=frozenset({topics.event_type_name(reminder_events.ReminderDue)}),
        )
        retention = timedelta(days=context.settings.retention_days)

        async def prune_notifications(cutoff: datetime) -> int:
            unread_cutoff = cutoff - (UNREAD_RETENTION_FACTOR - 1) * retention
            return await storage.prune_notifications(db, cutoff, unread_cutoff)

        async def prune_endpoints(cutoff: datetime) -> int:
            return await storage.prune_endpoints(db, cutoff)

        async def stop() -> None:
            await used.close()

        return UnitWiring(
            subscriptions=[subscription],
            job_handlers={"webhook/": jobs.webhook, "email/": jobs.email},
            background=[feed.run, jobs.sweep_periodically],
            on_drain=[feed.close],
            on_stop=[stop],
            pruners={"notifications": prune_notifications, "endpoint_backoff": prune_endpoints},
        )

    return ServiceUnit(
        app_id=APP_ID,
        database="todo_notify",
        migrations=Path(__file__).parent / "migrations",
        service_names=(SERVICE_NAME,),
        register=register,
    )


unit = build_unit()
