"""Wall-clock times in IANA zones (todo.common.v1.ZonedDateTime) and their instants.

Every service that reads a due time or a reminder time goes through here, so
the user's zone is always the one used, never the server's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from google.protobuf import timestamp_pb2

from todo_contracts.common.v1 import common_pb2

_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M")


@dataclass(frozen=True)
class ZonedTime:
    """A local wall-clock time in a zone, and the instant it denotes."""

    local: datetime  # naive
    zone: str
    instant: datetime  # aware, UTC

    def to_proto(self) -> common_pb2.ZonedDateTime:
        """As todo.common.v1.ZonedDateTime (local time with seconds)."""
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(self.instant)
        return common_pb2.ZonedDateTime(
            local_time=self.local.strftime("%Y-%m-%dT%H:%M:%S"), time_zone=self.zone, instant=stamp
        )


def now_utc() -> datetime:
    """The current instant, always aware and in UTC (never the server's zone)."""
    return datetime.now(UTC)


def zone_named(name: str) -> ZoneInfo:
    """The IANA zone called name; raises ValueError for an unknown or malformed name."""
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        raise ValueError(f"{name!r} is not an IANA time zone name")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"{name!r} is not a known IANA time zone") from None


def parse_local(text: str) -> datetime:
    """Parses "YYYY-MM-DDTHH:MM[:SS]" into a naive datetime; raises ValueError."""
    for fmt in _FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a local time like 2026-12-01T09:00 or 2026-12-01T09:00:00")


def resolve(local: datetime, zone_name: str) -> ZonedTime:
    """The instant of a local time in a zone.

    An ambiguous time (repeated when clocks go back) is its first occurrence;
    a nonexistent one (skipped when clocks go forward) moves forward by the
    gap, e.g. 02:30 on a spring-forward night becomes 03:30 - both from
    zoneinfo's fold=0 offset, applied consistently.
    """
    zone = zone_named(zone_name)
    aware = local.replace(tzinfo=zone, fold=0)
    instant = aware.astimezone(UTC)
    wall = instant.astimezone(zone).replace(tzinfo=None)
    return ZonedTime(local=wall, zone=zone_name, instant=instant)


def from_proto(value: common_pb2.ZonedDateTime) -> ZonedTime:
    """Checks and resolves a ZonedDateTime; raises ValueError naming the bad part."""
    local = parse_local(value.local_time)
    return resolve(local, value.time_zone)
