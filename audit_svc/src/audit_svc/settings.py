"""The audit service's own settings, read from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from todo_kit.config import env_int

RETENTION_DAYS_MAX = 36_500


@dataclass(frozen=True)
class AuditSettings:
    """TODO_AUDIT_RETENTION_DAYS: how long activity entries are kept, in days; 0 (the default) keeps them forever.

    Pruning removes a user's oldest entries once they are older than that and
    keeps the rest verifiable: the hash of the last removed entry stays as the
    chain's anchor, and VerifyLog reports how far entries were removed.
    """

    retention_days: int = 0

    @property
    def retention(self) -> timedelta | None:
        """How long entries are kept; None for ever."""
        return timedelta(days=self.retention_days) if self.retention_days else None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AuditSettings:
        """Reads the settings; raises ConfigError naming a bad one."""
        env = os.environ if env is None else env
        return cls(retention_days=env_int(env, "TODO_AUDIT_RETENTION_DAYS", 0, 0, RETENTION_DAYS_MAX))
