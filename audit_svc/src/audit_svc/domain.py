"""What the activity log decides, free of I/O: what an event becomes as an entry, how entries chain, how a chain is
checked.

Every entry of a user's log has a sequence (1, 2, 3, ... without gaps) and a
hash over its content and the previous entry's hash, so changing or removing
any entry breaks the chain from there on. The hash input is an unambiguous
encoding: a version tag, then every field in a fixed order, each preceded by
its length, times as whole microseconds.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf import json_format, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from todo_contracts import topics
from todo_contracts.chat.v1 import chat_pb2
from todo_contracts.chat.v1 import events_pb2 as chat_events
from todo_contracts.common.v1 import common_pb2
from todo_contracts.envelope import DecodedEvent
from todo_contracts.notify.v1 import events_pb2 as notify_events
from todo_contracts.notify.v1 import notify_pb2
from todo_contracts.reminder.v1 import events_pb2 as reminder_events
from todo_contracts.reminder.v1 import reminder_pb2
from todo_contracts.task.v1 import events_pb2 as task_events
from todo_contracts.task.v1 import task_pb2
from todo_kit import zoned
from todo_kit.auth import USER_ID_PATTERN

HASH_VERSION = b"todo.audit.v1/entry/1"
"""The first field of every hash input: a new encoding gets a new tag, never a silent change."""
HASH_BYTES = 32
ZERO_HASH = bytes(HASH_BYTES)
"""The previous hash of a user's first entry."""

TITLE_MAX = 80
"""How much of a title (or of any quoted text) a summary repeats."""
SUMMARY_MAX = 400
"""The longest summary: one line, whatever the event carries."""
ERROR_MAX = 120
TEXT_ID_MAX = 128
"""Longer ids (event, task, source) than any publisher makes are refused or left out."""
PAYLOAD_JSON_MAX = 1024 * 1024
"""A payload longer than this in JSON (UTF-8 bytes) is recorded by its size and SHA-256 instead, so one entry always
fits a ListActivity response."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_SPACES = re.compile(r"\s+")
# A URL in an error message: only its scheme and host are repeated, never credentials, a path or a query.
_URL = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]{0,15})://(?:[^\s/@]*@)?([^\s/?#:@]*)[^\s]*")


class Unrecordable(ValueError):
    """An event that can never become an entry (no user, malformed ids)."""


# --- entries -------------------------------------------------------------------


@dataclass(frozen=True)
class Draft:
    """What an event becomes in a user's log, before it takes its place in the chain."""

    user_id: str
    event_id: str
    event_type: str
    source: str
    task_id: str
    summary: str
    payload_json: str
    occur_time: datetime | None  # None: the event carries no time, and when it is recorded stands in


@dataclass(frozen=True)
class Entry:
    """One entry of a user's log, in its place in the chain."""

    user_id: str
    sequence: int
    event_id: str
    event_type: str
    source: str
    task_id: str
    summary: str
    payload_json: str
    occur_time: datetime
    record_time: datetime
    previous_hash: bytes
    entry_hash: bytes


@dataclass(frozen=True)
class ChainHead:
    """Where a user's chain stands: its newest entry, and the anchor left by pruning."""

    user_id: str
    last_sequence: int = 0
    last_hash: bytes = ZERO_HASH
    pruned_through_sequence: int = 0
    anchor_hash: bytes = ZERO_HASH


def in_utc(moment: datetime) -> datetime:
    """An aware moment in UTC; datetimes hold microseconds, as the database does, so stored entries hash the same."""
    if moment.tzinfo is None:
        raise ValueError("an entry's times carry their zone")
    return moment.astimezone(UTC)


