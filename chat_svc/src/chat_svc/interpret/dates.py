"""Dates, times and durations in English, relative to the user's "now" in the user's zone.

Conventions (see docs/chat.md):
- a date without a time is due at 09:00 (DEFAULT_TIME); parts of the day: morning 09:00, afternoon 15:00,
  evening 19:00, tonight 20:00, night 21:00;
- a time without a date is today if still ahead, else tomorrow;
- a weekday ("friday", "on friday", "this friday") is the next day with that name whose due time is still
  ahead (today included); "next friday" is the Friday of next week (weeks start on Monday), so on a Wednesday
  "next wednesday" is a week away and on a Sunday "next wednesday" is three days away;
- "the 3rd" is the next 3rd still ahead; "may 2" the next 2 May still ahead; "end of month" the month's last day;
  "end of week" Friday; "next week" Monday of next week; "next month" the 1st of next month;
- "in 45 minutes" / "in 3 hours" count real time (instants), so they stay right across a daylight-saving
  change; "in 10 days" / "in 2 months" count calendar days and months and give a date;
- "at 5" (an hour without minutes or am/pm) from 1 to 6 is afternoon; "14:30" and "2:30" are as written;
- a wall-clock time skipped by a daylight-saving change moves forward by the gap, as the task service does.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta

from dateutil.relativedelta import relativedelta

from chat_svc.interpret import vocabulary as v
from chat_svc.interpret.text import Clock, Message

DEFAULT_TIME = time(9, 0)
PART_TIMES = {
    "morning": time(9, 0),
    "afternoon": time(15, 0),
    "evening": time(19, 0),
    "tonight": time(20, 0),
    "night": time(21, 0),
    "noon": time(12, 0),
    "midday": time(12, 0),
}

_NUM = v.NUMBER_PATTERN
_LEAD = r"(?:(?:on|by|for|due|due on|due by|before|until|till|from|starting|this coming|coming|around)\s+)?"
_AMPM = r"(am|pm|a\.m\.|p\.m\.|a|p)(?![a-z0-9])"

ISO_DATE = re.compile(r"\b" + _LEAD + r"(\d{4})-(\d{2})-(\d{2})(?:[t ](\d{2}):(\d{2})(?::\d{2})?)?(?![\d-])")
DAY_AFTER_TOMORROW = re.compile(r"\b" + _LEAD + r"(?:the\s+)?day\s+after\s+tomorrow\b")
NAMED_DAY = re.compile(
    r"\b" + _LEAD + r"(today|tonight|tomorrow|tmrw|tmr|tomorow|tommorow|tommorrow|this|tod)"
    r"(?:\s+(?:in\s+the\s+)?(morning|afternoon|evening|night))?\b"
)
IN_DURATION = re.compile(
    r"\b(?:in|within|after)\s+(?:the\s+next\s+)?(" + _NUM + r")\s+(minutes?|mins?|hours?|hrs?|h|days?|weeks?|"
    r"months?|years?|fortnight)\b"
)
IN_HALF_HOUR = re.compile(r"\b(?:in|within)\s+(?:half\s+an\s+hour|a\s+half\s+hour|an\s+hour\s+and\s+a\s+half)\b")
WEEKDAY = re.compile(
    r"\b" + _LEAD + r"(next|this|this coming|coming)?\s*(" + v.WEEKDAY_PATTERN + r")"
    r"(?:\s+(?:in\s+the\s+)?(morning|afternoon|evening|night))?\b"
)
NEXT_PERIOD = re.compile(r"\b" + _LEAD + r"(next|this)\s+(week|month|year|weekend)\b")
END_OF = re.compile(r"\b(?:(?:by|at|for|until|before|on)\s+)?(?:the\s+)?end\s+of\s+(?:the\s+)?(month|week|year)\b")
WEEKEND = re.compile(r"\b(?:(?:on|over|for|at)\s+)?(?:the\s+)?weekend\b")
MONTH_DAY = re.compile(
    r"\b" + _LEAD + r"(" + v.MONTH_PATTERN + r")\.?\s+(\d{1,2})(?:st|nd|rd|th)?(?:,?\s+(\d{4}))?(?![\d:])"
)
DAY_MONTH = re.compile(
    r"\b"
    + _LEAD
    + r"(?:the\s+)?(\d{1,2}|"
    + v.ORDINAL_WORD_PATTERN
    + r")(?:st|nd|rd|th)?\s+(?:of\s+)?("
    + v.MONTH_PATTERN
    + r")\b(?:,?\s+(\d{4}))?"
)
DAY_OF_MONTH = re.compile(
    r"\b" + _LEAD + r"the\s+(" + v.DAY_ORDINAL_PATTERN + r")\b(?!\s+(?:of|day|week|month|time|one|option|choice))"
)
TIME_AMPM = re.compile(r"\b(?:(?:at|by|around|from|until|till|to)\s+|@\s*)?(\d{1,2})(?:[:.](\d{2}))?\s*" + _AMPM)
TIME_24 = re.compile(r"\b(?:(?:at|by|around|from|until|till|to)\s+|@\s*)?([01]?\d|2[0-3])[:h]([0-5]\d)(?![\d:])")
TIME_BARE = re.compile(
    r"\b(?:at|by|around|@)\s+(\d{1,2})(?![\d:.])(?!\s*(?:st|nd|rd|th|%|minutes?|mins?|hours?|hrs?|days?|weeks?|"
    r"months?|years?|times?|people|o'clock)\b)(?:\s+o'clock)?"
)
TIME_WORD = re.compile(r"\b(?:(?:at|by|around)\s+)?(noon|midday|midnight)\b")
PART_OF_DAY = re.compile(r"\b(?:in\s+the|this|at|every)\s+(morning|afternoon|evening|night)\b")


@dataclass(frozen=True)
class When:
    """A moment as written: a day and/or a time, or an exact instant ("in 45 minutes")."""

    day: date | None = None
    at: time | None = None
    part: str | None = None  # "morning", "tonight", ... when no time is written
    exact: datetime | None = None  # aware UTC
    roll: str | None = None  # "week", "month", "year": how to move the day on when the moment has passed

    @property
    def found(self) -> bool:
        """Whether any date or time was written."""
        return self.day is not None or self.at is not None or self.part is not None or self.exact is not None

    @property
    def has_time(self) -> bool:
        """Whether a time of day was written (or implied by an instant)."""
        return self.at is not None or self.exact is not None


def number(word: str) -> int:
    """The value of a number written in digits or words ("3", "three", "a")."""
    word = word.strip()
    if word.isdigit():
        return int(word)
    return v.NUMBER_WORDS.get(word, 1)


def ordinal(word: str) -> int:
    """The value of an ordinal ("3rd", "third", "3")."""
    digits = re.sub(r"(?:st|nd|rd|th)$", "", word)
    if digits.isdigit():
        return int(digits)
    return v.ORDINAL_WORDS.get(word, 0)


def unit_of(word: str) -> str:
    """The canonical unit of a duration word ("mins" -> "minute", "h" -> "hour")."""
    word = word.rstrip("s") if word not in ("s",) else word
    if word in ("min", "minute"):
        return "minute"
    if word in ("hour", "hr", "h"):
        return "hour"
    if word == "fortnight":
        return "fortnight"
    return word


def duration_seconds(amount: int, unit: str) -> int | None:
    """Seconds in an amount of minutes, hours, days or weeks; None for months and years."""
    if unit == "fortnight":
        return amount * 14 * 86400
    seconds = v.UNIT_SECONDS.get(unit)
    return None if seconds is None else amount * seconds


def clock_time(hour: int, minute: int, suffix: str | None) -> time | None:
    """A time from an hour, minutes and an optional am/pm; None when out of range."""
    if suffix:
        if not 1 <= hour <= 12:
            return None
        if suffix.startswith("p") and hour != 12:
            hour += 12
        elif suffix.startswith("a") and hour == 12:
            hour = 0
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    return time(hour, minute)


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _next_month_day(today: date, day: int) -> date | None:
    """The next date on or after today that is the given day of its month (skipping months without it)."""
    if not 1 <= day <= 31:
        return None
    year, month = today.year, today.month
    for _ in range(14):
        candidate = _safe_date(year, month, day)
        if candidate is not None and candidate >= today:
            return candidate
        month += 1
        if month > 12:
            year, month = year + 1, 1
    return None


def _month_date(today: date, month: int, day: int, year: int | None) -> tuple[date | None, str | None]:
    if year is not None:
        return _safe_date(year, month, day), None
    for offset in range(0, 9):  # 29 February comes back within 8 years
        candidate = _safe_date(today.year + offset, month, day)
        if candidate is not None and candidate >= today:
            return candidate, "year"
    return None, None


def take_date(message: Message, clock: Clock) -> When:
    """Takes the first date phrase out of the message (and a time of day written with it)."""
    today = clock.today
    match = message.search(ISO_DATE)
    if match:
        day = _safe_date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        if day is not None:
            message.take_match(match)
            at = clock_time(int(match.group(4)), int(match.group(5)), None) if match.group(4) else None
            return When(day=day, at=at)
    match = message.search(DAY_AFTER_TOMORROW)
    if match:
        message.take_match(match)
        return When(day=today + timedelta(days=2))
    match = message.search(IN_HALF_HOUR)
    if match:
        message.take_match(match)
        minutes = 90 if "and a half" in match.group(0) else 30
        return When(exact=clock.now + timedelta(minutes=minutes))
    match = message.search(IN_DURATION)
    if match:
        when = _in_duration(number(match.group(1)), unit_of(match.group(2)), clock)
        if when is not None:
            message.take_match(match)
            return when
    for match in message.finditer(NAMED_DAY):
        word, part = match.group(1), match.group(2)
        if word in ("this", "tod") and part is None:
            continue
        message.take_match(match)
        if word == "tonight":
            return When(day=today, part="tonight")
        if word in ("this", "today", "tod"):
            return When(day=today, part=part)
        return When(day=today + timedelta(days=1), part=part)
    match = message.search(WEEKDAY)
    if match:
        message.take_match(match)
        wanted = v.WEEKDAYS[match.group(2)]
        part = match.group(3)
        if match.group(1) == "next":
            monday_next = today - timedelta(days=today.weekday()) + timedelta(days=7)
            return When(day=monday_next + timedelta(days=wanted), part=part)
        return When(day=today + timedelta(days=(wanted - today.weekday()) % 7), part=part, roll="week")
    match = message.search(NEXT_PERIOD)
    if match:
        message.take_match(match)
        return _period(match.group(1), match.group(2), today)
    match = message.search(END_OF)
    if match:
        message.take_match(match)
        unit = match.group(1)
        if unit == "month":
            return When(day=today.replace(day=calendar.monthrange(today.year, today.month)[1]))
        if unit == "year":
            return When(day=date(today.year, 12, 31))
        return When(day=today + timedelta(days=(4 - today.weekday()) % 7), roll="week")
    match = message.search(MONTH_DAY)
    if match:
        when = _dated(today, v.MONTHS[match.group(1)], int(match.group(2)), match.group(3))
        if when is not None:
            message.take_match(match)
            return when
    match = message.search(DAY_MONTH)
    if match:
        when = _dated(today, v.MONTHS[match.group(2)], ordinal(match.group(1)), match.group(3))
        if when is not None:
            message.take_match(match)
            return when
    match = message.search(DAY_OF_MONTH)
    if match:
        day = _next_month_day(today, ordinal(match.group(1)))
        if day is not None:
            message.take_match(match)
            return When(day=day, roll="month")
    match = message.search(WEEKEND)
    if match:
        message.take_match(match)
        return _period("this", "weekend", today)
    return When()


def _dated(today: date, month: int, day: int, year_text: str | None) -> When | None:
    year = int(year_text) if year_text else None
    found, roll = _month_date(today, month, day, year)
    return None if found is None else When(day=found, roll=roll)


def _in_duration(amount: int, unit: str, clock: Clock) -> When | None:
    if amount > 100_000:
        return None
    seconds = duration_seconds(amount, unit)
    if unit in ("minute", "hour") and seconds is not None:
        return When(exact=clock.now + timedelta(seconds=seconds))
    try:
        if unit in ("day", "week", "fortnight"):
            return When(day=clock.today + timedelta(days=(seconds or 0) // 86400))
        if unit == "month":
            return When(day=clock.today + relativedelta(months=amount))
        if unit == "year":
            return When(day=clock.today + relativedelta(years=amount))
    except (OverflowError, ValueError):
        return None
    return None


def _period(which: str, unit: str, today: date) -> When:
    monday = today - timedelta(days=today.weekday())
    if unit == "week":
        return When(day=monday + timedelta(days=7)) if which == "next" else When(day=today)
    if unit == "weekend":
        saturday = monday + timedelta(days=5)
        if which == "next":
            return When(day=saturday + timedelta(days=7))
        return When(day=max(saturday, today))
    if unit == "month":
        first_next = (today.replace(day=1) + timedelta(days=32)).replace(day=1)
        return When(day=first_next) if which == "next" else When(day=today)
    return When(day=date(today.year + 1, 1, 1)) if which == "next" else When(day=today)


def take_time(message: Message) -> When:
    """Takes the first time-of-day phrase out of the message ("at 7:30pm", "noon", "at 10", "in the evening")."""
    match = message.search(TIME_AMPM)
    if match:
        at = clock_time(int(match.group(1)), int(match.group(2) or 0), match.group(3))
        if at is not None:
            message.take_match(match)
            return When(at=at)
    match = message.search(TIME_24)
    if match:
        message.take_match(match)
        return When(at=time(int(match.group(1)), int(match.group(2))))
    match = message.search(TIME_WORD)
    if match:
        message.take_match(match)
        word = match.group(1)
        return When(
            at=time(0, 0) if word == "midnight" else time(12, 0), part="midnight" if word == "midnight" else None
        )
    match = message.search(TIME_BARE)
    if match:
        hour = int(match.group(1))
        if 0 <= hour <= 23:
            message.take_match(match)
            return When(at=time(hour + 12 if 1 <= hour <= 6 else hour, 0))
    match = message.search(PART_OF_DAY)
    if match and not match.group(0).startswith("every"):
        message.take_match(match)
        return When(part=match.group(1))
    return When()


def take_when(message: Message, clock: Clock) -> When:
    """Takes a date and a time out of the message and combines them."""
    day = take_date(message, clock)
    if day.exact is not None:
        return day
    at = take_time(message)
    combined = replace(day, at=at.at if at.at is not None else day.at, part=day.part or at.part)
    if at.part == "midnight" and day.day is None:
        combined = replace(combined, part="midnight")
    return combined


def resolve(when: When, clock: Clock, default: time = DEFAULT_TIME) -> datetime | None:
    """The wall-clock moment a When denotes (naive, in the user's zone, as the task service will store it).

    None when nothing was written. May be in the past when the user wrote a past date ("2020-01-01",
    "today at 8am" in the evening): the caller asks about it.
    """
    if not when.found:
        return None
    if when.exact is not None:
        return clock.local_of(when.exact).replace(second=0, microsecond=0)
    now = clock.local_now
    at = when.at or _part_time(when.part, now) or default
    if when.day is None:
        if when.part == "midnight":
            return clock.resolved_local(datetime.combine(clock.today + timedelta(days=1), time(0, 0)))
        local = datetime.combine(clock.today, at)
        if clock.resolved_local(local) <= now:
            local += timedelta(days=1)
        return clock.resolved_local(local)
    local = datetime.combine(when.day, at)
    if when.day == clock.today and when.part == "tonight" and when.at is None and local <= now:
        late = (now + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
        local = late if late.date() == clock.today else now.replace(hour=23, minute=59, second=0, microsecond=0)
    for _ in range(20):
        if clock.resolved_local(local) > now or when.roll is None:
            break
        local = _rolled(local, when.roll)
    return clock.resolved_local(local)


def _rolled(local: datetime, roll: str) -> datetime:
    if roll == "week":
        return local + timedelta(days=7)
    if roll == "month":
        later = _next_month_day(local.date().replace(day=1) + timedelta(days=32), local.day)
        return datetime.combine(later, local.time()) if later is not None else local + timedelta(days=31)
    moved: datetime = local + relativedelta(years=1)
    return moved


def _part_time(part: str | None, now: datetime) -> time | None:
    if part is None or part == "midnight":
        return None
    return PART_TIMES.get(part)


def take_duration(message: Message) -> int | None:
    """Takes a duration ("5 minutes", "an hour", "half an hour", "for 2 days") out of the message, in seconds."""
    match = message.search(_HALF_HOUR)
    if match:
        message.take_match(match)
        return 1800
    match = message.search(DURATION)
    if match:
        seconds = duration_seconds(number(match.group(1)), unit_of(match.group(2)))
        if seconds is not None:
            message.take_match(match)
            return seconds
    return None


DURATION = re.compile(
    r"\b(?:(?:for|by|in)\s+(?:another\s+)?)?(" + _NUM + r")\s*(minutes?|mins?|min|m|hours?|hrs?|hr|h|days?|weeks?|"
    r"fortnight)\b"
)
_HALF_HOUR = re.compile(r"\b(?:(?:for|by|in)\s+)?(?:half\s+an\s+hour|a\s+half\s+hour|30m)\b")
