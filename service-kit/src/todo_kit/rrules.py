"""RFC 5545 recurrence rules (RRULE values): checked strictly, evaluated in the user's time zone with bounded work.

Occurrences are computed on wall-clock local times and only then turned into
instants, so 09:00 stays 09:00 across daylight-saving changes. The rules are
those of RFC 5545 section 3.3.10:

- every part is checked against the RFC's grammar and restrictions (INTERVAL
  at least 1, numbered BYDAY only with MONTHLY or YEARLY, BYWEEKNO only with
  YEARLY, BYSETPOS only with another BYxxx part, ...), within limits of our own
  (MAX_INTERVAL, MAX_COUNT, no value listed twice); a rule that no calendar
  date can satisfy (February 30) is refused as one that never occurs;
- DTSTART is always the first occurrence and counts towards COUNT, even when
  it does not match the rule;
- a local time that does not exist in the zone (skipped by a daylight-saving
  change) is not an occurrence and is not counted;
- UNTIL is compared as an instant when it is given in UTC (the RFC's form when
  DTSTART has a time zone), as a local time otherwise, and is inclusive;
- BYDAY mixing plain and numbered weekdays (MO,1TU) means either, as the RFC
  says.

Work is bounded. A rule's instances come in blocks (a year, month or week for
YEARLY, MONTHLY and WEEKLY rules; a day for DAILY and finer ones) whose sizes
follow from the calendar, so a position years ahead is reached by summing
block sizes - whole INTERVAL periods at a time - never by stepping through the
instances. No occurrence further than HORIZON_YEARS from the start is looked
for, and every evaluation runs on a Budget (steps and a deadline): running out
raises EvaluationLimit.
"""

from __future__ import annotations

import calendar
import functools
import math
import re
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from todo_kit import zoned

MAX_RULE_LENGTH = 500
MAX_INTERVAL = 1000
"""The largest INTERVAL accepted (every 1000 days, months, ...)."""
MAX_COUNT = 10_000
"""The largest COUNT accepted."""
HORIZON_YEARS = 200
"""Occurrences further than this from the start are not looked for (a todo list's lifetime)."""
EVALUATION_STEPS = 200_000
"""Units of work one evaluation may do: a block (day, week, month, year) examined, an occurrence produced, ..."""
EVALUATION_SECONDS = 2.0
"""Time one evaluation may take."""

YEARLY, MONTHLY, WEEKLY, DAILY, HOURLY, MINUTELY, SECONDLY = range(7)
FREQUENCIES = ("YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY", "MINUTELY", "SECONDLY")
_WEEKDAY_CODES = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")  # index = Python's weekday()
_WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_FREQ_UNITS = ("year", "month", "week", "day", "hour", "minute", "second")
_UNIT_SECONDS = {DAILY: 86400, HOURLY: 3600, MINUTELY: 60, SECONDLY: 1}
_PARTS = ("FREQ", "UNTIL", "COUNT", "INTERVAL", "BYSECOND", "BYMINUTE", "BYHOUR", "BYDAY", "BYMONTHDAY", "BYYEARDAY",
          "BYWEEKNO", "BYMONTH", "BYSETPOS", "WKST")  # fmt: skip
# Number lists: part -> (smallest, largest, whether a sign is allowed: then -largest..-smallest too).
_NUMBER_LISTS = {
    "BYSECOND": (0, 60, False),
    "BYMINUTE": (0, 59, False),
    "BYHOUR": (0, 23, False),
    "BYMONTHDAY": (1, 31, True),
    "BYYEARDAY": (1, 366, True),
    "BYWEEKNO": (1, 53, True),
    "BYMONTH": (1, 12, False),
    "BYSETPOS": (1, 366, True),
}
_NUMBER = re.compile(r"([+-]?)([0-9]{1,3})\Z")
_WEEKDAY_NUMBER = re.compile(r"([+-]?)([0-9]{1,2})?([A-Z]{2})\Z")
_CUMULATIVE_DAYS = {
    False: (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365),
    True: (0, 31, 60, 91, 121, 152, 182, 213, 244, 274, 305, 335, 366),
}
_ONE_SECOND = timedelta(seconds=1)