def draft_of(event: DecodedEvent) -> Draft:
    """The entry an event becomes: its user, task, summary and canonical payload; Unrecordable if it cannot be one.

    The user is the payload's user_id (every event of the contract has one),
    else the CloudEvent's partition key. The time it happened is the CloudEvent
    time; without one, the time it is recorded stands in.
    """
    message = event.message
    user_id = str(getattr(message, "user_id", "")) or event.partition_key
    if not user_id:
        raise Unrecordable("the event names no user (no user_id, no partition key)")
    if not USER_ID_PATTERN.fullmatch(user_id):
        raise Unrecordable("the event's user is not a user id")
    for name, value in (("id", event.id), ("source", event.source), ("type", event.type)):
        if not value or len(value) > TEXT_ID_MAX or not value.isprintable():
            raise Unrecordable(f"the event's {name} is empty, too long or not printable")
    return Draft(
        user_id=user_id,
        event_id=event.id,
        event_type=event.type,
        source=event.source,
        task_id=task_id_of(message),
        summary=summarize(message),
        payload_json=bounded_payload_json(message),
        occur_time=in_utc(event.time) if event.time is not None else None,
    )


def chained(draft: Draft, head: ChainHead, record_time: datetime) -> Entry:
    """The draft as the entry after head's newest, recorded at record_time."""
    if draft.user_id != head.user_id:
        raise ValueError("an entry joins its own user's chain only")
    record = in_utc(record_time)
    entry = Entry(
        user_id=draft.user_id,
        sequence=head.last_sequence + 1,
        event_id=draft.event_id,
        event_type=draft.event_type,
        source=draft.source,
        task_id=draft.task_id,
        summary=draft.summary,
        payload_json=draft.payload_json,
        occur_time=record if draft.occur_time is None else in_utc(draft.occur_time),
        record_time=record,
        previous_hash=head.last_hash,
        entry_hash=b"",
    )
    return _with_hash(entry)


def _with_hash(entry: Entry) -> Entry:
    return Entry(**{**entry.__dict__, "entry_hash": entry_hash(entry)})


def entry_hash(entry: Entry) -> bytes:
    """SHA-256 over the entry's content and its previous hash (entry_hash itself aside), unambiguously encoded."""
    digest = hashlib.sha256()
    parts: tuple[bytes, ...] = (
        HASH_VERSION,
        entry.user_id.encode(),
        entry.sequence.to_bytes(8, "big", signed=True),
        entry.event_id.encode(),
        entry.event_type.encode(),
        entry.source.encode(),
        entry.task_id.encode(),
        entry.summary.encode(),
        entry.payload_json.encode(),
        _microseconds(entry.occur_time).to_bytes(8, "big", signed=True),
        _microseconds(entry.record_time).to_bytes(8, "big", signed=True),
        entry.previous_hash,
    )
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


def _microseconds(moment: datetime) -> int:
    return (in_utc(moment) - _EPOCH) // _MICROSECOND


# --- checking a chain -------------------------------------------------------------


@dataclass(frozen=True)
class Break:
    """The first entry of a chain that does not match, and what is wrong with it."""

    sequence: int
    problem: str


@dataclass
class ChainCheck:
    """A check of one user's chain in progress, fed a page of entries at a time in sequence order."""

    next_sequence: int
    previous_hash: bytes
    checked: int = 0
    broken: Break | None = None
    newest_hash: bytes = field(default=b"")

    @classmethod
    def from_anchor(cls, head: ChainHead) -> ChainCheck:
        """A check that starts after what pruning removed (from the start when nothing was)."""
        return cls(head.pruned_through_sequence + 1, head.anchor_hash, newest_hash=head.anchor_hash)

    def feed(self, entries: Iterable[Entry]) -> ChainCheck:
        """Checks the next entries; stops at the first that does not match. Returns self."""
        for entry in entries:
            if self.broken is not None:
                break
            self.broken = _problem_of(entry, self.next_sequence, self.previous_hash)
            if self.broken is not None:
                break
            self.checked += 1
            self.next_sequence = entry.sequence + 1
            self.previous_hash = entry.entry_hash
            self.newest_hash = entry.entry_hash
        return self

    def finish(self, head: ChainHead) -> ChainCheck:
        """Compares where the entries ended with the chain head (catches removed newest entries). Returns self."""
        if self.broken is not None:
            return self
        last = self.next_sequence - 1
        if last < head.last_sequence:
            missing = (
                f"entry {last + 1}" if last + 1 == head.last_sequence else f"entries {last + 1} to {head.last_sequence}"
            )
            self.broken = Break(last + 1, f"{missing} of the log are missing (the log recorded {head.last_sequence})")
        elif last > head.last_sequence:
            self.broken = Break(
                head.last_sequence + 1,
                f"entry {head.last_sequence + 1} was added behind the log's back (the log recorded only "
                f"{head.last_sequence})",
            )
        elif self.previous_hash != head.last_hash:
            self.broken = Break(last, f"entry {last} does not match the hash the log recorded for its newest entry")
        return self


