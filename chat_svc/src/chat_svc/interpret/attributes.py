"""Priorities, tags and reminder offsets written into a message.

Priorities: "urgent", "!urgent", "asap" -> URGENT; "high priority", "important", "!!" -> HIGH; "medium priority" ->
MEDIUM; "low priority" -> LOW; "!!!" -> URGENT; "p1".."p4" as in Todoist, where p1 is the highest: p1 URGENT,
p2 HIGH, p3 MEDIUM, p4 LOW.
Tags: "#home", "@home", "tag errands", "tagged work and home", "tags: a, b", "label x"; lower-cased; the task
service's tag alphabet (letters, digits, "-", "_", ":", "/"), 1 to 64 characters.
"""

from __future__ import annotations

import re

from chat_svc.interpret import dates
from chat_svc.interpret import vocabulary as v
from chat_svc.interpret.text import Message
from todo_contracts.task.v1 import task_pb2

_LEVELS: dict[str, task_pb2.Priority.ValueType] = {
    "urgent": task_pb2.PRIORITY_URGENT, "asap": task_pb2.PRIORITY_URGENT, "critical": task_pb2.PRIORITY_URGENT,
    "top": task_pb2.PRIORITY_URGENT, "highest": task_pb2.PRIORITY_URGENT,
    "high": task_pb2.PRIORITY_HIGH, "important": task_pb2.PRIORITY_HIGH,
    "medium": task_pb2.PRIORITY_MEDIUM, "normal": task_pb2.PRIORITY_MEDIUM, "mid": task_pb2.PRIORITY_MEDIUM,
    "low": task_pb2.PRIORITY_LOW, "lowest": task_pb2.PRIORITY_LOW,
    "none": task_pb2.PRIORITY_NONE, "no": task_pb2.PRIORITY_NONE,
    "1": task_pb2.PRIORITY_URGENT, "2": task_pb2.PRIORITY_HIGH, "3": task_pb2.PRIORITY_MEDIUM,
    "4": task_pb2.PRIORITY_LOW,
}  # fmt: skip
_LEVEL = r"(urgent|critical|highest|high|top|medium|normal|mid|lowest|low|none|no)"

PRIORITY_PATTERNS = (
    re.compile(r"(?<![\w!])!(urgent|high|medium|low|asap|important)\b"),
    re.compile(r"(?<![\w!])!{3,}(?![\w!])"),
    re.compile(r"(?<![\w!])!!(?![\w!])"),
    re.compile(r"\b[pP]([1-4])\b"),
    re.compile(r"\b(?:with\s+|at\s+|as\s+|to\s+)?(?:a\s+)?" + _LEVEL + r"[\s-]+(?:priority|prio|importance)\b"),
    re.compile(r"\b(?:with\s+)?(?:the\s+)?(?:priority|prio)\s*(?::|=|is|of|to|at)?\s*" + _LEVEL + r"\b"),
    re.compile(r"\b(?:priority|prio)\s*(?::|=|is|of|to|at)?\s*([1-4])\b"),
    re.compile(r"(?:^|,\s*|\s)(urgent(?:ly)?|asap|important)\s*(?::|!|,|$)"),
    re.compile(r"(?<![#@\w])(urgent|asap|important)\b"),
)

_TAG = r"[a-z0-9][a-z0-9_\-:/]{0,63}"
HASH_TAG = re.compile(r"(?<![\w&/#])[#@](" + _TAG + r")(?![\w\-:/@.]*@)")
TAG_WORDS = re.compile(
    r"\b(?:tag(?:ged)?|tags|label(?:led|ed)?|labels|categor(?:y|ized|ised)|under)\s*(?::|as|with|=)?\s*("
    + _TAG
    + r"(?:\s*(?:,|and|&)\s*"
    + _TAG
    + r"){0,9})(?![\w\-:/])"
)
_TAG_SPLIT = re.compile(r"\s*(?:,|\band\b|&)\s*")
REMINDER_OFFSET = re.compile(
    r"\b(?:(?:and\s+)?remind\s+me\s+|(?:with\s+)?(?:a\s+)?reminder\s+)?(?:about\s+it\s+)?("
    + v.NUMBER_PATTERN
    + r"|half\s+an)\s+(minutes?|mins?|hours?|hrs?|days?|weeks?)\s+"
    r"(?:before(?:hand)?|earlier|ahead|in\s+advance|prior)\b"
)
_NOT_TAGS = frozenset({"and", "as", "with", "the", "a", "to", "it", "them"})


def take_priority(message: Message) -> task_pb2.Priority.ValueType:
    """Takes a priority phrase out of the message; PRIORITY_UNSPECIFIED when there is none."""
    for pattern in PRIORITY_PATTERNS:
        match = message.search(pattern)
        if not match:
            continue
        text = match.group(0)
        if match.lastindex:
            word = match.group(1).lower()
        elif "!!!" in text:
            word = "urgent"
        else:
            word = "high"
        level = _LEVELS.get(word.removesuffix("ly"))
        if level is None:
            continue
        message.take_match(match)
        return level
    return task_pb2.PRIORITY_UNSPECIFIED


def level_of(word: str) -> task_pb2.Priority.ValueType:
    """The priority a word names ("high", "high priority", "p1", "1", "urgent"); PRIORITY_UNSPECIFIED when none."""
    words = word.lower().split()
    for candidate in words:
        if candidate in ("priority", "prio", "importance", "a", "an"):
            continue
        candidate = candidate[1:] if candidate[:1] == "p" and candidate[1:].isdigit() else candidate
        return _LEVELS.get(candidate, task_pb2.PRIORITY_UNSPECIFIED)
    return task_pb2.PRIORITY_UNSPECIFIED


def take_tags(message: Message) -> list[str]:
    """Takes tag phrases out of the message; the tags in order, without duplicates."""
    tags: list[str] = []
    for match in list(message.finditer(HASH_TAG)):
        if match.group(1).isdigit():
            continue  # "#2" is a choice, not a tag
        message.take_match(match)
        _add(tags, match.group(1))
    words_match = message.search(TAG_WORDS)
    if words_match and not (words_match.group(0).startswith("under") and not tags):
        words = [word for word in _TAG_SPLIT.split(words_match.group(1)) if word and word not in _NOT_TAGS]
        if words:
            message.take_match(words_match)
            for word in words:
                _add(tags, word)
    return tags


def _add(tags: list[str], tag: str) -> None:
    tag = tag.strip().lower()[:64]
    if tag and tag not in tags and len(tags) < 50:
        tags.append(tag)


def take_offsets(message: Message) -> list[int]:
    """Takes "15 minutes before" / "remind me a day before" phrases out; the offsets in seconds."""
    offsets: list[int] = []
    for match in list(message.finditer(REMINDER_OFFSET)):
        amount = 30 if match.group(1).startswith("half") else dates.number(match.group(1))
        unit = dates.unit_of(match.group(2))
        if match.group(1).startswith("half"):
            amount, unit = 30, "minute" if unit == "hour" else unit
        seconds = dates.duration_seconds(amount, unit)
        if seconds is not None and seconds <= 366 * 86400 and seconds not in offsets and len(offsets) < 20:
            message.take_match(match)
            offsets.append(seconds)
    return offsets
