"""Checking RFC 5545 recurrence rules (RRULE values)."""

from __future__ import annotations

from datetime import datetime

from dateutil.rrule import rrule, rrulestr

MAX_RULE_LENGTH = 500


def parse_rule(text: str, dtstart: datetime) -> rrule:
    """Parses an RRULE value (no "RRULE:" prefix, no DTSTART) for a naive local dtstart.

    Raises ValueError with a plain-English reason for a rule RFC 5545 does not
    allow, including some that python-dateutil would accept.
    """
    problems = rule_problems(text)
    if problems:
        raise ValueError("; ".join(f"{part}: {msg}" if part else msg for part, msg in problems))
    parsed = rrulestr(text, dtstart=dtstart)
    assert isinstance(parsed, rrule)
    return parsed


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
    if problems:
        return problems
    try:
        rrulestr(body, dtstart=datetime(2000, 1, 1))
    except (ValueError, TypeError) as exc:
        message = str(exc)
        part = next((p for p in parts if p in message.upper()), "")
        return [(part, message)]
    return []
