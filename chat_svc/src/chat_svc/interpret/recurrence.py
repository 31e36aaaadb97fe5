"""Repetition in words ("every tuesday and friday", "the last friday of every month") as RFC 5545 rules.

Rules carry no DTSTART: the task's due time is the first occurrence, the first one after "now" that matches the
rule's days (every other week counts from that first occurrence, so "every other monday" starts this coming
Monday). Each rule is checked with todo_kit.rrules before it is returned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from chat_svc.interpret import dates
from chat_svc.interpret import vocabulary as v
from chat_svc.interpret.text import CUT, Clock, Message
from todo_kit import rrules

_WD = v.WEEKDAY_PATTERN
_WDS = r"(?:" + _WD + r")s?"
_WD_LIST = _WDS + r"(?:\s*(?:,|and|&|or)\s*(?:on\s+)?" + _WDS + r"){0,6}"
_EVERY = r"(?:every|each|on|on\s+every|on\s+each)"
_NTH = r"first|second|third|fourth|fifth|last|1st|2nd|3rd|4th|5th|penultimate"
_MONTH_END = r"(?:of|in)\s+(?:each|every|the|a)\s+month"

NTH_WEEKDAY = re.compile(
    r"\b(?:(?:on|every|each)\s+)?(?:the\s+)?("
    + _NTH
    + r")\s+("
    + _WD
    + r")\s+(?:"
    + _MONTH_END
    + r"|monthly|of\s+the\s+month)"
)
EVERY_NTH_WEEKDAY = re.compile(
    r"\b(?:every|each)\s+(" + _NTH + r")\s+(" + _WD + r")\b(?:\s+(?:" + _MONTH_END + r"|of\s+the\s+month))?"
)
MONTH_DAY_EVERY_MONTH = re.compile(
    r"\b(?:on\s+)?(?:the\s+|every\s+|each\s+)?(" + v.DAY_ORDINAL_PATTERN + r"|last\s+day)\s+(?:day\s+)?" + _MONTH_END
)
MONTHLY_ON_DAY = re.compile(
    r"\b(?:every\s+month|each\s+month|monthly)\s+on\s+the\s+(" + v.DAY_ORDINAL_PATTERN + r"|last\s+day)\b"
)
EVERY_DAY_ORDINAL = re.compile(r"\b(?:every|each)\s+(" + r"\d{1,2}(?:st|nd|rd|th)" + r")\b(?!\s+(?:of|" + _WD + r"))")
YEARLY_ON = re.compile(
    r"\b(?:every\s+year|each\s+year|yearly|annually|once\s+a\s+year)\s+on\s+(?:the\s+)?(?:("
    + v.MONTH_PATTERN
    + r")\s+(\d{1,2})(?:st|nd|rd|th)?|(\d{1,2}|"
    + v.ORDINAL_WORD_PATTERN
    + r")(?:st|nd|rd|th)?\s+(?:of\s+)?("
    + v.MONTH_PATTERN
    + r"))\b"
)
EVERY_DATE = re.compile(
    r"\b(?:every|each)\s+(?:("
    + v.MONTH_PATTERN
    + r")\s+(\d{1,2})(?:st|nd|rd|th)?|(?:the\s+)?(\d{1,2}|"
    + v.ORDINAL_WORD_PATTERN
    + r")(?:st|nd|rd|th)?\s+(?:of\s+)?("
    + v.MONTH_PATTERN
    + r"))\b"
)
WEEKDAYS = re.compile(r"\b(?:every|each|on\s+every|on\s+each)\s+(other\s+)?(" + _WD_LIST + r")\b")
PLURAL_WEEKDAYS = re.compile(r"\b(?:on\s+)?(" + _WD + r")s\b")
WORKDAYS = re.compile(
    r"\b(?:every|each|on)\s+(?:week\s*day|work\s*day|business\s+day)s?\b|\bon\s+weekdays\b|\bweekdays\b"
)
WEEKENDS = re.compile(r"\b(?:every|each|on)\s+weekends?\b|\bweekends\b")
INTERVAL = re.compile(
    r"\b(?:every|each)\s+(other|" + v.NUMBER_PATTERN + r"|" + v.ORDINAL_WORD_PATTERN + r"|\d{1,2}(?:st|nd|rd|th))?"
    r"\s*(minutes?|hours?|days?|weeks?|months?|years?|fortnight|quarter)\b"
    r"(?:\s+on\s+(?:the\s+)?(" + _WD_LIST + r"|" + v.DAY_ORDINAL_PATTERN + r"))?"
)
ADVERB = re.compile(
    r"\b(daily|weekly|monthly|yearly|annually|hourly|nightly|fortnightly|quarterly)\b"
    r"(?:\s+on\s+(?:the\s+)?(" + _WD_LIST + r"|" + v.DAY_ORDINAL_PATTERN + r"))?"
    # an adverb, not an adjective ("the quarterly review"): the clause ends or another phrase follows
    r"(?=\s*(?:$|[,;.!#\x00]|(?:on|at|from|starting|until|till|for|in|and|by|p[1-4]|urgent|tag|tagged)\b))"
)
EVERY_PART = re.compile(r"\b(?:every|each)\s+(morning|afternoon|evening|night)\b")
TIMES_PER = re.compile(
    r"\b(twice|(?:" + v.NUMBER_PATTERN + r")\s+times)\s+(?:a|an|per|each|every)\s+(day|week|month|year)\b"
)
COUNT = re.compile(
    r"\b(?:for\s+)?(?:a\s+total\s+of\s+)?(" + v.NUMBER_PATTERN + r")\s+(?:more\s+)?(?:times|occurrences)\b"
)
FOR_UNITS = re.compile(r"\bfor\s+(?:the\s+next\s+)?(" + v.NUMBER_PATTERN + r")\s+(days|weeks|months|years)\b")
UNTIL = re.compile(r"\b(?:until|till|through|ending(?:\s+on)?|up\s+to)\s+")
REPEAT_WORDS = re.compile(r"\b(?:repeat(?:s|ing)?|recur(?:s|ring)?)\b")

_FREQ_OF_UNIT = {"minute": "MINUTELY", "hour": "HOURLY", "day": "DAILY", "week": "WEEKLY", "month": "MONTHLY",
                 "year": "YEARLY"}  # fmt: skip
_ADVERB_FREQ = {"daily": ("DAILY", 1), "nightly": ("DAILY", 1), "weekly": ("WEEKLY", 1), "monthly": ("MONTHLY", 1),
                "yearly": ("YEARLY", 1), "annually": ("YEARLY", 1), "hourly": ("HOURLY", 1),
                "fortnightly": ("WEEKLY", 2), "quarterly": ("MONTHLY", 3)}  # fmt: skip


@dataclass
class Repeat:
    """A rule read from words: its parts, a time of day the words imply, or a question to ask."""

    freq: str = ""
    interval: int = 1
    byday: list[str] = field(default_factory=list)
    bymonthday: list[int] = field(default_factory=list)
    bymonth: list[int] = field(default_factory=list)
    count: int | None = None
    until: date | None = None
    part: str | None = None
    question: str = ""

    @property
    def found(self) -> bool:
        """Whether the words say the task repeats."""
        return bool(self.freq) or bool(self.question)

    def rule(self) -> str:
        """The RFC 5545 rule (without DTSTART)."""
        parts = [f"FREQ={self.freq}"]
        if self.interval > 1:
            parts.append(f"INTERVAL={self.interval}")
        if self.byday:
            parts.append("BYDAY=" + ",".join(self.byday))
        if self.bymonth:
            parts.append("BYMONTH=" + ",".join(map(str, self.bymonth)))
        if self.bymonthday:
            parts.append("BYMONTHDAY=" + ",".join(map(str, self.bymonthday)))
        if self.count is not None:
            parts.append(f"COUNT={self.count}")
        if self.until is not None:
            parts.append(f"UNTIL={self.until:%Y%m%d}T235959")
        return ";".join(parts)

    def anchor_rule(self) -> str:
        """The rule without INTERVAL, COUNT and UNTIL: its first match after now is the first occurrence."""
        return Repeat(self.freq, 1, self.byday, self.bymonthday, self.bymonth).rule()

    @property
    def pins_days(self) -> bool:
        """Whether the rule names the days it falls on (then the first occurrence is the first such day)."""
        return bool(self.byday or self.bymonthday or self.bymonth)


def _weekday_codes(text: str) -> list[str]:
    codes: list[str] = []
    for word in re.findall(_WD, text):
        code = v.WEEKDAY_CODES[v.WEEKDAYS[word]]
        if code not in codes:
            codes.append(code)
    order = {code: i for i, code in enumerate(v.WEEKDAY_CODES)}
    return sorted(codes, key=order.__getitem__)


def _nth(word: str) -> int:
    if word == "last":
        return -1
    if word == "penultimate":
        return -2
    return dates.ordinal(word)


def _interval(word: str | None) -> int:
    if not word:
        return 1
    if word == "other":
        return 2
    if word in v.ORDINAL_WORDS or (word[:1].isdigit() and not word.isdigit()):
        return max(1, dates.ordinal(word))
    return max(1, dates.number(word))


def _on_days(repeat: Repeat, on: str | None) -> None:
    """Applies "on monday and friday" / "on the 15th" following an interval phrase."""
    if not on:
        return
    if re.search(_WD, on):
        repeat.byday = _weekday_codes(on)
        if repeat.freq in ("DAILY", ""):
            repeat.freq = "WEEKLY"
    elif on.startswith("last"):
        repeat.bymonthday = [-1]
    else:
        day = dates.ordinal(on)
        if 1 <= day <= 31:
            repeat.bymonthday = [day]


def take_repeat(message: Message, clock: Clock) -> Repeat:
    """Takes a repetition phrase (and its until / count) out of the message."""
    repeat = _take_rule(message)
    if not repeat.freq:
        return repeat
    match = message.search(COUNT)
    if match:
        repeat.count = max(1, min(dates.number(match.group(1)), rrules.MAX_COUNT))
        message.take_match(match)
    else:
        match = message.search(FOR_UNITS)
        if match and _FREQ_OF_UNIT.get(match.group(2).rstrip("s")) == repeat.freq:
            repeat.count = max(1, min(dates.number(match.group(1)) // repeat.interval, rrules.MAX_COUNT))
            message.take_match(match)
    match = message.search(UNTIL)
    if match:
        tail = message.tail(match.end())
        until = dates.take_date(tail, clock)
        taken = len(tail.lower) - len(tail.lower.lstrip(CUT))
        if until.day is not None and until.at is None and taken:
            message.take(match.start(), match.end() + taken)
            repeat.until = until.day
    return repeat


def _take_rule(message: Message) -> Repeat:
    match = message.search(TIMES_PER)
    if match:
        message.take_match(match)
        unit = match.group(2)
        return Repeat(question=f"On which days of the {unit} should it repeat? For example: every monday and thursday.")
    match = message.search(NTH_WEEKDAY) or message.search(EVERY_NTH_WEEKDAY)
    if match:
        message.take_match(match)
        code = v.WEEKDAY_CODES[v.WEEKDAYS[match.group(2)]]
        return Repeat("MONTHLY", byday=[f"{_nth(match.group(1))}{code}"])
    match = message.search(YEARLY_ON) or message.search(EVERY_DATE)
    if match:
        month = v.MONTHS[match.group(1) or match.group(4)]
        day = int(match.group(2)) if match.group(2) else dates.ordinal(match.group(3))
        if dates._safe_date(2024, month, day) is not None:
            message.take_match(match)
            return Repeat("YEARLY", bymonth=[month], bymonthday=[day])
    match = message.search(MONTH_DAY_EVERY_MONTH) or message.search(MONTHLY_ON_DAY)
    if match:
        message.take_match(match)
        word = match.group(1)
        day = -1 if word.startswith("last") else dates.ordinal(word)
        if day == -1 or 1 <= day <= 31:
            return Repeat("MONTHLY", bymonthday=[day])
    match = message.search(EVERY_DAY_ORDINAL)
    if match:
        day = dates.ordinal(match.group(1))
        if 1 <= day <= 31:
            message.take_match(match)
            return Repeat("MONTHLY", bymonthday=[day])
    match = message.search(WORKDAYS)
    if match:
        message.take_match(match)
        return Repeat("WEEKLY", byday=["MO", "TU", "WE", "TH", "FR"])
    match = message.search(WEEKENDS)
    if match:
        message.take_match(match)
        return Repeat("WEEKLY", byday=["SA", "SU"])
    match = message.search(INTERVAL)
    if match:
        unit = match.group(2).rstrip("s")
        interval = _interval(match.group(1))
        if unit == "fortnight":
            unit, interval = "week", interval * 2
        if unit == "quarter":
            unit, interval = "month", interval * 3
        if interval <= rrules.MAX_INTERVAL:
            message.take_match(match)
            repeat = Repeat(_FREQ_OF_UNIT[unit], interval)
            _on_days(repeat, match.group(3))
            _take_following_days(message, repeat, match.end())
            return repeat
    match = message.search(WEEKDAYS)
    if match:
        message.take_match(match)
        interval = 2 if match.group(1) else 1
        return Repeat("WEEKLY", interval, byday=_weekday_codes(match.group(2)))
    match = message.search(ADVERB)
    if match:
        message.take_match(match)
        freq, interval = _ADVERB_FREQ[match.group(1)]
        repeat = Repeat(freq, interval, part="night" if match.group(1) == "nightly" else None)
        _on_days(repeat, match.group(2))
        _take_following_days(message, repeat, match.end())
        return repeat
    match = message.search(EVERY_PART)
    if match:
        message.take_match(match)
        return Repeat("DAILY", part=match.group(1))
    match = message.search(PLURAL_WEEKDAYS)
    if match:
        message.take_match(match)
        return Repeat("WEEKLY", byday=_weekday_codes(match.group(1)))
    return Repeat()


_FOLLOWING_DAYS = re.compile(r"\s*,?\s*(?:on\s+)(?:the\s+)?(" + _WD_LIST + r"|" + v.DAY_ORDINAL_PATTERN + r")\b")


def _take_following_days(message: Message, repeat: Repeat, end: int) -> None:
    """Reads "every week ... on monday" when other words come between (rare; only directly after here)."""
    if repeat.byday or repeat.bymonthday:
        return
    match = _FOLLOWING_DAYS.match(message.lower, end)
    if match:
        message.take_match(match)
        _on_days(repeat, match.group(1))


def first_due(repeat: Repeat, when: dates.When, clock: Clock) -> tuple[datetime | None, str]:
    """The first occurrence's wall-clock time and the rule; a question instead when they do not fit together.

    Returns (local due time or None, question).
    """
    rule = repeat.rule()
    try:
        rrules.check_rule(rule)
    except ValueError:
        return None, "I could not turn that repetition into a schedule. Could you say it another way?"
    at = when.at or (dates.PART_TIMES.get(when.part or "") if when.part else None)
    at = at or (dates.PART_TIMES.get(repeat.part or "") if repeat.part else None)
    if repeat.freq in ("HOURLY", "MINUTELY") and at is None and when.day is None and when.exact is None:
        step = timedelta(hours=1) if repeat.freq == "HOURLY" else timedelta(minutes=1)
        base = clock.local_now.replace(second=0, microsecond=0)
        base = base.replace(minute=0) if repeat.freq == "HOURLY" else base
        return clock.resolved_local(base + step), ""
    at = at or dates.DEFAULT_TIME
    if not repeat.pins_days:
        due = dates.resolve(dates.When(day=when.day, at=at, exact=when.exact, roll=when.roll), clock)
        return due, ""
    start_day = when.day if when.day is not None and when.day > clock.today else clock.today
    start = datetime.combine(start_day - timedelta(days=1), at)
    after = clock.now
    if when.day is not None and when.day > clock.today:
        after = max(after, clock.instant_of(datetime.combine(when.day, time(0, 0))) - timedelta(seconds=1))
    try:
        found = rrules.first_after(repeat.anchor_rule(), start, clock.zone_name, after, min_index=2)
    except (ValueError, rrules.EvaluationLimit):
        found = None
    if found is None:
        return None, "That repetition has no date ahead. When should it be due?"
    return found.local, ""