def _entries(first: int, last: int) -> str:
    return f"entry {first}" if first == last else f"entries {first} to {last}"


def _problem_of(entry: Entry, expected: int, previous_hash: bytes) -> Break | None:
    if entry.sequence != expected:
        if entry.sequence > expected:
            gap = (
                f"entry {expected}" if entry.sequence == expected + 1 else f"entries {expected} to {entry.sequence - 1}"
            )
            return Break(expected, f"{gap} of the log are missing (after entry {expected - 1} comes {entry.sequence})")
        return Break(entry.sequence, f"entry {entry.sequence} appears again after entry {expected - 1}")
    if entry.previous_hash != previous_hash:
        return Break(
            entry.sequence,
            f"entry {entry.sequence} does not follow entry {entry.sequence - 1}: the previous hash it records is not "
            "that entry's hash",
        )
    if entry_hash(entry) != entry.entry_hash:
        return Break(
            entry.sequence, f"entry {entry.sequence} was changed after it was recorded: its content does not match "
            "its hash",
        )  # fmt: skip
    return None


def check_page(check: ChainCheck, entries: Sequence[Entry]) -> ChainCheck:
    """check.feed(entries), as a plain function to run in a worker thread."""
    return check.feed(entries)


def prunable_through(head: ChainHead, oldest: Sequence[Entry], cutoff: datetime) -> tuple[int, Break | None]:
    """How far a user's oldest entries may be pruned: the last of those recorded before cutoff, in one run.

    oldest: the entries right after the anchor, in sequence order. Entries
    that do not check out are never pruned (that would destroy the evidence):
    the break is returned instead and nothing is pruned.
    """
    prefix: list[Entry] = []
    for entry in oldest:
        if entry.record_time >= cutoff:
            break
        prefix.append(entry)
    if not prefix:
        return head.pruned_through_sequence, None
    check = ChainCheck.from_anchor(head).feed(prefix)
    if check.broken is not None:
        return head.pruned_through_sequence, check.broken
    return prefix[-1].sequence, None


# --- what an event is about ---------------------------------------------------------


def _is_write_only(descriptor: FieldDescriptor) -> bool:
    behaviors = descriptor.GetOptions().Extensions[field_behavior_pb2.field_behavior]
    return field_behavior_pb2.INPUT_ONLY in behaviors


def without_write_only_fields(message: Message) -> Message:
    """A copy of message with every INPUT_ONLY field cleared, at any depth.

    Write-only fields are secrets a user gives once (a webhook's signing
    secret); whichever event comes to carry one, the log never keeps it.
    """
    copy = type(message)()
    copy.CopyFrom(message)
    _clear_write_only(copy)
    return copy


def _clear_write_only(message: Message) -> None:
    for descriptor, value in message.ListFields():
        if _is_write_only(descriptor):
            message.ClearField(descriptor.name)
        elif descriptor.message_type is None:
            continue
        elif descriptor.message_type.GetOptions().map_entry:
            if descriptor.message_type.fields_by_name["value"].message_type is not None:
                for item in value.values():
                    _clear_write_only(item)
        elif descriptor.is_repeated:
            for item in value:
                _clear_write_only(item)
        else:
            _clear_write_only(value)


