"""RFC 5545 recurrence rules (RRULE values), checked and evaluated in the user's time zone.

Occurrences are computed on wall-clock local times and only then turned into
instants, so 09:00 stays 09:00 across daylight-saving changes. python-dateutil
does the calendar arithmetic; this module corrects it where it differs from
RFC 5545:

- DTSTART is always the first occurrence and counts towards COUNT, even when it
  does not match the rule (dateutil leaves it out);
- a local time that does not exist in the zone (skipped by a daylight-saving
  change) is not an occurrence and is not counted (dateutil emits it);
- UNTIL is compared as an instant when it is given in UTC (the RFC's form when
  DTSTART has a time zone), as a local time otherwise, and is inclusive;
- COUNT and UNTIL together, DTSTART inside the rule and similar are refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime

from dateutil.rrule import rrule, rrulestr

from todo_kit import zoned

MAX_RULE_LENGTH = 500
HORIZON_YEARS = 200
"""Occurrences further than this from the start are not looked for (a todo list's lifetime)."""

_WEEKDAYS = {"MO": "Monday", "TU": "Tuesday", "WE": "Wednesday", "TH": "Thursday", "FR": "Friday",
             "SA": "Saturday", "SU": "Sunday"}  # fmt: skip
_FREQ_UNITS = {"YEARLY": "year", "MONTHLY": "month", "WEEKLY": "week", "DAILY": "day", "HOURLY": "hour",
               "MINUTELY": "minute", "SECONDLY": "second"}  # fmt: skip


@dataclass(frozen=True)
class Occurrence:
    """One occurrence: its position (DTSTART is 1), local time and instant."""

    index: int
    local: datetime
    instant: datetime

    def zoned(self, zone: str) -> zoned.ZonedTime:
        """As a ZonedTime in zone."""
        return zoned.ZonedTime(self.local, zone, self.instant)


def _split(text: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for item in text.strip().split(";"):
        name, _, value = item.partition("=")
        parts[name.strip().upper()] = value.strip()
    return parts


def rule_problems(text: str) -> list[tuple[str, str]]:
    """What is wrong with a rule, as (rule part, message) pairs; empty when valid."""
    if not text.strip():
        return [("", "the rule is empty")]
    if len(text) > MAX_RULE_LENGTH:
        return [("", f"the rule is longer than {MAX_RULE_LENGTH} characters")]
    body = text.strip()
    if body.upper().startswith("RRULE:"):
        return [("", 'give the rule without the "RRULE:" prefix')]
    if any(c in body for c in "\r\n"):
        return [("", "the rule must be one line (DTSTART and EXDATE are not accepted)")]
    parts: dict[str, str] = {}
    for item in body.split(";"):
        name, sep, value = item.partition("=")
        name = name.strip().upper()
        if not sep or not name or not value:
            return [(name, f"{item!r} is not NAME=VALUE")]
        if name in parts:
            return [(name, "appears twice")]
        parts[name] = value
    problems: list[tuple[str, str]] = []
    if "FREQ" not in parts:
        problems.append(("FREQ", "is required (SECONDLY ... YEARLY)"))
    if "COUNT" in parts and "UNTIL" in parts:
        problems.append(("UNTIL", "COUNT and UNTIL must not both be given"))
    if "DTSTART" in parts:
        problems.append(("DTSTART", "is taken from the task's due time, not the rule"))
    if "COUNT" in parts and (not parts["COUNT"].isdigit() or int(parts["COUNT"]) < 1):
        problems.append(("COUNT", "must be a whole number of at least 1"))
    if "UNTIL" in parts:
        try:
            _parse_until(parts["UNTIL"])
        except ValueError as exc:
            problems.append(("UNTIL", str(exc)))
    if problems:
        return problems
    try:
        rrulestr(_without(body, "UNTIL"), dtstart=datetime(2000, 1, 1))
    except (ValueError, TypeError) as exc:
        message = str(exc)
        part = next((p for p in parts if p in message.upper()), "")
        return [(part, message)]
    return []


def _without(text: str, *names: str) -> str:
    return ";".join(item for item in text.strip().split(";") if item.partition("=")[0].strip().upper() not in names)


def _parse_until(value: str) -> date | datetime:
    """UNTIL as a date, a naive local date-time, or an aware UTC date-time."""
    try:
        if len(value) == 8:
            return datetime.strptime(value, "%Y%m%d").date()
        if value.endswith("Z"):
            return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        return datetime.strptime(value, "%Y%m%dT%H%M%S")
    except ValueError:
        raise ValueError(f"{value!r} is not a date (20261231) or date-time (20261231T235959Z)") from None


def check_rule(text: str) -> None:
    """Raises ValueError naming what is wrong with a rule."""
    problems = rule_problems(text)
    if problems:
        raise ValueError("; ".join(f"{part}: {msg}" if part else msg for part, msg in problems))


def occurrences(text: str, start: datetime, zone: str) -> Iterator[Occurrence]:
    """The occurrences of a rule from a naive local start in zone, in order, as RFC 5545 defines them.

    Ends at COUNT, UNTIL or HORIZON_YEARS after the start; raises ValueError for a bad rule or zone.
    """
    check_rule(text)
    tz = zoned.zone_named(zone)
    parts = _split(text)
    count = int(parts["COUNT"]) if "COUNT" in parts else None
    until = _parse_until(parts["UNTIL"]) if "UNTIL" in parts else None
    horizon = start.replace(year=min(start.year + HORIZON_YEARS, 9999), month=1, day=1)
    engine = rrulestr(_without(text, "COUNT", "UNTIL"), dtstart=start)
    assert isinstance(engine, rrule)
    engine = engine.replace(until=horizon)

    def within_until(local: datetime, instant: datetime) -> bool:
        if until is None:
            return True
        if isinstance(until, datetime) and until.tzinfo is not None:
            return instant <= until
        if isinstance(until, datetime):
            return local <= until
        return local.date() <= until

    first = zoned.resolve(start, zone)
    if not within_until(first.local, first.instant):
        return
    index = 1
    yield Occurrence(1, first.local, first.instant)
    for local in engine:
        if count is not None and index >= count:
            return
        if local <= start:
            continue
        instant = local.replace(tzinfo=tz, fold=0).astimezone(UTC)
        if instant.astimezone(tz).replace(tzinfo=None) != local:
            continue  # skipped by a daylight-saving change: not an occurrence, not counted
        if not within_until(local, instant):
            return
        index += 1
        yield Occurrence(index, local, instant)


def first_after(text: str, start: datetime, zone: str, instant: datetime, *, min_index: int = 1) -> Occurrence | None:
    """The first occurrence with index >= min_index strictly after instant, or None when the rule ends first."""
    for occurrence in occurrences(text, start, zone):
        if occurrence.index >= min_index and occurrence.instant > instant:
            return occurrence
    return None


def never_occurs_again(text: str) -> bool:
    """True for a rule with no occurrence besides its start (e.g. February 30), tried from a leap year's start."""
    start = datetime(2024, 1, 1, 9, 0)
    return first_after(text, start, "UTC", zoned.resolve(start, "UTC").instant) is None


def describe(text: str) -> str:
    """The rule in plain English, e.g. "every 2 weeks on Monday and Friday, 10 times"."""
    parts = _split(text)
    unit = _FREQ_UNITS.get(parts.get("FREQ", ""), "time")
    interval = int(parts.get("INTERVAL", "1") or 1)
    words = [f"every {unit}" if interval == 1 else f"every {interval} {unit}s"]
    if "BYMONTH" in parts:
        months = [date(2000, int(m), 1).strftime("%B") for m in parts["BYMONTH"].split(",") if m.isdigit()]
        words.append("in " + _join(months))
    if "BYDAY" in parts:
        words.append("on " + _join([_weekday(d) for d in parts["BYDAY"].split(",")]))
    if "BYMONTHDAY" in parts:
        words.append("on the " + _join([_ordinal_day(d) for d in parts["BYMONTHDAY"].split(",")]) + " day")
    if "BYSETPOS" in parts:
        words.append("(occurrence " + _join([_ordinal(p) for p in parts["BYSETPOS"].split(",")]) + " of each period)")
    limits = []
    if "COUNT" in parts:
        limits.append(f"{parts['COUNT']} times")
    if "UNTIL" in parts:
        try:
            end = _parse_until(parts["UNTIL"])
            limits.append("until " + (end.date() if isinstance(end, datetime) else end).isoformat())
        except ValueError:
            pass
    return ", ".join([" ".join(words), *limits])


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _ordinal(value: str) -> str:
    n = int(value)
    if n == -1:
        return "last"
    if n < 0:
        return f"{_suffix(-n)} to last"
    return _suffix(n)


def _suffix(n: int) -> str:
    end = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{end}"


def _ordinal_day(value: str) -> str:
    return _ordinal(value) if value.lstrip("-").isdigit() else value


def _weekday(value: str) -> str:
    day = _WEEKDAYS.get(value[-2:].upper(), value)
    prefix = value[:-2]
    return f"the {_ordinal(prefix)} {day}" if prefix.lstrip("+-").isdigit() else day
