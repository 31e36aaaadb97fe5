"""The task rules, free of I/O: what a valid task is, how updates apply, how listing pages.

Functions take and return todo.task.v1 messages; bad input is collected into a
Violations so one INVALID_ARGUMENT names every bad field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import duration_pb2

from todo_contracts.common.v1 import common_pb2
from todo_contracts.task.v1 import task_pb2, task_service_pb2
from todo_kit import inputs, paging, rrules, zoned
from todo_kit.errors import DomainError, InvalidArgument, NotFound, Violations, shown

TITLE_MAX = 500
DESCRIPTION_MAX = 10_000
TAGS_MAX = 50
TAG_MAX = 64
REMINDERS_MAX = 20
REQUEST_ID_MAX = 128
QUERY_MAX = 200
PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 1000
MAX_OFFSET_SECONDS = 366 * 24 * 3600
TAG_PATTERN = re.compile(r"^[\w\-:/]+$")
# Reminder ids are "<task id>/<rule id>/<plan>" and snoozes "<reminder id>/snooze/<n>": a rule id holds no "/", so
# no client-chosen id can collide with a generated one.
RULE_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")

# Fields UpdateTask may change, with the sub-paths allowed under them.
UPDATABLE = {
    "title": (),
    "description": (),
    "priority": (),
    "tags": (),
    "due": ("local_time", "time_zone"),
    "reminders": (),
    "recurrence": ("rrule", "repeat_from", "skip_missed", "create_lead_time"),
}


def normalize_tags(tags: Iterable[str], violations: Violations, field: str) -> list[str]:
    """Trims, lower-cases and de-duplicates tags, keeping first-seen order."""
    tags = list(tags)
    if len(tags) > TAGS_MAX:
        violations.add(field, f"at most {TAGS_MAX} tags, got {len(tags)}")
        return []
    seen: dict[str, None] = {}
    for index, raw in enumerate(tags):
        tag = raw.strip().lower()
        if not tag or len(tag) > TAG_MAX or not TAG_PATTERN.match(tag):
            violations.add(
                f"{field}[{index}]", f"a tag is 1 to {TAG_MAX} letters, digits, '-', '_', ':' or '/', got {raw[:80]!r}"
            )
            continue
        seen.setdefault(tag, None)
    return list(seen)


def _check_zoned(value: common_pb2.ZonedDateTime, violations: Violations, field: str) -> zoned.ZonedTime | None:
    try:
        local = zoned.parse_local(value.local_time)
    except ValueError as exc:
        violations.add(f"{field}.local_time", str(exc))
        local = None
    try:
        zoned.zone_named(value.time_zone)
    except ValueError as exc:
        violations.add(f"{field}.time_zone", str(exc))
        return None
    if local is None:
        return None
    try:
        return zoned.resolve(local, value.time_zone)
    except ValueError as exc:  # a year that leaves 1000..9999 in UTC
        violations.add(f"{field}.local_time", str(exc))
        return None


def _check_duration(value: duration_pb2.Duration, violations: Violations, field: str) -> None:
    problem = inputs.duration_problem(value)
    if problem is not None:
        violations.add(field, problem)
        return
    seconds = value.seconds + value.nanos / 1e9
    if seconds < 0 or seconds > MAX_OFFSET_SECONDS:
        violations.add(field, "must be between 0 and 366 days")


def checked_task(task: task_pb2.Task, violations: Violations, field: str = "task") -> task_pb2.Task:
    """The client-settable fields of task, validated and normalized.

    Output-only fields are dropped; the due time gets its instant; reminder
    rules get ids; a recurrence gets its series start.
    """
    out = task_pb2.Task()
    title = task.title.strip()
    problem = inputs.text_problem(title, TITLE_MAX, required=True)
    if problem is not None:
        violations.add(f"{field}.title", problem)
    out.title = title
    problem = inputs.text_problem(task.description, DESCRIPTION_MAX)
    if problem is not None:
        violations.add(f"{field}.description", problem)
    out.description = task.description
    if task.priority not in task_pb2.Priority.values():
        violations.add(f"{field}.priority", f"unknown priority {task.priority}")
    out.priority = task.priority or task_pb2.PRIORITY_NONE
    out.tags[:] = normalize_tags(task.tags, violations, f"{field}.tags")
    due = None
    if task.HasField("due"):
        due = _check_zoned(task.due, violations, f"{field}.due")
        if due is not None:
            out.due.CopyFrom(due.to_proto())
    _check_reminders(task, out, due is not None, violations, field)
    if task.HasField("recurrence"):
        _check_recurrence(task.recurrence, out, due, violations, f"{field}.recurrence")
    return out


def _check_reminders(
    task: task_pb2.Task, out: task_pb2.Task, has_due: bool, violations: Violations, field: str
) -> None:
    if len(task.reminders) > REMINDERS_MAX:
        violations.add(f"{field}.reminders", f"at most {REMINDERS_MAX} reminder rules, got {len(task.reminders)}")
        return
    seen_ids: set[str] = set()
    for index, rule in enumerate(task.reminders):
        where = f"{field}.reminders[{index}]"
        checked = task_pb2.ReminderRule(rule_id=rule.rule_id.strip() or uuid.uuid4().hex[:12])
        if not RULE_ID_PATTERN.fullmatch(checked.rule_id):
            violations.add(f"{where}.rule_id", f"1 to 64 letters, digits, '-' or '_', got {shown(checked.rule_id)}")
        elif checked.rule_id in seen_ids:
            violations.add(f"{where}.rule_id", f"{checked.rule_id!r} is used by another rule of this task")
        seen_ids.add(checked.rule_id)
        trigger = rule.WhichOneof("trigger")
        if trigger == "at":
            at = _check_zoned(rule.at, violations, f"{where}.at")
            if at is not None:
                checked.at.CopyFrom(at.to_proto())
        elif trigger == "before_due":
            _check_duration(rule.before_due, violations, f"{where}.before_due")
            if not has_due:
                violations.add(
                    f"{where}.before_due", "a reminder before the due time needs the task to have a due time"
                )
            checked.before_due.CopyFrom(rule.before_due)
        else:
            violations.add(where, "set either at or before_due")
        out.reminders.append(checked)


def _check_recurrence(
    rec: task_pb2.Recurrence,
    out: task_pb2.Task,
    due: zoned.ZonedTime | None,
    violations: Violations,
    field: str,
) -> None:
    for part, message in rrules.rule_problems(rec.rrule):
        violations.add(f"{field}.rrule", f"{part}: {message}" if part else message)
    if due is None:
        violations.add(f"{field}", "a recurring task needs a due time (the first occurrence)")
    if rec.repeat_from not in task_pb2.RepeatFrom.values():
        violations.add(f"{field}.repeat_from", f"unknown value {rec.repeat_from}")
    if rec.HasField("create_lead_time"):
        _check_duration(rec.create_lead_time, violations, f"{field}.create_lead_time")
    checked = out.recurrence
    checked.rrule = rec.rrule.strip()
    checked.repeat_from = rec.repeat_from or task_pb2.REPEAT_FROM_DUE_DATE
    checked.skip_missed = rec.skip_missed
    if rec.HasField("create_lead_time"):
        checked.create_lead_time.CopyFrom(rec.create_lead_time)
    if due is not None:
        checked.series_start.CopyFrom(due.to_proto())


def apply_update(current: task_pb2.Task, patch: Any, paths: Iterable[str]) -> tuple[task_pb2.Task, list[str]]:
    """The task after changing the fields in paths to patch's values, and the top-level fields that changed.

    Raises InvalidArgument for an empty mask, a path that cannot be updated,
    or a result that is not a valid task.
    """
    paths = list(paths)
    violations = Violations()
    if not paths:
        violations.add("update_mask", "name at least one field to change")
    for path in paths:
        top, _, sub = path.partition(".")
        if top not in UPDATABLE or (sub and sub not in UPDATABLE[top]):
            allowed = ", ".join(sorted([*UPDATABLE, *(f"{k}.{s}" for k, v in UPDATABLE.items() for s in v)]))
            violations.add("update_mask", f"{shown(path)} cannot be updated; allowed: {allowed}")
    violations.raise_if_any()
    # Field names come from the mask at run time: typed accessors do not apply.
    merged: Any = task_pb2.Task()
    merged.CopyFrom(current)
    for path in paths:
        top, _, sub = path.partition(".")
        if not sub:
            if top in ("tags", "reminders"):
                del getattr(merged, top)[:]
                getattr(merged, top).extend(getattr(patch, top))
            elif top in ("due", "recurrence"):
                if patch.HasField(top):
                    getattr(merged, top).CopyFrom(getattr(patch, top))
                else:
                    merged.ClearField(top)
            else:
                setattr(merged, top, getattr(patch, top))
        else:
            # A sub-path changes only that part: editing the date keeps the zone.
            parent = getattr(merged, top)
            source = getattr(patch, top)
            if sub == "create_lead_time":
                if source.HasField(sub):
                    parent.create_lead_time.CopyFrom(source.create_lead_time)
                else:
                    parent.ClearField(sub)
            else:
                setattr(parent, sub, getattr(source, sub))
    checked = checked_task(merged, violations)
    violations.raise_if_any()
    if current.HasField("recurrence") and checked.HasField("recurrence"):
        # The series keeps its identity; its start moves only when the rule changes.
        checked.recurrence.series_id = current.recurrence.series_id
        checked.recurrence.occurrence_index = current.recurrence.occurrence_index
        if checked.recurrence.rrule == current.recurrence.rrule and current.recurrence.HasField("series_start"):
            checked.recurrence.series_start.CopyFrom(current.recurrence.series_start)
    result: Any = task_pb2.Task()
    result.CopyFrom(current)
    for name in UPDATABLE:
        result.ClearField(name)
    result.MergeFrom(checked)  # checked holds exactly the client-settable fields
    changed = [name for name in UPDATABLE if _field_differs(current, result, name)]
    return result, changed


def _field_differs(a: Any, b: Any, name: str) -> bool:
    if name in ("due", "recurrence"):
        return bool(a.HasField(name) != b.HasField(name) or getattr(a, name) != getattr(b, name))
    return bool(getattr(a, name) != getattr(b, name))


def check_request_id(value: str) -> None:
    """A client request id is at most 128 printable characters (no NUL, no line breaks)."""
    if len(value) > REQUEST_ID_MAX or not value.isprintable():
        raise InvalidArgument([("client_request_id", f"at most {REQUEST_ID_MAX} printable characters")])


def check_task_id(value: str, field: str = "task_id") -> str:
    """Task ids are UUIDs; anything else is INVALID_ARGUMENT (quoting at most the id's first 80 characters)."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError):
        raise InvalidArgument([(field, f"{shown(value)} is not a task id")]) from None


# --- listing ---------------------------------------------------------------


@dataclass(frozen=True)
class ListingPage:
    """The page of a task listing a ListTasks request asks for."""

    size: int
    order_by: int  # a TaskOrderBy, never UNSPECIFIED
    descending: bool
    fingerprint: str  # of the listing: filters, sort and user (what the next page's token is bound to)
    after: paging.Position | None  # (sort key, task id) of the previous page's last task; None for the first page


# A position's sort key as each order sees it, then the task id (text).
POSITION_SHAPES: dict[int, tuple[paging.Part, ...]] = {
    task_service_pb2.TASK_ORDER_BY_DUE_TIME: (paging.Part.OPTIONAL_TIME, paging.Part.TEXT),
    task_service_pb2.TASK_ORDER_BY_PRIORITY: (paging.Part.INTEGER, paging.Part.TEXT),
    task_service_pb2.TASK_ORDER_BY_CREATE_TIME: (paging.Part.TIME, paging.Part.TEXT),
    task_service_pb2.TASK_ORDER_BY_UPDATE_TIME: (paging.Part.TIME, paging.Part.TEXT),
    task_service_pb2.TASK_ORDER_BY_TITLE: (paging.Part.TEXT, paging.Part.TEXT),
    task_service_pb2.TASK_ORDER_BY_RELEVANCE: (paging.Part.REAL, paging.Part.TEXT),
}


def list_order(request: task_service_pb2.ListTasksRequest) -> tuple[int, bool]:
    """What a listing sorts by (a TaskOrderBy) and whether descending, defaults applied."""
    order_by = request.order_by
    if order_by == task_service_pb2.TASK_ORDER_BY_UNSPECIFIED:
        order_by = (
            task_service_pb2.TASK_ORDER_BY_RELEVANCE
            if search_words(request.query)
            else task_service_pb2.TASK_ORDER_BY_DUE_TIME
        )
    if request.sort_order == common_pb2.SORT_ORDER_UNSPECIFIED:
        descending = order_by in (
            task_service_pb2.TASK_ORDER_BY_RELEVANCE,
            task_service_pb2.TASK_ORDER_BY_PRIORITY,
            task_service_pb2.TASK_ORDER_BY_CREATE_TIME,
            task_service_pb2.TASK_ORDER_BY_UPDATE_TIME,
        )
    else:
        descending = request.sort_order == common_pb2.SORT_ORDER_DESCENDING
    return order_by, descending


def check_list_request(
    request: task_service_pb2.ListTasksRequest, page_tokens: paging.PageTokens, user: str
) -> ListingPage:
    """Validates a ListTasks request of user; returns the page it asks for."""
    violations = Violations()
    if request.page_size < 0 or request.page_size > PAGE_SIZE_MAX:
        violations.add("page_size", f"must be between 1 and {PAGE_SIZE_MAX} (0 means {PAGE_SIZE_DEFAULT})")
    if len(request.query) > QUERY_MAX:
        violations.add("query", f"at most {QUERY_MAX} characters")
    for status in request.statuses:
        if status not in (task_pb2.TASK_STATUS_OPEN, task_pb2.TASK_STATUS_COMPLETED):
            violations.add("statuses", f"unknown status {status}")
    for priority in request.priorities:
        if priority not in task_pb2.Priority.values():
            violations.add("priorities", f"unknown priority {priority}")
    normalize_tags(request.tags_any, violations, "tags_any")
    normalize_tags(request.tags_all, violations, "tags_all")
    if request.series_id:
        try:
            uuid.UUID(request.series_id)
        except ValueError:
            violations.add("series_id", "is not a series id")
    if request.order_by not in task_service_pb2.TaskOrderBy.values():
        violations.add("order_by", f"unknown order {request.order_by}")
    if request.order_by == task_service_pb2.TASK_ORDER_BY_RELEVANCE and not search_words(request.query):
        violations.add("order_by", "relevance needs a query")
    if request.sort_order not in common_pb2.SortOrder.values():
        violations.add("sort_order", f"unknown sort order {request.sort_order}")
    dr = request.due_range
    if dr.HasField("start_time") and dr.HasField("end_time") and dr.start_time.ToDatetime() >= dr.end_time.ToDatetime():
        violations.add("due_range", "start_time must be before end_time")
    order_by, descending = list_order(request)
    fingerprint = paging.query_fingerprint(request, user=user)
    after = None
    if request.page_token and order_by in POSITION_SHAPES:
        try:
            after = _position(page_tokens.read(request.page_token, fingerprint, POSITION_SHAPES[order_by]))
        except ValueError as exc:
            violations.add("page_token", str(exc))
    violations.raise_if_any()
    return ListingPage(request.page_size or PAGE_SIZE_DEFAULT, order_by, descending, fingerprint, after)


def _position(position: paging.Position) -> paging.Position:
    """A position read from a token, its task id checked (a token is signed, and still checked)."""
    key, task_id = position
    if not isinstance(task_id, str):
        raise ValueError(paging.NOT_A_TOKEN)
    try:
        return key, str(uuid.UUID(task_id))
    except ValueError:
        raise ValueError(paging.NOT_A_TOKEN) from None


def search_words(query: str) -> list[str]:
    """The words of a search query (letters and digits only, at most 16)."""
    return re.findall(r"\w+", query.lower())[:16]


# --- the live feed of task changes --------------------------------------------------

REPLAY_PAGE = 200
"""Changes read at once by a stream catching up; a longer replay is read page by page."""
_SEQ_BYTES = 8
_TAG_BYTES = 12
CHANGE_ID_CHARS = 27
"""The length of a change id: base64url, unpadded, of a 12-byte tag and an 8-byte masked number."""
_CHANGE_ID = re.compile(r"^[A-Za-z0-9_-]{27}$")


class HistoryPruned(DomainError):
    """Some change after the client's resume point is no longer kept: it reloads and streams afresh."""

    code = grpc.StatusCode.OUT_OF_RANGE

    def __init__(self) -> None:
        super().__init__(
            "changes after this one are no longer kept; reload the tasks with ListTasks, "
            "then stream without resume_after"
        )


class ChangeIds:
    """Issues and reads change ids: a user's change number, sealed so only the service can read it.

    An id is a keyed tag of (user, number) followed by the number masked with a
    key stream drawn from that tag. Only the user it was issued to can use it
    (another user's id fails the tag check: NOT_FOUND, as an id that never
    existed), and it shows no one how many changes anyone made. The number in
    it outlives the change, so a pruned change is told apart from one that
    never existed. The key is derived from the service's token signing key, so
    every replica reads the ids of the others; changing that key makes old ids
    NOT_FOUND (a client then reloads and streams afresh).
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("a change id key has at least 32 bytes")
        self._key = key

    @classmethod
    def derived_from(cls, signing_key: str) -> ChangeIds:
        """Change ids keyed by a key derived from the service's token signing key."""
        return cls(hmac.new(signing_key.encode(), b"task-feed change id", hashlib.sha256).digest())

    def issue(self, user_id: str, seq: int) -> str:
        """The change id of the user's change number seq; 0 stands for "before the first change"."""
        tag = self._tag(user_id, seq)
        masked = bytes(a ^ b for a, b in zip(seq.to_bytes(_SEQ_BYTES, "big"), self._mask(tag), strict=True))
        return base64.urlsafe_b64encode(tag + masked).decode().rstrip("=")

    def read(self, user_id: str, change_id: str, field: str = "resume_after") -> int:
        """The user's change number in change_id; InvalidArgument if it is no change id, NotFound if not the user's."""
        if not _CHANGE_ID.match(change_id):
            raise InvalidArgument([(field, f"{shown(change_id)} is not a change id of this feed")])
        try:
            raw = base64.urlsafe_b64decode(change_id + "=")
        except (binascii.Error, ValueError):
            raw = b""
        # Only the canonical spelling: the last character carries two spare bits.
        if base64.urlsafe_b64encode(raw).decode().rstrip("=") != change_id:
            raise InvalidArgument([(field, f"{shown(change_id)} is not a change id of this feed")])
        tag, masked = raw[:_TAG_BYTES], raw[_TAG_BYTES:]
        seq = int.from_bytes(bytes(a ^ b for a, b in zip(masked, self._mask(tag), strict=True)), "big")
        if not hmac.compare_digest(tag, self._tag(user_id, seq)):
            raise NotFound(f"change {shown(change_id)} not found")
        return seq

    def _tag(self, user_id: str, seq: int) -> bytes:
        message = b"tag\0" + user_id.encode() + b"\0" + seq.to_bytes(_SEQ_BYTES, "big")
        return hmac.new(self._key, message, hashlib.sha256).digest()[:_TAG_BYTES]

    def _mask(self, tag: bytes) -> bytes:
        return hmac.new(self._key, b"mask\0" + tag, hashlib.sha256).digest()[:_SEQ_BYTES]


def resume_point(resume_after: int | None, last_seq: int, first_kept_after: int | None, change_id: str = "") -> int:
    """Where a stream starts: after resume_after, or (without it) after the user's newest change last_seq.

    first_kept_after is the number of the oldest kept change after resume_after.
    A number past the newest never existed (NotFound); one after which a change
    is missing (pruned) cannot be resumed from without a gap (HistoryPruned).
    The change resume_after itself may be pruned: only what follows it matters.
    """
    if resume_after is None:
        return last_seq
    if resume_after > last_seq:
        raise NotFound(f"change {shown(change_id)} not found")
    if resume_after < last_seq and first_kept_after != resume_after + 1:
        raise HistoryPruned()
    return resume_after


def check_contiguous(after: int, seqs: Sequence[int]) -> None:
    """Raises HistoryPruned unless seqs are the numbers right after `after`, in order.

    A user's changes are numbered without gaps, so a gap is a change pruned
    while the stream was behind: going on would skip it.
    """
    for expected, seq in enumerate(seqs, start=after + 1):
        if seq != expected:
            raise HistoryPruned()