def payload_json(message: Message) -> str:
    """The event as canonical protobuf JSON (write-only fields left out): sorted keys, no spaces, characters as
    they are."""
    return json.dumps(
        json_format.MessageToDict(without_write_only_fields(message)),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def bounded_payload_json(message: Message) -> str:
    """payload_json(message), or for one over PAYLOAD_JSON_MAX bytes a stand-in naming its size and SHA-256."""
    text = payload_json(message)
    encoded = text.encode()
    if len(encoded) <= PAYLOAD_JSON_MAX:
        return text
    omitted = {"bytes": len(encoded), "sha256": hashlib.sha256(encoded).hexdigest()}
    return json.dumps({"payloadOmitted": omitted}, sort_keys=True, separators=(",", ":"))


def task_id_of(message: Message) -> str:
    """The task an event is about, or "" (an id longer than any task id is left out)."""
    found = ""
    if isinstance(message, task_events.OccurrenceRequested):
        found = message.previous_task_id or message.template.task_id
    elif isinstance(message, (reminder_events.ReminderScheduled, reminder_events.ReminderDue,
                              reminder_events.ReminderCancelled)):  # fmt: skip
        found = message.reminder.task_id
    elif isinstance(message, (notify_events.NotificationSent, notify_events.NotificationFailed)):
        found = message.notification.task_id
    elif isinstance(message, chat_events.ChatMessageHandled):
        found = next((a.task.task_id for a in message.actions if a.task.task_id), message.intent.target_task_id)
    elif isinstance(getattr(message, "task", None), task_pb2.Task):
        found = message.task.task_id  # type: ignore[attr-defined]
    return found if len(found) <= TEXT_ID_MAX and found.isprintable() else ""


# --- summaries ------------------------------------------------------------------------


def one_line(text: str, limit: int) -> str:
    """text on one line (every run of spaces, tabs and line breaks one space, control characters gone), cut with …."""
    flat = "".join(c if c.isprintable() or c.isspace() else " " for c in text)
    flat = _SPACES.sub(" ", flat).strip()
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def quoted(text: str, limit: int = TITLE_MAX) -> str:
    """text in curly quotes, one line, at most limit characters of it."""
    return f"“{one_line(text, limit)}”"


def when(value: common_pb2.ZonedDateTime) -> str:
    """A zoned time as people read it: "Tue 1 Dec 2026 09:00 Europe/Paris"."""
    zone = one_line(value.time_zone, 64)
    try:
        local = zoned.parse_local(value.local_time)
    except ValueError:
        return f"{one_line(value.local_time, 32)} {zone}".strip()
    return f"{_day(local)} {zone}".strip()


def at_instant(stamp: timestamp_pb2.Timestamp, zone_name: str) -> str:
    """An instant in a zone (UTC when the zone is not a known one), as when() writes it."""
    try:
        zone = zoned.zone_named(zone_name)
    except ValueError:
        zone, zone_name = zoned.zone_named("UTC"), "UTC"
    try:
        local = stamp.ToDatetime(tzinfo=UTC).astimezone(zone)
    except (OverflowError, ValueError):
        return "an unknown time"
    return f"{_day(local)} {zone_name}"


def _day(local: datetime) -> str:
    return f"{_DAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]} {local.year} {local:%H:%M}"


def duration_words(delta: timedelta) -> str:
    """A lateness as people say it: "45 s", "3 min", "2 h 5 min", "3 days"."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        hours, minutes = divmod(seconds // 60, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days = seconds // 86400
    return f"{days} day" if days == 1 else f"{days} days"


def scrubbed_error(text: str) -> str:
    """An error message fit for a summary: one line, short, and URLs reduced to scheme and host."""
    return one_line(_URL.sub(lambda m: f"{m.group(1)}://{m.group(2)}", text), ERROR_MAX)


def _task_title(task: task_pb2.Task) -> str:
    return quoted(task.title) if task.title else "a task"


def _due_part(task: task_pb2.Task) -> str:
    return f" (due {when(task.due)})" if task.HasField("due") else ""


_PRIORITIES = {
    task_pb2.PRIORITY_NONE: "none",
    task_pb2.PRIORITY_LOW: "low",
    task_pb2.PRIORITY_MEDIUM: "medium",
    task_pb2.PRIORITY_HIGH: "high",
    task_pb2.PRIORITY_URGENT: "urgent",
}
CHANGES_SHOWN = 6


def _change_words(name: str, task: task_pb2.Task, previous: task_pb2.Task) -> str | None:
    if name == "title":
        return f"renamed from {quoted(previous.title)}"
    if name == "due":
        return f"due {when(task.due)}" if task.HasField("due") else "no longer due"
    if name == "priority":
        return f"priority {_PRIORITIES.get(task.priority, 'none')}"
    if name == "tags":
        return "tags " + one_line(", ".join(task.tags), TITLE_MAX) if task.tags else "no tags"
    if name == "description":
        return "description changed"
    if name == "reminders":
        count = len(task.reminders)
        return "no reminders" if count == 0 else f"{count} reminder{'s' if count > 1 else ''}"
    if name == "recurrence":
        return f"repeats {one_line(task.recurrence.rrule, 60)}" if task.HasField("recurrence") else "no longer repeats"
    return None


def _created(message: task_events.TaskCreated) -> str:
    task = message.task
    index = task.recurrence.occurrence_index if task.HasField("recurrence") else 0
    if index > 1:
        return f"Created occurrence {index} of {_task_title(task)}{_due_part(task)}"
    repeats = f", repeats {one_line(task.recurrence.rrule, 60)}" if task.HasField("recurrence") else ""
    due = f"due {when(task.due)}" if task.HasField("due") else ""
    details = "; ".join(part for part in (due, repeats.lstrip(", ")) if part)
    return f"Created {_task_title(task)}" + (f" ({details})" if details else "")


def _updated(message: task_events.TaskUpdated) -> str:
    words = [_change_words(name, message.task, message.previous) for name in message.changed_fields]
    shown = [w for w in words if w is not None][:CHANGES_SHOWN]
    return f"Changed {_task_title(message.task)}" + (": " + "; ".join(shown) if shown else "")


def _completed(message: task_events.TaskCompleted) -> str:
    task = message.task
    if task.HasField("recurrence"):
        index = task.recurrence.occurrence_index
        which = f"occurrence {index}" if index > 0 else "an occurrence"
        return f"Completed {_task_title(task)} ({which} of a repeating task; the next one follows)"
    return f"Completed {_task_title(task)}"


def _reopened(message: task_events.TaskReopened) -> str:
    return f"Reopened {_task_title(message.task)}"


def _deleted(message: task_events.TaskDeleted) -> str:
    ended = " and ended its series" if message.end_series else ""
    return f"Deleted {_task_title(message.task)}{ended}"


def _occurrence_requested(message: task_events.OccurrenceRequested) -> str:
    title = _task_title(message.template)
    due = f" due {when(message.due)}" if message.HasField("due") else ""
    return f"Next occurrence of {title}: number {message.occurrence_index}{due}"


def _reminder_subject(reminder: reminder_pb2.Reminder) -> str:
    title = quoted(reminder.task_title) if reminder.task_title else "a task"
    kind = "Snoozed reminder" if reminder.snoozed_from_reminder_id else "Reminder"
    return f"{kind} for {title}"


def _fire_time(reminder: reminder_pb2.Reminder) -> str:
    return at_instant(reminder.fire_time, reminder.task_due.time_zone or "UTC")


def _reminder_scheduled(message: reminder_events.ReminderScheduled) -> str:
    reminder = message.reminder
    title = quoted(reminder.task_title) if reminder.task_title else "a task"
    if reminder.snoozed_from_reminder_id:
        return f"Snoozed the reminder for {title} until {_fire_time(reminder)}"
    return f"Reminder for {title} set for {_fire_time(reminder)}"


def _reminder_due(message: reminder_events.ReminderDue) -> str:
    reminder = message.reminder
    due = f" (due {when(reminder.task_due)})" if reminder.HasField("task_due") else ""
    late = f", {duration_words(reminder.lateness.ToTimedelta())} late" if reminder.late else ""
    return f"{_reminder_subject(reminder)} fired{due}{late}"


_CANCEL_REASONS = {
    reminder_events.CANCEL_REASON_TASK_COMPLETED: "the task was completed",
    reminder_events.CANCEL_REASON_TASK_DELETED: "the task was deleted",
    reminder_events.CANCEL_REASON_REPLANNED: "its due time or reminders changed",
}


def _reminder_cancelled(message: reminder_events.ReminderCancelled) -> str:
    reason = _CANCEL_REASONS.get(message.reason)
    because = f": {reason}" if reason else ""
    return f"{_reminder_subject(message.reminder)} at {_fire_time(message.reminder)} cancelled{because}"


_CHANNELS = {
    notify_pb2.CHANNEL_IN_APP: "in the app",
    notify_pb2.CHANNEL_WEBHOOK: "by webhook",
    notify_pb2.CHANNEL_EMAIL: "by e-mail",
}


def _notification(notification: notify_pb2.Notification) -> str:
    return f"Notification {quoted(notification.title)}" if notification.title else "A notification"


def _notification_sent(message: notify_events.NotificationSent) -> str:
    channel = _CHANNELS.get(message.channel, "through an unknown channel")
    attempt = f" (attempt {message.attempt})" if message.attempt > 1 else ""
    late = ", late" if message.notification.late else ""
    return f"{_notification(message.notification)} sent {channel}{attempt}{late}"


def _notification_failed(message: notify_events.NotificationFailed) -> str:
    channel = _CHANNELS.get(message.channel, "through an unknown channel")
    outcome = "will retry" if message.will_retry else "gave up"
    error = f": {scrubbed_error(message.error)}" if message.error else ""
    attempt = f"attempt {message.attempt}, {outcome}"
    return f"{_notification(message.notification)} could not be sent {channel} ({attempt}){error}"


_INTENTS = {
    chat_pb2.INTENT_KIND_CREATE_TASK: "create a task",
    chat_pb2.INTENT_KIND_UPDATE_TASK: "change a task",
    chat_pb2.INTENT_KIND_COMPLETE_TASK: "complete a task",
    chat_pb2.INTENT_KIND_REOPEN_TASK: "reopen a task",
    chat_pb2.INTENT_KIND_DELETE_TASK: "delete a task",
    chat_pb2.INTENT_KIND_LIST_TASKS: "list tasks",
    chat_pb2.INTENT_KIND_SNOOZE_REMINDER: "snooze a reminder",
    chat_pb2.INTENT_KIND_UPDATE_CHANNELS: "change notification channels",
    chat_pb2.INTENT_KIND_SHOW_ACTIVITY: "show activity",
    chat_pb2.INTENT_KIND_HELP: "help",
}
ACTIONS_SHOWN = 3


def _chat(message: chat_events.ChatMessageHandled) -> str:
    said = f"Chat: {quoted(message.text)}"
    done = [one_line(a.summary, TITLE_MAX) for a in message.actions if a.summary.strip()][:ACTIONS_SHOWN]
    if done:
        return f"{said} → {'; '.join(done)}"
    if message.intent.clarifying_question:
        return f"{said} → asked {quoted(message.intent.clarifying_question)}"
    if message.reply:
        return f"{said} → replied {quoted(message.reply)}"
    intent = _INTENTS.get(message.intent.kind)
    return f"{said} → understood as “{intent}”" if intent else f"{said} → not understood"


_SUMMARIES: dict[type[Message], Callable[[Any], str]] = {
    task_events.TaskCreated: _created,
    task_events.TaskUpdated: _updated,
    task_events.TaskCompleted: _completed,
    task_events.TaskReopened: _reopened,
    task_events.TaskDeleted: _deleted,
    task_events.OccurrenceRequested: _occurrence_requested,
    reminder_events.ReminderScheduled: _reminder_scheduled,
    reminder_events.ReminderDue: _reminder_due,
    reminder_events.ReminderCancelled: _reminder_cancelled,
    notify_events.NotificationSent: _notification_sent,
    notify_events.NotificationFailed: _notification_failed,
    chat_events.ChatMessageHandled: _chat,
}


def has_summary(event_type: type[Message]) -> bool:
    """Whether summarize() has words written for this event type (every registered type must)."""
    return event_type in _SUMMARIES


def summarize(message: Message) -> str:
    """A one-line account of an event, for example "Completed “Pay rent”"; at most SUMMARY_MAX characters.

    It repeats what the event says (titles cut at TITLE_MAX characters, error
    messages without URLs' credentials, paths or queries) and never a task's
    description.
    """
    write = _SUMMARIES.get(type(message))
    if write is None:
        return one_line(f"{topics.event_type_name(message)} recorded", SUMMARY_MAX)
    return one_line(write(message), SUMMARY_MAX)


# --- listing -------------------------------------------------------------------------------


def known_event_types() -> frozenset[str]:
    """The event type names ListActivity filters on: every type of every topic."""
    return frozenset(name for topic in topics.ALL_TOPICS for name in topic.type_names)
