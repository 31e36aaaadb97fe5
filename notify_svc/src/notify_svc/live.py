"""The live feed of new notifications: the kit's per-user fan-out (todo_kit.livefeed) on notify_svc's channel."""

from __future__ import annotations

from notify_svc.settings import NotifySettings
from notify_svc.storage import NEW_NOTIFICATION_CHANNEL
from todo_kit.db import Database
from todo_kit.livefeed import LiveFeed, listener_dsn

LISTENER_NAME = "notify_svc listener"
"""The listening connection's application_name, as pg_stat_activity shows it."""


def notification_feed(db: Database, settings: NotifySettings) -> LiveFeed:
    """The feed that wakes this process's notification streams when a notification of their user commits."""
    return LiveFeed(
        listener_dsn(db),
        channel=NEW_NOTIFICATION_CHANNEL,
        listener_name=LISTENER_NAME,
        max_streams=settings.max_streams,
        max_streams_per_user=settings.max_streams_per_user,
        streams_noun="notification streams",
    )
