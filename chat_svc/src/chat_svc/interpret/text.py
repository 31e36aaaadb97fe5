"""A message being read: lower-cased for matching, with the parts the grammar has understood taken out."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from todo_kit import zoned

CUT = "\x00"
"""Marks text taken out: no pattern matches across it, and the words either side stay apart."""
_SPACES = re.compile(r"\s+")
_CUTS = re.compile(CUT + "+")


class Message:
    """The text of a message, from which understood phrases are taken one by one.

    `lower` is what patterns run on (lower case, with every taken phrase
    replaced by CUT characters so positions never shift); `original` keeps the
    user's spelling for titles.
    """

    def __init__(self, text: str) -> None:
        flat = _SPACES.sub(" ", text.replace(CUT, " ")).strip()
        lower = flat.lower()
        # Lower-casing can change the length of a few characters (e.g. "İ"): then titles use the lower case too.
        self.original = flat if len(lower) == len(flat) else lower
        self.lower = lower

    def tail(self, start: int) -> Message:
        """The message from a position on, to be read on its own (positions of the tail start at 0)."""
        tail = Message("")
        tail.original, tail.lower = self.original[start:], self.lower[start:]
        return tail

    def take(self, start: int, end: int) -> None:
        """Marks lower[start:end] as understood."""
        if end > start:
            self.lower = self.lower[:start] + CUT * (end - start) + self.lower[end:]

    def take_match(self, match: re.Match[str]) -> None:
        """Marks a match of a pattern run on lower as understood."""
        self.take(match.start(), match.end())

    def pieces(self) -> list[str]:
        """The parts not taken, in the user's spelling, in order."""
        out: list[str] = []
        position = 0
        for cut in _CUTS.finditer(self.lower):
            out.append(self.original[position : cut.start()])
            position = cut.end()
        out.append(self.original[position:])
        return [piece for piece in out if piece.strip()]

    def rest(self) -> str:
        """What is left, pieces joined by a space (user's spelling)."""
        return _SPACES.sub(" ", " ".join(self.pieces())).strip()

    def rest_lower(self) -> str:
        """What is left, lower case."""
        return self.rest().lower()

    def finditer(self, pattern: re.Pattern[str]) -> Iterator[re.Match[str]]:
        """The pattern's matches in what is left (positions of lower)."""
        return pattern.finditer(self.lower)

    def search(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        """The pattern's first match in what is left."""
        return pattern.search(self.lower)


@dataclass(frozen=True)
class Clock:
    """The user's zone and "now", both as an instant and as the user's wall-clock time."""

    zone_name: str
    zone: ZoneInfo
    now: datetime  # aware UTC
    local_now: datetime  # naive wall-clock time in zone

    @staticmethod
    def of(zone_name: str, reference_time: datetime) -> Clock:
        """The clock of a zone at an instant (a naive reference time is taken as UTC)."""
        zone = zoned.zone_named(zone_name)
        now = reference_time if reference_time.tzinfo is not None else reference_time.replace(tzinfo=UTC)
        now = now.astimezone(UTC)
        return Clock(zone_name, zone, now, now.astimezone(zone).replace(tzinfo=None))

    @property
    def today(self) -> date:
        """The user's date now."""
        return self.local_now.date()

    def local_of(self, instant: datetime) -> datetime:
        """The user's wall-clock time at an instant (naive)."""
        return instant.astimezone(self.zone).replace(tzinfo=None)

    def instant_of(self, local: datetime) -> datetime:
        """The instant of a wall-clock time (a skipped time moves forward, a repeated one is its first pass)."""
        return zoned.resolve(local, self.zone_name).instant

    def resolved_local(self, local: datetime) -> datetime:
        """The wall-clock time the task service stores for local (a skipped time moved forward by the gap)."""
        return zoned.resolve(local, self.zone_name).local

    def start_of(self, day: date) -> datetime:
        """The instant a local day starts."""
        return self.instant_of(datetime.combine(day, time(0, 0)))


def end_of_day(day: date) -> date:
    """The day after (ranges are half-open: a day ends where the next starts)."""
    return day + timedelta(days=1)