class RuleError(ValueError):
    """A rule that is not valid; problems holds (rule part, message) pairs."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{part}: {message}" if part else message for part, message in self.problems))


class EvaluationLimit(Exception):
    """Evaluating a rule needed more work or time than one evaluation may take."""


class Budget:
    """The work (steps) and time one evaluation may take; spend() raises EvaluationLimit when either runs out."""

    def __init__(self, steps: int = EVALUATION_STEPS, seconds: float = EVALUATION_SECONDS) -> None:
        self.steps = steps
        self.seconds = seconds
        self.spent = 0
        self._deadline = time.monotonic() + seconds
        self._next_clock_check = 0

    def spend(self, steps: int = 1) -> None:
        """Accounts for steps of work."""
        self.spent += steps
        if self.spent > self.steps:
            raise EvaluationLimit(f"evaluating the rule needs more than {self.steps} steps")
        if self.spent >= self._next_clock_check:
            self._next_clock_check = self.spent + 512
            if time.monotonic() > self._deadline:
                raise EvaluationLimit(f"evaluating the rule takes longer than {self.seconds:g} s")


@dataclass(frozen=True)
class Rule:
    """A checked rule. Empty tuples are parts not given; byday holds (ordinal or 0, weekday 0=Monday)."""

    freq: int
    interval: int = 1
    count: int | None = None
    until: date | datetime | None = None
    wkst: int = 0
    bysecond: tuple[int, ...] = ()
    byminute: tuple[int, ...] = ()
    byhour: tuple[int, ...] = ()
    byday: tuple[tuple[int, int], ...] = ()
    bymonthday: tuple[int, ...] = ()
    byyearday: tuple[int, ...] = ()
    byweekno: tuple[int, ...] = ()
    bymonth: tuple[int, ...] = ()
    bysetpos: tuple[int, ...] = ()


@dataclass(frozen=True)
class Occurrence:
    """One occurrence: its position (DTSTART is 1), local time and instant."""

    index: int
    local: datetime
    instant: datetime

    def zoned(self, zone: str) -> zoned.ZonedTime:
        """As a ZonedTime in zone."""
        return zoned.ZonedTime(self.local, zone, self.instant)


# --- checking -----------------------------------------------------------------


def rule_problems(text: str) -> list[tuple[str, str]]:
    """What is wrong with a rule, as (rule part, message) pairs; empty when valid.

    Cheap enough for a request path: the grammar check is linear in the rule's
    length and deciding that a rule never occurs looks at a few hundred
    calendar months at most (and is cached per rule).
    """
    return list(_checked(text)[1])


def check_rule(text: str) -> None:
    """Raises RuleError (a ValueError) naming what is wrong with a rule."""
    parse(text)


def parse(text: str) -> Rule:
    """The checked rule; raises RuleError (a ValueError) naming what is wrong with it."""
    rule, problems = _checked(text)
    if problems or rule is None:
        raise RuleError(problems)
    return rule


@functools.lru_cache(maxsize=2048)
def _checked(text: str) -> tuple[Rule | None, tuple[tuple[str, str], ...]]:
    rule, problems = _parse(text)
    if rule is not None and not problems and never_occurs(rule):
        problems = [("", "the rule never occurs: no date and time match all its parts (e.g. February 30)")]
    return (rule if not problems else None), tuple(problems)


def _parse(text: str) -> tuple[Rule | None, list[tuple[str, str]]]:
    if not text.strip():
        return None, [("", "the rule is empty")]
    if len(text) > MAX_RULE_LENGTH:
        return None, [("", f"the rule is longer than {MAX_RULE_LENGTH} characters")]
    body = text.strip()
    if body.upper().startswith("RRULE:"):
        return None, [("", 'give the rule without the "RRULE:" prefix')]
    if any(c in body for c in "\r\n"):
        return None, [("", "the rule must be one line (DTSTART and EXDATE are not accepted)")]
    parts: dict[str, str] = {}
    for item in body.split(";"):
        name, sep, value = item.partition("=")
        name, value = name.strip().upper(), value.strip().upper()
        if not sep or not name or not value:
            return None, [(name, f"{item!r} is not NAME=VALUE")]
        if name in parts:
            return None, [(name, "appears twice")]
        parts[name] = value
    problems: list[tuple[str, str]] = []
    for name in parts:
        if name == "DTSTART":
            problems.append(("DTSTART", "is taken from the task's due time, not the rule"))
        elif name not in _PARTS:
            problems.append((name, "is not a rule part (FREQ, UNTIL, COUNT, INTERVAL, BYxxx or WKST)"))
    freq: int | None = None
    if "FREQ" not in parts:
        problems.append(("FREQ", "is required (SECONDLY ... YEARLY)"))
    elif parts["FREQ"] not in FREQUENCIES:
        problems.append(("FREQ", f"{parts['FREQ']!r} is not one of {', '.join(reversed(FREQUENCIES))}"))
    else:
        freq = FREQUENCIES.index(parts["FREQ"])
    interval = _whole_number(parts, "INTERVAL", 1, MAX_INTERVAL, problems)
    count = _whole_number(parts, "COUNT", 1, MAX_COUNT, problems) if "COUNT" in parts else None
    until: date | datetime | None = None
    if "COUNT" in parts and "UNTIL" in parts:
        problems.append(("UNTIL", "COUNT and UNTIL must not both be given"))
    elif "UNTIL" in parts:
        try:
            until = _parse_until(parts["UNTIL"])
        except ValueError as exc:
            problems.append(("UNTIL", str(exc)))
    wkst = 0
    if "WKST" in parts:
        if parts["WKST"] in _WEEKDAY_CODES:
            wkst = _WEEKDAY_CODES.index(parts["WKST"])
        else:
            problems.append(("WKST", f"{parts['WKST']!r} is not a weekday (MO, TU, WE, TH, FR, SA, SU)"))
    numbers = {name: _number_list(parts, name, problems) for name in _NUMBER_LISTS}
    byday = _weekday_list(parts, problems)
    if freq is not None:
        problems.extend(_combination_problems(freq, parts, byday))
    if problems or freq is None:
        return None, problems
    rule = Rule(
        freq=freq,
        interval=interval or 1,
        count=count,
        until=until,
        wkst=wkst,
        bysecond=numbers["BYSECOND"],
        byminute=numbers["BYMINUTE"],
        byhour=numbers["BYHOUR"],
        byday=byday,
        bymonthday=numbers["BYMONTHDAY"],
        byyearday=numbers["BYYEARDAY"],
        byweekno=numbers["BYWEEKNO"],
        bymonth=numbers["BYMONTH"],
        bysetpos=numbers["BYSETPOS"],
    )
    return rule, []


def _whole_number(parts: dict[str, str], name: str, low: int, high: int, problems: list[tuple[str, str]]) -> int | None:
    if name not in parts:
        return None
    value = parts[name]
    if not value.isdigit() or not low <= int(value) <= high:
        problems.append((name, f"must be a whole number from {low} to {high}, not {value!r}"))
        return None
    return int(value)


def _number_list(parts: dict[str, str], name: str, problems: list[tuple[str, str]]) -> tuple[int, ...]:
    if name not in parts:
        return ()
    low, high, signed = _NUMBER_LISTS[name]
    allowed = f"{low} to {high}" + (f" or -{low} to -{high}" if signed else "")
    values: list[int] = []
    for item in parts[name].split(","):
        match = _NUMBER.match(item)
        number = None
        if match and (signed or not match.group(1)) and len(match.group(2)) <= len(str(high)):
            number = int(match.group(2)) * (-1 if match.group(1) == "-" else 1)
        if number is None or not low <= abs(number) <= high or (signed and number == 0):
            problems.append((name, f"{item!r} is not allowed: use {allowed}"))
            return ()
        if number in values:
            problems.append((name, f"{item!r} is listed twice"))
            return ()
        values.append(number)
    return tuple(sorted(values))


def _weekday_list(parts: dict[str, str], problems: list[tuple[str, str]]) -> tuple[tuple[int, int], ...]:
    if "BYDAY" not in parts:
        return ()
    days: list[tuple[int, int]] = []
    for item in parts["BYDAY"].split(","):
        match = _WEEKDAY_NUMBER.match(item)
        if not match or match.group(3) not in _WEEKDAY_CODES or (match.group(1) and not match.group(2)):
            problems.append(("BYDAY", f"{item!r} is not a weekday such as MO, 1MO or -1FR"))
            return ()
        ordinal = int(match.group(2) or 0) * (-1 if match.group(1) == "-" else 1)
        if match.group(2) is not None and not 1 <= abs(ordinal) <= 53:
            problems.append(("BYDAY", f"{item!r}: the number before the weekday must be 1 to 53 or -1 to -53"))
            return ()
        day = (ordinal, _WEEKDAY_CODES.index(match.group(3)))
        if day in days:
            problems.append(("BYDAY", f"{item!r} is listed twice"))
            return ()
        days.append(day)
    return tuple(sorted(days))


def _combination_problems(
    freq: int, parts: dict[str, str], byday: tuple[tuple[int, int], ...]
) -> list[tuple[str, str]]:
    """RFC 5545's restrictions on which parts go with which frequency."""
    problems = []
    numbered = any(ordinal for ordinal, _ in byday)
    if numbered and freq not in (MONTHLY, YEARLY):
        problems.append(("BYDAY", "a numbered weekday such as 1MO needs FREQ=MONTHLY or FREQ=YEARLY"))
    if numbered and freq == YEARLY and "BYWEEKNO" in parts:
        problems.append(("BYDAY", "a numbered weekday such as 1MO cannot be combined with BYWEEKNO"))
    if "BYMONTHDAY" in parts and freq == WEEKLY:
        problems.append(("BYMONTHDAY", "cannot be used with FREQ=WEEKLY"))
    if "BYYEARDAY" in parts and freq in (MONTHLY, WEEKLY, DAILY):
        problems.append(("BYYEARDAY", "cannot be used with FREQ=MONTHLY, WEEKLY or DAILY"))
    if "BYWEEKNO" in parts and freq != YEARLY:
        problems.append(("BYWEEKNO", "can be used only with FREQ=YEARLY"))
    others = [name for name in parts if name.startswith("BY") and name != "BYSETPOS"]
    if "BYSETPOS" in parts and not others:
        problems.append(("BYSETPOS", "needs another BYxxx part (e.g. BYDAY) to pick positions from"))
    return problems


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


