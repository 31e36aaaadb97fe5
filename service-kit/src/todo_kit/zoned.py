"""Wall-clock times in IANA zones (todo.common.v1.ZonedDateTime) and their instants.

Every service that reads a due time or a reminder time goes through here, so
the user's zone is always the one used, never the server's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from google.protobuf import timestamp_pb2

from todo_contracts.common.v1 import common_pb2

_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M")
YEAR_MIN = 1000
YEAR_MAX = 9999
"""Local times and their instants stay within these years: every zone conversion of them stays a datetime."""

# Names in the zone database that are not a place's zone: the server's own
# zone ("localtime"), a placeholder ("Factory") and the POSIX default rules.
_NOT_REGION_ZONES = frozenset({"localtime", "Factory", "posixrules"})


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


@functools.cache
def known_zone_names() -> frozenset[str]:
    """The IANA zone names accepted as a user's zone (read once): the zone database minus names that are no place."""
    return frozenset(
        name
        for name in available_timezones()
        if name not in _NOT_REGION_ZONES and not name.startswith(("posix/", "right/"))
    )


def zone_named(name: str) -> ZoneInfo:
    """The IANA zone called name; raises ValueError for an unknown or malformed name.

    Only names of the zone database are accepted, never the server's own zone
    ("localtime") or placeholders such as "Factory" and "posixrules".
    """
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name or not name.isprintable():
        raise ValueError(f"{name[:64]!r} is not an IANA time zone name")
    if name not in known_zone_names():
        raise ValueError(f"{name!r} is not a known IANA time zone (e.g. Europe/Berlin or UTC)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"{name!r} is not a known IANA time zone") from None


def parse_local(text: str) -> datetime:
    """Parses "YYYY-MM-DDTHH:MM[:SS]" into a naive datetime of a year from 1000 to 9999; raises ValueError."""
    for fmt in _FORMATS:
        try:
            local = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if not YEAR_MIN <= local.year <= YEAR_MAX:
            raise ValueError(f"the year must be between {YEAR_MIN} and {YEAR_MAX}, got {local.year}")
        return local
    raise ValueError(f"{text[:64]!r} is not a local time like 2026-12-01T09:00 or 2026-12-01T09:00:00")


def resolve(local: datetime, zone_name: str) -> ZonedTime:
    """The instant of a local time in a zone.

    An ambiguous time (repeated when clocks go back) is its first occurrence;
    a nonexistent one (skipped when clocks go forward) moves forward by the
    gap, e.g. 02:30 on a spring-forward night becomes 03:30 - both from
    zoneinfo's fold=0 offset, applied consistently.
    """
    zone = zone_named(zone_name)
    aware = local.replace(tzinfo=zone, fold=0)
    try:
        instant = aware.astimezone(UTC)
        wall = instant.astimezone(zone).replace(tzinfo=None)
    except OverflowError:  # the last or first hours of the datetime range, shifted out of it by the zone
        raise ValueError(f"the time must be between the years {YEAR_MIN} and {YEAR_MAX} in UTC too") from None
    if not (YEAR_MIN <= instant.year <= YEAR_MAX and YEAR_MIN <= wall.year <= YEAR_MAX):
        raise ValueError(f"the time must be between the years {YEAR_MIN} and {YEAR_MAX} in UTC too")
    return ZonedTime(local=wall, zone=zone_name, instant=instant)


def from_proto(value: common_pb2.ZonedDateTime) -> ZonedTime:
    """Checks and resolves a ZonedDateTime; raises ValueError naming the bad part."""
    local = parse_local(value.local_time)
    return resolve(local, value.time_zone)
