"""The task service's own settings, read from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from todo_kit.config import env_int

FEED_RETENTION_HOURS_MAX = 24 * 365


@dataclass(frozen=True)
class TaskFeedSettings:
    """How the live feed of task changes (StreamTaskChanges) streams and how long it keeps its history.

    TODO_TASK_FEED_HEARTBEAT_SECONDS: a live stream quiet this long gets a
      heartbeat (1 to 3600, default 15), so proxies keep it open.
    TODO_TASK_FEED_MAX_STREAMS: live streams one host holds open at once; more
      are RESOURCE_EXHAUSTED (1 to 1,000,000, default 20,000). Each open stream
      is a call in progress, so TODO_GRPC_MAX_CONCURRENT_RPCS must leave room.
    TODO_TASK_FEED_MAX_STREAMS_PER_USER: live streams one user holds open on
      one host at once (1 to 10,000, default 20).
    TODO_TASK_FEED_RETENTION_HOURS: how long changes are kept for a
      reconnecting client to resume from (1 to 8760, default 72); resuming
      from an older one is OUT_OF_RANGE (the client reloads its list).
    """

    heartbeat_seconds: int = 15
    max_streams: int = 20_000
    max_streams_per_user: int = 20
    retention_hours: int = 72

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TaskFeedSettings:
        """Reads the settings; raises ConfigError naming the first bad one."""
        env = os.environ if env is None else env
        return cls(
            heartbeat_seconds=env_int(env, "TODO_TASK_FEED_HEARTBEAT_SECONDS", 15, 1, 3600),
            max_streams=env_int(env, "TODO_TASK_FEED_MAX_STREAMS", 20_000, 1, 1_000_000),
            max_streams_per_user=env_int(env, "TODO_TASK_FEED_MAX_STREAMS_PER_USER", 20, 1, 10_000),
            retention_hours=env_int(env, "TODO_TASK_FEED_RETENTION_HOURS", 72, 1, FEED_RETENTION_HOURS_MAX),
        )

    @property
    def retention(self) -> timedelta:
        """TODO_TASK_FEED_RETENTION_HOURS as a timedelta."""
        return timedelta(hours=self.retention_hours)