# --- the calendar -----------------------------------------------------------------


def _month_length(leap: bool, month: int) -> int:
    return _CUMULATIVE_DAYS[leap][month] - _CUMULATIVE_DAYS[leap][month - 1]


def _week1_start(jan1: int, jan1_weekday: int, wkst: int) -> int:
    """Where week 1 starts (RFC 5545: the first week with at least four days of the year), as a day number."""
    offset = (jan1_weekday - wkst) % 7
    return jan1 - offset if offset <= 3 else jan1 + 7 - offset


class _DaySelection:
    """Which days a rule's day parts (BYMONTH, BYWEEKNO, BYYEARDAY, BYMONTHDAY, BYDAY) select.

    Day sets are computed once per calendar class (a month by its length and
    first weekday; a year by its length, first weekday and last year's length),
    so asking about years and years of days costs a few dictionary lookups.
    """

    def __init__(
        self, rule: Rule, bymonth: tuple[int, ...], bymonthday: tuple[int, ...], byday: tuple[tuple[int, int], ...]
    ) -> None:
        self.freq = rule.freq
        self.wkst = rule.wkst
        self.months = frozenset(bymonth)
        self.monthdays = frozenset(bymonthday)
        self.yeardays = frozenset(rule.byyearday)
        self.weeknos = frozenset(rule.byweekno)
        self.plain = frozenset(weekday for ordinal, weekday in byday if not ordinal)
        self.numbered = frozenset((ordinal, weekday) for ordinal, weekday in byday if ordinal)
        self.has_byday = bool(byday)
        self.by_calendar = bool(self.months or self.monthdays or self.yeardays)
        self._months: dict[tuple[bool, int, int], tuple[int, ...]] = {}
        self._month_sets: dict[tuple[bool, int, int], frozenset[int]] = {}
        self._years: dict[tuple[bool, bool, int], tuple[int, ...]] = {}

    def _weekday_ok(self, weekday: int, position: int, first: int, last: int) -> bool:
        """BYDAY: a plain weekday, or the n-th (from the end: -n-th) such weekday between days first and last."""
        if not self.has_byday:
            return True
        if weekday in self.plain:
            return True
        return bool(self.numbered) and (
            ((position - first) // 7 + 1, weekday) in self.numbered
            or (-((last - position) // 7 + 1), weekday) in self.numbered
        )

    def month_days(self, leap: bool, month: int, first_weekday: int) -> tuple[int, ...]:
        """The days (1-based) of a month that are selected: MONTHLY periods, and the days finer rules run on."""
        key = (leap, month, first_weekday)
        found = self._months.get(key)
        if found is None:
            found = self._compute_month(leap, month, first_weekday)
            self._months[key] = found
        return found

    def month_day_set(self, leap: bool, month: int, first_weekday: int) -> frozenset[int]:
        """month_days as a set."""
        key = (leap, month, first_weekday)
        found = self._month_sets.get(key)
        if found is None:
            found = frozenset(self.month_days(leap, month, first_weekday))
            self._month_sets[key] = found
        return found

    def _compute_month(self, leap: bool, month: int, first_weekday: int) -> tuple[int, ...]:
        if self.months and month not in self.months:
            return ()
        length = _month_length(leap, month)
        before = _CUMULATIVE_DAYS[leap][month - 1]
        year_length = 365 + leap
        days = []
        for day in range(1, length + 1):
            if self.monthdays and day not in self.monthdays and day - length - 1 not in self.monthdays:
                continue
            yearday = before + day
            if self.yeardays and yearday not in self.yeardays and yearday - year_length - 1 not in self.yeardays:
                continue
            if not self._weekday_ok((first_weekday + day - 1) % 7, day, 1, length):
                continue
            days.append(day)
        return tuple(days)

    def year_days(self, previous_leap: bool, leap: bool, jan1_weekday: int) -> tuple[int, ...]:
        """The days of a year (0 = January 1) that are selected: YEARLY periods."""
        key = (previous_leap, leap, jan1_weekday)
        found = self._years.get(key)
        if found is None:
            found = self._compute_year(previous_leap, leap, jan1_weekday)
            self._years[key] = found
        return found

    def _compute_year(self, previous_leap: bool, leap: bool, jan1_weekday: int) -> tuple[int, ...]:
        length = 365 + leap
        in_weeks = self._week_mask(previous_leap, leap, jan1_weekday) if self.weeknos else None
        days = []
        for month in range(1, 13):
            if self.months and month not in self.months:
                continue
            before = _CUMULATIVE_DAYS[leap][month - 1]
            month_length = _month_length(leap, month)
            for day in range(1, month_length + 1):
                offset = before + day - 1
                if self.monthdays and day not in self.monthdays and day - month_length - 1 not in self.monthdays:
                    continue
                if self.yeardays and offset + 1 not in self.yeardays and offset - length not in self.yeardays:
                    continue
                if in_weeks is not None and not in_weeks[offset]:
                    continue
                weekday = (jan1_weekday + offset) % 7
                # Numbered weekdays count within each month of BYMONTH, else within the year.
                if self.months:
                    ok = self._weekday_ok(weekday, day, 1, month_length)
                else:
                    ok = self._weekday_ok(weekday, offset + 1, 1, length)
                if ok:
                    days.append(offset)
        return tuple(days)

    def _week_mask(self, previous_leap: bool, leap: bool, jan1_weekday: int) -> list[bool]:
        """BYWEEKNO for each day of a year: week 1 has at least four days of the year, weeks start on WKST."""
        length = 365 + leap
        previous_length = 365 + previous_leap
        this = _week1_start(0, jan1_weekday, self.wkst)
        following = _week1_start(length, (jan1_weekday + length) % 7, self.wkst)
        previous = _week1_start(-previous_length, (jan1_weekday - previous_length) % 7, self.wkst)
        weeks = (following - this) // 7
        previous_weeks = (this - previous) // 7
        mask = []
        for offset in range(length):
            if offset < this:  # the last week of last year
                mask.append(-1 in self.weeknos or previous_weeks in self.weeknos)
            elif offset >= following:  # week 1 of next year
                mask.append(1 in self.weeknos)
            else:
                week = (offset - this) // 7 + 1
                mask.append(week in self.weeknos or week - weeks - 1 in self.weeknos)
        return mask

    def allows(self, ordinal: int) -> bool:
        """Whether the day with this proleptic ordinal is selected (for DAILY and finer rules)."""
        if not self.by_calendar:
            return not self.plain or (ordinal + 6) % 7 in self.plain
        day = date.fromordinal(ordinal)
        first_weekday = (day.weekday() - day.day + 1) % 7
        return day.day in self.month_day_set(calendar.isleap(day.year), day.month, first_weekday)


def _positions(setpos: tuple[int, ...], size: int) -> tuple[int, ...] | None:
    """BYSETPOS: the 0-based positions picked from a set of size elements (None: all of them)."""
    if not setpos:
        return None
    picked = {p - 1 if p > 0 else size + p for p in setpos if -size <= p <= size}
    return tuple(sorted(picked))


# --- blocks of instances -----------------------------------------------------------------


class _Block:
    """The instances of one block (a period, or a day) as offsets in seconds from the block's start.

    Instance k of the full set is majors[k // len(minors)] * unit + minors[k % len(minors)]
    (a day and a time of day, or a unit of the day and a second within it),
    in time order because every minor offset is less than unit; picks, when
    given, are the positions BYSETPOS keeps.
    """

    __slots__ = ("majors", "minors", "picks", "size", "unit")

    def __init__(self, majors: Sequence[int], unit: int, minors: Sequence[int], picks: Sequence[int] | None) -> None:
        self.majors = majors
        self.unit = unit
        self.minors = minors
        self.picks = picks
        self.size = len(picks) if picks is not None else len(majors) * len(minors)

    def offset(self, index: int) -> int:
        """Seconds from the block's start to its index-th instance."""
        flat = self.picks[index] if self.picks is not None else index
        major, minor = divmod(flat, len(self.minors))
        return self.majors[major] * self.unit + self.minors[minor]

    def count_before(self, seconds: int) -> int:
        """How many instances lie less than seconds after the block's start."""
        if not self.size:
            return 0
        major, rest = divmod(seconds, self.unit)
        position = bisect_left(self.majors, major)
        flat = position * len(self.minors)
        if position < len(self.majors) and self.majors[position] == major:
            flat += bisect_left(self.minors, rest)
        return bisect_left(self.picks, flat) if self.picks is not None else flat


_NO_INSTANCES = _Block((), 1, (0,), None)


class _Sums:
    """Running totals of block sizes: how many instances come before a block, and which block holds the n-th.

    With a cycle the sizes repeat every cycle blocks and both questions are
    arithmetic; without one, totals are extended lazily block by block (never
    past the horizon).
    """

    def __init__(self, size_of: Callable[[int], int], budget: Budget, cycle: int | None) -> None:
        self.size_of = size_of
        self.budget = budget
        self.cycle = cycle
        self.prefix = [0]

    def _extend(self, blocks: int) -> None:
        prefix = self.prefix
        while len(prefix) <= blocks:
            self.budget.spend()
            prefix.append(prefix[-1] + self.size_of(len(prefix) - 1))

    def before(self, block: int) -> int:
        """Instances in blocks 0 .. block-1."""
        if self.cycle is not None:
            cycles, rest = divmod(block, self.cycle)
            self._extend(self.cycle)
            return cycles * self.prefix[self.cycle] + self.prefix[rest]
        self._extend(block)
        return self.prefix[block]

    def locate(self, number: int, end: int) -> tuple[int, int] | None:
        """(block, index in it) of instance number (0-based, from block 0), or None at or beyond block end."""
        if self.cycle is not None:
            self._extend(self.cycle)
            per_cycle = self.prefix[self.cycle]
            if not per_cycle:
                return None
            cycles, rest = divmod(number, per_cycle)
            inside = bisect_right(self.prefix, rest) - 1
            block = cycles * self.cycle + inside
            return (block, rest - self.prefix[inside]) if block < end else None
        while self.prefix[-1] <= number:
            if len(self.prefix) > end:
                return None
            self._extend(len(self.prefix))
        block = bisect_right(self.prefix, number) - 1
        return (block, number - self.prefix[block]) if block < end else None


@dataclass(frozen=True)
class _Pinned:
    """A rule's parts with what it leaves open taken from the start, as RFC 5545 says."""

    days: _DaySelection
    hours: tuple[int, ...] | None  # None: any
    minutes: tuple[int, ...] | None
    seconds: tuple[int, ...] | None

    def times_of_day(self) -> tuple[int, ...]:
        """Seconds after midnight of every BYHOUR x BYMINUTE x BYSECOND combination (DAILY and coarser rules)."""
        hours, minutes, seconds = self.hours or (), self.minutes or (), self.seconds or ()
        return tuple(sorted(h * 3600 + m * 60 + s for h in hours for m in minutes for s in seconds))


def _pin(rule: Rule, start: datetime) -> _Pinned:
    bymonth, bymonthday, byday = rule.bymonth, rule.bymonthday, rule.byday
    if not (rule.byweekno or rule.byyearday or rule.bymonthday or rule.byday):
        if rule.freq == YEARLY:
            bymonth = bymonth or (start.month,)
            bymonthday = (start.day,)
        elif rule.freq == MONTHLY:
            bymonthday = (start.day,)
        elif rule.freq == WEEKLY:
            byday = ((0, start.weekday()),)
    # Second 60 (a leap second) is valid in a rule but no local time has it.
    seconds = tuple(s for s in rule.bysecond if s < 60) if rule.bysecond else None
    return _Pinned(
        days=_DaySelection(rule, bymonth, bymonthday, byday),
        hours=rule.byhour or ((start.hour,) if rule.freq < HOURLY else None),
        minutes=rule.byminute or ((start.minute,) if rule.freq < MINUTELY else None),
        seconds=seconds if seconds is not None else ((start.second,) if rule.freq < SECONDLY else None),
    )


class _Grid:
    """A rule's instances from a start, block by block; block 0 holds the start."""

    end: int  # the first block at or after the horizon
    sums: _Sums

    def block_at(self, local: datetime) -> tuple[int, bool]:
        """The last block starting at or before local, and whether local lies inside it."""
        raise NotImplementedError

    def start_of(self, block: int) -> datetime:
        """When a block starts (local midnight)."""
        raise NotImplementedError

    def block(self, block: int) -> _Block:
        """A block's instances."""
        raise NotImplementedError


class _PeriodGrid(_Grid):
    """YEARLY, MONTHLY and WEEKLY rules: one block per INTERVAL-th period, its days times its times of day."""

    def __init__(self, rule: Rule, pinned: _Pinned, start: datetime, horizon: datetime, budget: Budget) -> None:
        self.freq = rule.freq
        self.interval = n = rule.interval
        self.days = pinned.days
        self.times = pinned.times_of_day()
        self.setpos = rule.bysetpos
        self._blocks: dict[object, _Block] = {}
        if self.freq == YEARLY:
            self.origin = start.year
            self.end = -(-(horizon.year - self.origin) // n)
        elif self.freq == MONTHLY:
            self.origin = start.year * 12 + start.month - 1
            self.end = -(-(horizon.year * 12 - self.origin) // n)
        else:
            self.origin = start.toordinal() - (start.weekday() - rule.wkst) % 7
            self.end = -(-(horizon.toordinal() - self.origin) // (7 * n))
        same_every_week = self.freq == WEEKLY and not self.days.months
        self.sums = _Sums(lambda b: self.block(b).size, budget, 1 if same_every_week else None)

    def block_at(self, local: datetime) -> tuple[int, bool]:
        if self.freq == YEARLY:
            periods = local.year - self.origin
        elif self.freq == MONTHLY:
            periods = local.year * 12 + local.month - 1 - self.origin
        else:
            periods = (local.toordinal() - self.origin) // 7
        block, rest = divmod(periods, self.interval)
        return block, rest == 0

    def start_of(self, block: int) -> datetime:
        if self.freq == YEARLY:
            return datetime(self.origin + self.interval * block, 1, 1)
        if self.freq == MONTHLY:
            year, month = divmod(self.origin + self.interval * block, 12)
            return datetime(year, month + 1, 1)
        return datetime.fromordinal(self.origin + 7 * self.interval * block)

    def block(self, block: int) -> _Block:
        key = self._class_of(block)
        found = self._blocks.get(key)
        if found is None:
            found = self._build(key)
            self._blocks[key] = found
        return found

    def _class_of(self, block: int) -> tuple[int, ...]:
        """What a period's instances depend on: its calendar shape, not its date."""
        if self.freq == YEARLY:
            year = self.origin + self.interval * block
            return (calendar.isleap(year - 1), calendar.isleap(year), date(year, 1, 1).weekday())
        if self.freq == MONTHLY:
            year, month = divmod(self.origin + self.interval * block, 12)
            return (calendar.isleap(year), month + 1, date(year, month + 1, 1).weekday())
        if not self.days.months:
            return ()
        first = date.fromordinal(self.origin + 7 * self.interval * block)
        in_first_month = _month_length(calendar.isleap(first.year), first.month) - first.day + 1
        return (first.month, min(in_first_month, 7))

    def _build(self, key: tuple[int, ...]) -> _Block:
        if self.freq == YEARLY:
            days: tuple[int, ...] = self.days.year_days(bool(key[0]), bool(key[1]), key[2])
        elif self.freq == MONTHLY:
            days = tuple(d - 1 for d in self.days.month_days(bool(key[0]), key[1], key[2]))
        else:
            days = tuple(j for j in range(7) if self._week_day_ok(j, key))
        picks = _positions(self.setpos, len(days) * len(self.times))
        return _Block(days, 86400, self.times, picks)

    def _week_day_ok(self, offset: int, key: tuple[int, ...]) -> bool:
        if (self.days.wkst + offset) % 7 not in self.days.plain:
            return False
        if not self.days.months:
            return True
        first_month, in_first_month = key
        month = first_month if offset < in_first_month else first_month % 12 + 1
        return month in self.days.months


class _DayGrid(_Grid):
    """DAILY and finer rules: one block per day, holding the INTERVAL grid's units that day that the rule allows.

    A unit (a day, hour, minute or second) is on the grid when a whole number
    of INTERVALs lies between it and the start's unit. Which units of a day are
    on the grid repeats every INTERVAL / gcd(INTERVAL, units per day) days, so
    without calendar parts (BYMONTH, BYMONTHDAY, BYYEARDAY) block sizes repeat
    in a short cycle (times 7 with BYDAY) and positions are found by arithmetic.
    """

    def __init__(self, rule: Rule, pinned: _Pinned, start: datetime, horizon: datetime, budget: Budget) -> None:
        self.interval = n = rule.interval
        self.unit = unit = _UNIT_SECONDS[rule.freq]
        self.per_day = per_day = 86400 // unit
        self.first_day = start.toordinal()
        start_seconds = start.hour * 3600 + start.minute * 60 + start.second
        self.anchor = (self.first_day * 86400 + start_seconds) // unit
        self.days = pinned.days
        self.end = horizon.toordinal() - self.first_day
        hours = pinned.hours or tuple(range(24))
        minutes = pinned.minutes or tuple(range(60))
        seconds = pinned.seconds if pinned.seconds is not None else tuple(range(60))
        # units: which units of a day the rule allows (None: all); expansion: the instances within one unit.
        self.units: tuple[int, ...] | None
        if rule.freq == DAILY:
            self.units, expansion = (0,), pinned.times_of_day()
        elif rule.freq == HOURLY:
            self.units = pinned.hours
            expansion = tuple(sorted(m * 60 + s for m in minutes for s in seconds))
        elif rule.freq == MINUTELY:
            whole_day = pinned.hours is None and pinned.minutes is None
            self.units = None if whole_day else tuple(sorted(h * 60 + m for h in hours for m in minutes))
            expansion = seconds
        else:
            whole_day = pinned.hours is None and pinned.minutes is None and pinned.seconds is None
            every = (h * 3600 + m * 60 + s for h in hours for m in minutes for s in seconds)
            self.units = None if whole_day else tuple(sorted(every))
            expansion = (0,)
        picks = _positions(rule.bysetpos, len(expansion))
        self.expansion = tuple(expansion[i] for i in picks) if picks is not None else tuple(expansion)
        self._by_residue: dict[int, _Block] = {}
        cycle = None
        if not self.days.by_calendar:
            cycle = n // math.gcd(n, per_day)
            if self.days.plain:
                cycle = math.lcm(cycle, 7)
        self.sums = _Sums(lambda b: self.block(b).size, budget, cycle)

    def block_at(self, local: datetime) -> tuple[int, bool]:
        return local.toordinal() - self.first_day, True

    def start_of(self, block: int) -> datetime:
        return datetime.fromordinal(self.first_day + block)

    def block(self, block: int) -> _Block:
        day = self.first_day + block
        if not self.days.allows(day):
            return _NO_INSTANCES
        residue = (self.anchor - day * self.per_day) % self.interval
        found = self._by_residue.get(residue)
        if found is None:
            units: Sequence[int]
            if self.units is None:
                units = range(residue, self.per_day, self.interval)
            else:
                units = tuple(u for u in self.units if u % self.interval == residue)
            found = _Block(units, self.unit, self.expansion, None) if self.expansion else _NO_INSTANCES
            self._by_residue[residue] = found
        return found


# --- daylight-saving gaps ---------------------------------------------------------------------


@functools.lru_cache(maxsize=8192)
def _gaps_in_year(zone: str, year: int) -> tuple[tuple[datetime, datetime], ...]:
    """The local times that do not exist in zone, as [from, to) intervals, for changes during a (UTC) year.

    Offsets are sampled every two days and each change is bisected to the
    second; the closest two changes in the time zone database are about four
    days apart.
    """
    tz = zoned.zone_named(zone)
    begin = int(datetime(year, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp())

    def offset(stamp: int) -> int:
        delta = datetime.fromtimestamp(stamp, tz).utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    gaps = []
    step = 2 * 86400
    low, low_offset = begin, offset(begin)
    while low < end:
        high = min(low + step, end)
        high_offset = offset(high)
        if high_offset != low_offset:
            a, b = low, high
            while b - a > 1:
                middle = (a + b) // 2
                if offset(middle) == low_offset:
                    a = middle
                else:
                    b = middle
            before, after = offset(a), offset(b)
            if after > before:
                change = datetime.fromtimestamp(b, UTC).replace(tzinfo=None)
                gaps.append((change + timedelta(seconds=before), change + timedelta(seconds=after)))
        low, low_offset = high, high_offset
    return tuple(gaps)


def _gaps(zone: str, after: datetime, until: datetime, budget: Budget) -> list[tuple[datetime, datetime]]:
    """The nonexistent local intervals of zone that overlap (after, until]."""
    found: list[tuple[datetime, datetime]] = []
    for year in range(max(after.year - 1, 2), min(until.year + 1, 9998) + 1):
        budget.spend(20)
        found.extend(g for g in _gaps_in_year(zone, year) if g[1] > after and g[0] <= until)
    return found


# --- a rule from a start, in a zone -------------------------------------------------------------


class _Series:
    """A rule evaluated from a naive local start in a zone: its instances by number, and counts up to a time."""

    def __init__(self, rule: Rule, start: datetime, zone: str, budget: Budget) -> None:
        self.rule = rule
        self.start = start.replace(microsecond=0)
        self.zone = zone
        self.tz: ZoneInfo = zoned.zone_named(zone)
        self.budget = budget
        self.horizon = datetime(min(start.year + HORIZON_YEARS, 9999), 1, 1)
        pinned = _pin(rule, self.start)
        self.grid: _Grid
        if rule.freq <= WEEKLY:
            self.grid = _PeriodGrid(rule, pinned, self.start, self.horizon, budget)
        else:
            self.grid = _DayGrid(rule, pinned, self.start, self.horizon, budget)

    def raw_count(self, local: datetime) -> int:
        """How many instances (nonexistent local times included) lie at or before local, from block 0 on."""
        local = min(local, self.horizon - _ONE_SECOND)
        grid = self.grid
        block, inside = grid.block_at(local)
        if block < 0:
            return 0
        if block >= grid.end:
            return grid.sums.before(grid.end)
        total = grid.sums.before(block)
        instances = grid.block(block)
        if inside:
            elapsed = local - grid.start_of(block)
            total += instances.count_before(elapsed.days * 86400 + elapsed.seconds + 1)
        else:
            total += instances.size
        return total

    def instance(self, number: int) -> datetime | None:
        """Instance number (0-based, from block 0), or None when it lies at or beyond the horizon."""
        self.budget.spend()
        found = self.grid.sums.locate(number, self.grid.end)
        if found is None:
            return None
        block, index = found
        local = self.grid.start_of(block) + timedelta(seconds=self.grid.block(block).offset(index))
        return local if local < self.horizon else None

    def instant_of(self, local: datetime) -> datetime | None:
        """The instant of a local time, or None when the zone skips it."""
        instant = local.replace(tzinfo=self.tz, fold=0).astimezone(UTC)
        if instant.astimezone(self.tz).replace(tzinfo=None) != local:
            return None
        return instant

    def nonexistent_between(self, after: datetime, until: datetime) -> int:
        """How many instances in (after, until] fall on local times the zone skips."""
        total = 0
        for first, last in _gaps(self.zone, after, until, self.budget):
            low, high = max(after, first - _ONE_SECOND), min(until, last - _ONE_SECOND)
            if high > low:
                total += self.raw_count(high) - self.raw_count(low)
        return total

    def within_until(self, local: datetime, instant: datetime) -> bool:
        until = self.rule.until
        if until is None:
            return True
        if isinstance(until, datetime) and until.tzinfo is not None:
            return instant <= until
        if isinstance(until, datetime):
            return local <= until
        return local.date() <= until


def _as_rule(rule: str | Rule) -> Rule:
    return rule if isinstance(rule, Rule) else parse(rule)


def occurrences(rule: str | Rule, start: datetime, zone: str, *, budget: Budget | None = None) -> Iterator[Occurrence]:
    """The occurrences of a rule from a naive local start in zone, in order, as RFC 5545 defines them.

    Ends at COUNT, UNTIL or HORIZON_YEARS after the start; raises ValueError
    for a bad rule or zone (at once) and EvaluationLimit when the budget (a
    fresh one by default, shared by the whole iteration) runs out.
    """
    parsed = _as_rule(rule)
    zoned.zone_named(zone)
    return _occurrences(parsed, start, zone, budget or Budget())


def _occurrences(rule: Rule, start: datetime, zone: str, budget: Budget) -> Iterator[Occurrence]:
    series = _Series(rule, start, zone, budget)
    first = zoned.resolve(start, zone)
    if not series.within_until(first.local, first.instant):
        return
    index = 1
    yield Occurrence(1, first.local, first.instant)
    number = series.raw_count(series.start)
    while rule.count is None or index < rule.count:
        local = series.instance(number)
        if local is None:
            return
        number += 1
        instant = series.instant_of(local)
        if instant is None:
            continue  # skipped by a daylight-saving change: not an occurrence, not counted
        if not series.within_until(local, instant):
            return
        index += 1
        yield Occurrence(index, local, instant)


def first_after(
    rule: str | Rule,
    start: datetime,
    zone: str,
    instant: datetime,
    *,
    min_index: int = 1,
    budget: Budget | None = None,
) -> Occurrence | None:
    """The first occurrence with index >= min_index strictly after instant, or None when the rule ends first.

    Jumps to instant by counting the instances before it, block by block, so
    the work does not grow with the number of occurrences skipped.
    """
    parsed = _as_rule(rule)
    budget = budget or Budget()
    series = _Series(parsed, start, zone, budget)
    first = zoned.resolve(start, zone)
    if not series.within_until(first.local, first.instant):
        return None
    if min_index <= 1 and first.instant > instant:
        return Occurrence(1, first.local, first.instant)
    # No instance at or before the wall-clock time of instant comes after it,
    # not even in a repeated (fall-back) hour: its first pass is earlier.
    cursor = max(instant.astimezone(series.tz).replace(tzinfo=None), series.start)
    if cursor >= series.horizon:
        return None
    base = series.raw_count(series.start)
    number = series.raw_count(cursor)
    index = 1 + (number - base) - series.nonexistent_between(series.start, cursor)
    # Far below min_index (the series was moved): jump by counting too, leaving a little to walk.
    while min_index - index > 64:
        if parsed.count is not None and index >= parsed.count:
            return None
        wanted = min_index - index - 32
        target = series.instance(number + wanted - 1)
        if target is None:
            return None
        index += wanted - series.nonexistent_between(cursor, target)
        cursor, number = target, number + wanted
    while parsed.count is None or index < parsed.count:
        local = series.instance(number)
        if local is None:
            return None
        number += 1
        moment = series.instant_of(local)
        if moment is None:
            continue
        if not series.within_until(local, moment):
            return None
        index += 1
        if index >= min_index and moment > instant:
            return Occurrence(index, local, moment)
    return None


# --- never occurring ---------------------------------------------------------------------


@functools.cache
def _calendar_classes() -> tuple[tuple[tuple[bool, int, int], ...], tuple[tuple[bool, bool, int], ...]]:
    """Every month shape (leap year, month, first weekday) and year shape of the 400-year Gregorian cycle."""
    months, years = set(), set()
    for year in range(2000, 2400):
        leap = calendar.isleap(year)
        years.add((calendar.isleap(year - 1), leap, date(year, 1, 1).weekday()))
        for month in range(1, 13):
            months.add((leap, month, date(year, month, 1).weekday()))
    return tuple(sorted(months)), tuple(sorted(years))


_SOME_START = datetime(2000, 1, 1)
"""A start for what a rule leaves open: any start makes those parts match some date."""


def never_occurs(rule: str | Rule, *, budget: Budget | None = None) -> bool:
    """True for a rule that no start makes occur again: no date and time match all its parts (e.g. February 30).

    Decided over the shapes of every month and year of the 400-year Gregorian
    cycle (at most 168 months or 21 years), whatever the rule's INTERVAL.
    """
    parsed = rule if isinstance(rule, Rule) else _parse(rule)[0]
    if parsed is None:
        return False
    budget = budget or Budget()
    pinned = _pin(parsed, _SOME_START)
    if pinned.seconds == ():
        return True  # only second 60
    month_shapes, year_shapes = _calendar_classes()
    times = len(pinned.times_of_day())
    if parsed.freq >= DAILY:
        grid = _DayGrid(parsed, pinned, _SOME_START, _SOME_START + timedelta(days=1), budget)
        if not grid.expansion:
            return True
        if not pinned.days.by_calendar:
            return False
        for shape in month_shapes:
            budget.spend()
            if pinned.days.month_days(*shape):
                return False
        return True
    if parsed.freq == WEEKLY:
        return not _positions(parsed.bysetpos, len(pinned.days.plain) * times) if parsed.bysetpos else False
    shapes: Sequence[tuple[bool, int, int] | tuple[bool, bool, int]] = month_shapes
    if parsed.freq == YEARLY:
        shapes = year_shapes
    for shape in shapes:
        budget.spend(10)
        if parsed.freq == YEARLY:
            days = pinned.days.year_days(bool(shape[0]), bool(shape[1]), shape[2])
        else:
            days = pinned.days.month_days(bool(shape[0]), int(shape[1]), shape[2])
        size = len(days) * times
        picks = _positions(parsed.bysetpos, size)
        if size and (picks is None or picks):
            return False
    return True


# --- in words ---------------------------------------------------------------------


def describe(text: str) -> str:
    """The rule in plain English, e.g. "every 2 weeks on Monday and Friday, 10 times"; raises RuleError."""
    rule = parse(text)
    unit = _FREQ_UNITS[rule.freq]
    words = [f"every {unit}" if rule.interval == 1 else f"every {rule.interval} {unit}s"]
    if rule.bymonth:
        words.append("in " + _join([date(2000, m, 1).strftime("%B") for m in rule.bymonth]))
    if rule.byweekno:
        weeks = [f"week {w}" if w > 0 else f"the {_ordinal(w)} week" for w in _signed_order(rule.byweekno)]
        words.append("in " + _join(weeks))
    if rule.byyearday:
        words.append("on the " + _join([_ordinal(d) for d in rule.byyearday]) + " day of the year")
    if rule.byday:
        words.append("on " + _join([_weekday(ordinal, weekday) for ordinal, weekday in _weekday_order(rule.byday)]))
    if rule.bymonthday:
        words.append("on the " + _join([_ordinal(d) for d in _signed_order(rule.bymonthday)]) + " day")
    if rule.byhour:
        words.append("at hour " + _join([str(h) for h in rule.byhour]))
    if rule.byminute:
        words.append("at minute " + _join([str(m) for m in rule.byminute]))
    if rule.bysecond:
        words.append("at second " + _join([str(s) for s in rule.bysecond]))
    if rule.bysetpos:
        words.append("(occurrence " + _join([_ordinal(p) for p in _signed_order(rule.bysetpos)]) + " of each period)")
    limits = []
    if rule.count is not None:
        limits.append(f"{rule.count} times" if rule.count != 1 else "once")
    if rule.until is not None:
        end = rule.until.date() if isinstance(rule.until, datetime) else rule.until
        limits.append("until " + end.isoformat())
    return ", ".join([" ".join(words), *limits])


def _signed_order(values: tuple[int, ...]) -> list[int]:
    """Positive values first, then negative ones (1, 15, -1), as people list them."""
    return [v for v in values if v > 0] + [v for v in values if v < 0]


def _weekday_order(days: tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
    return sorted(days, key=lambda d: (d[0] < 0, abs(d[0]), d[1]))


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _ordinal(n: int) -> str:
    if n == -1:
        return "last"
    if n < 0:
        return f"{_ordinal_number(-n)} to last"
    return _ordinal_number(n)


def _ordinal_number(n: int) -> str:
    end = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{end}"


def _weekday(ordinal: int, weekday: int) -> str:
    name = _WEEKDAY_NAMES[weekday]
    return f"the {_ordinal(ordinal)} {name}" if ordinal else name


__all__ = [
    "EVALUATION_SECONDS",
    "EVALUATION_STEPS",
    "HORIZON_YEARS",
    "MAX_COUNT",
    "MAX_INTERVAL",
    "Budget",
    "EvaluationLimit",
    "Occurrence",
    "Rule",
    "RuleError",
    "check_rule",
    "describe",
    "first_after",
    "never_occurs",
    "occurrences",
    "parse",
    "rule_problems",
]
