"""What the chat decides, free of I/O: which input it accepts, what a reference or an answer points at, the change
an update asks for, and what a conversation remembers between messages (its pending question, its last tasks)."""

from __future__ import annotations

import base64
import enum
import hashlib
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from google.protobuf import timestamp_pb2
from google.protobuf.message import DecodeError

from todo_contracts.chat.v1 import chat_pb2
from todo_contracts.reminder.v1 import reminder_pb2
from todo_contracts.task.v1 import task_pb2, task_service_pb2
from todo_kit import inputs, zoned
from todo_kit.errors import Violations, shown

TEXT_MAX = 4000
"""The longest message, after stripping surrounding white space (the interpreter's MAX_TEXT_CHARS)."""
REQUEST_ID_MAX = 128
CHOICES_SHOWN = 5
"""A "which one?" question lists at most this many tasks."""
LAST_TASKS_MAX = 10
"""How many of the last listed or acted-on tasks a conversation remembers ("the second one")."""
LIST_PAGE_SIZE = 10
ACTIVITY_PAGE_SIZE = 10
ALL_TASKS_MAX = 100
"""At most this many tasks are completed or deleted by one confirmed "all" command (one call each)."""
MESSAGES_RETURNED = 200
"""GetConversation returns at most the last this many messages."""

Kind = chat_pb2.IntentKind
TASK_COMMANDS = frozenset(
    {
        chat_pb2.INTENT_KIND_COMPLETE_TASK,
        chat_pb2.INTENT_KIND_REOPEN_TASK,
        chat_pb2.INTENT_KIND_DELETE_TASK,
        chat_pb2.INTENT_KIND_UPDATE_TASK,
    }
)
"""Commands that need exactly one existing task."""
CONFIRMED_FOR_ALL = frozenset({chat_pb2.INTENT_KIND_COMPLETE_TASK, chat_pb2.INTENT_KIND_DELETE_TASK})
"""Commands that may apply to every task, after a yes."""
OPTIONAL_TARGET = frozenset({chat_pb2.INTENT_KIND_SNOOZE_REMINDER, chat_pb2.INTENT_KIND_SHOW_ACTIVITY})
"""Commands that may name a task, and work without one."""
OPEN = task_pb2.TASK_STATUS_OPEN
COMPLETED = task_pb2.TASK_STATUS_COMPLETED


# --- input -----------------------------------------------------------------


def checked_text(text: str, violations: Violations) -> str:
    """The message without surrounding white space; records a violation if it is empty, too long or has NULs."""
    stripped = text.strip()
    problem = inputs.text_problem(stripped, TEXT_MAX, required=True)
    if problem:
        violations.add("text", problem)
    return stripped


def check_zone(name: str, violations: Violations) -> None:
    """The user's zone must be an IANA zone name (the same names the task service accepts)."""
    if not name:
        violations.add("time_zone", "is required (an IANA time zone such as Europe/Berlin)")
        return
    try:
        zoned.zone_named(name)
    except ValueError as error:
        violations.add("time_zone", str(error))


def check_request_id(value: str, violations: Violations) -> None:
    """A client request id is at most 128 printable characters."""
    if value and (len(value) > REQUEST_ID_MAX or not value.isprintable()):
        violations.add("client_request_id", f"at most {REQUEST_ID_MAX} printable characters")


def checked_conversation_id(value: str, violations: Violations, *, required: bool = False) -> str:
    """A conversation id in its canonical form ("" when empty and not required)."""
    if not value:
        if required:
            violations.add("conversation_id", "is required")
        return ""
    try:
        canonical = str(uuid.UUID(value))
    except ValueError:
        canonical = ""
    if canonical != value.lower():
        violations.add("conversation_id", f"{shown(value)} is not a conversation id")
    return canonical


REFERENCE_YEARS = (1900, 9000)
"""The years a reference time of Interpret may fall in: dates a year or more ahead are resolved from it in every
zone, so it must stay well inside 1..9999."""


def check_reference_time(reference: datetime, violations: Violations) -> None:
    """Interpret's "now" must leave room for the dates resolved from it."""
    if not REFERENCE_YEARS[0] <= reference.year <= REFERENCE_YEARS[1]:
        violations.add("reference_time", f"must be between the years {REFERENCE_YEARS[0]} and {REFERENCE_YEARS[1]}")


_SECRET = re.compile(r"whsec_[A-Za-z0-9+/=_-]+")


def without_secrets(text: str) -> str:
    """The text with every webhook signing secret in it hidden: it is stored and published on audit-events."""
    return _SECRET.sub("whsec_[hidden]", text)


def intent_without_secrets(intent: chat_pb2.Intent) -> chat_pb2.Intent:
    """A copy of intent without the webhook signing secret a channel change may carry (write-only, never shown)."""
    shown_intent = chat_pb2.Intent()
    shown_intent.CopyFrom(intent)
    if shown_intent.channels_request.settings.webhook.signing_secret:
        shown_intent.channels_request.settings.webhook.signing_secret = "[hidden]"
    return shown_intent


def task_request_id(client_request_id: str, message_id: str) -> str:
    """The CreateTask request id of a chat message: the same for every retry of one client_request_id.

    Hashed, so a 128-character chat id still gives a task request id within the task service's limit.
    """
    if client_request_id:
        return "chat:" + hashlib.sha256(client_request_id.encode()).hexdigest()[:40]
    return "chat-message:" + message_id


# --- the conversation's memory -----------------------------------------------


class QuestionKind(enum.Enum):
    """What the assistant asked and waits for."""

    CHOICE = "choice"  # which of the numbered tasks
    CONFIRM = "confirm"  # yes or no to a command on every task


@dataclass
class PendingQuestion:
    """A question the next message may answer: the command it is about and the tasks it offered."""

    kind: QuestionKind
    intent: chat_pb2.Intent
    task_ids: list[str]

    def to_json(self) -> dict[str, Any]:
        """As stored with the conversation."""
        return {
            "kind": self.kind.value,
            "intent": base64.b64encode(self.intent.SerializeToString()).decode(),
            "task_ids": list(self.task_ids),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> PendingQuestion | None:
        """The stored question, or None (also for one stored in a shape this version does not know)."""
        if not data:
            return None
        try:
            kind = QuestionKind(data["kind"])
            intent = chat_pb2.Intent.FromString(base64.b64decode(data["intent"], validate=True))
            task_ids = [str(t) for t in data["task_ids"]]
        except (KeyError, ValueError, TypeError, DecodeError):
            return None
        return cls(kind, intent, task_ids) if task_ids else None


@dataclass
class Memory:
    """What a conversation keeps between messages."""

    pending: PendingQuestion | None = None
    last_task_ids: list[str] = field(default_factory=list)

    def remember(self, task_ids: Sequence[str]) -> None:
        """The tasks just listed or acted on become the ones "it" and "the second one" refer to."""
        if task_ids:
            self.last_task_ids = list(task_ids)[:LAST_TASKS_MAX]


# --- references and answers -------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """What "it" or "the second one" points at: one task, several to choose from, or nothing."""

    task_id: str = ""
    choose_from: tuple[str, ...] = ()
    out_of_range: bool = False


def resolve_reference(intent: chat_pb2.Intent, last_task_ids: Sequence[str]) -> Reference:
    """The conversation's last task(s) an intent refers to.

    A choice n picks the n-th of the last list; without one, "it" is the last
    task when there was exactly one, and a question among them when there were several.
    """
    if intent.choice > 0:
        if intent.choice <= len(last_task_ids):
            return Reference(task_id=last_task_ids[intent.choice - 1])
        return Reference(out_of_range=True)
    if len(last_task_ids) == 1:
        return Reference(task_id=last_task_ids[0])
    return Reference(choose_from=tuple(last_task_ids[:CHOICES_SHOWN]))


_NUMBER_ALONE = re.compile(r"^\s*(?:no\.?|number|#)?\s*(\d{1,3})\s*[.)!]?\s*$", re.IGNORECASE)


def number_alone(text: str) -> int | None:
    """The number of a message that is only a number ("2", "#2", "2."), else None."""
    match = _NUMBER_ALONE.match(text)
    return int(match.group(1)) if match else None


class AnswerOutcome(enum.Enum):
    """How a message stands to the pending question."""

    PICKED = "picked"  # a valid choice
    CONFIRMED = "confirmed"  # yes
    DECLINED = "declined"  # no (or an answer that is not yes to a confirmation)
    INVALID = "invalid"  # an answer, but not one of the choices: ask again
    NEW_COMMAND = "new_command"  # not an answer: the question is dropped and the message handled on its own


@dataclass(frozen=True)
class Answer:
    """The outcome, and for PICKED the chosen task."""

    outcome: AnswerOutcome
    task_id: str = ""


def read_answer(intent: chat_pb2.Intent, text: str, pending: PendingQuestion) -> Answer:
    """What a message answers to the pending question."""
    is_answer = intent.kind == chat_pb2.INTENT_KIND_ANSWER
    if pending.kind is QuestionKind.CONFIRM:
        if is_answer and intent.confirmation == chat_pb2.CONFIRMATION_YES:
            return Answer(AnswerOutcome.CONFIRMED)
        if is_answer or intent.kind == chat_pb2.INTENT_KIND_UNSPECIFIED:
            return Answer(AnswerOutcome.DECLINED)
        return Answer(AnswerOutcome.NEW_COMMAND)
    choice: int | None = intent.choice if is_answer else None
    if choice is None:
        choice = number_alone(text)
        if choice is None:
            return Answer(AnswerOutcome.NEW_COMMAND)
    if is_answer and intent.confirmation == chat_pb2.CONFIRMATION_NO:
        return Answer(AnswerOutcome.DECLINED)
    if 1 <= choice <= len(pending.task_ids):
        return Answer(AnswerOutcome.PICKED, pending.task_ids[choice - 1])
    return Answer(AnswerOutcome.INVALID)


# --- searching and changing tasks -----------------------------------------------


def search_statuses(kind: Kind.ValueType) -> list[list[task_pb2.TaskStatus.ValueType]]:
    """The statuses to search, in turn, for the task a command names.

    Completing looks at open tasks, reopening at completed ones; the others
    look at open tasks first and at completed ones when no open task matches.
    """
    if kind == chat_pb2.INTENT_KIND_COMPLETE_TASK:
        return [[OPEN]]
    if kind == chat_pb2.INTENT_KIND_REOPEN_TASK:
        return [[COMPLETED]]
    return [[OPEN], [COMPLETED]]


def search_request(query: str, statuses: Sequence[int], page_size: int) -> task_service_pb2.ListTasksRequest:
    """ListTasks for the tasks matching the words of a command, best match first."""
    return task_service_pb2.ListTasksRequest(
        query=query,
        statuses=list(statuses),  # type: ignore[arg-type]
        order_by=task_service_pb2.TASK_ORDER_BY_RELEVANCE,
        page_size=page_size,
    )


def all_tasks_request(intent: chat_pb2.Intent) -> task_service_pb2.ListTasksRequest:
    """The open tasks an "all" command applies to (narrowed by the listing or the words it gives)."""
    request = task_service_pb2.ListTasksRequest()
    if intent.HasField("list_request"):
        request.CopyFrom(intent.list_request)
    elif intent.target_query:
        request.query = intent.target_query
    del request.statuses[:]
    request.statuses.append(OPEN)
    request.order_by = task_service_pb2.TASK_ORDER_BY_DUE_TIME
    request.page_size = ALL_TASKS_MAX
    request.page_token = ""
    return request


def listing_request(intent: chat_pb2.Intent) -> task_service_pb2.ListTasksRequest:
    """The listing a LIST intent asks for, one page of LIST_PAGE_SIZE."""
    request = task_service_pb2.ListTasksRequest()
    if intent.HasField("list_request"):
        request.CopyFrom(intent.list_request)
    if intent.query and not request.query:
        request.query = intent.query
    request.page_size = LIST_PAGE_SIZE
    request.page_token = ""
    return request


def update_request(intent: chat_pb2.Intent, current: task_pb2.Task) -> task_service_pb2.UpdateTaskRequest:
    """UpdateTask for an UPDATE intent on the resolved task.

    changed_fields are update_mask paths; "<field>+" adds to a repeated field
    ("tags+": the current tags plus the new ones) instead of replacing it.
    expected_version is the resolved task's, so a change made meanwhile is not overwritten.
    """
    patch = task_pb2.Task()
    patch.CopyFrom(intent.task)
    patch.task_id = current.task_id
    paths: list[str] = []
    for raw in intent.changed_fields:
        path = raw.strip()
        if path.endswith("+"):
            path = path[:-1]
            descriptor = task_pb2.Task.DESCRIPTOR.fields_by_name.get(path)
            if descriptor is not None and descriptor.is_repeated:
                added = list(getattr(patch, path))
                merged = list(getattr(current, path))
                for item in added:
                    if item not in merged:
                        merged.append(item)
                patch.ClearField(path)  # type: ignore[arg-type]
                getattr(patch, path).extend(merged)
        if path and path not in paths:
            paths.append(path)
    request = task_service_pb2.UpdateTaskRequest(task=patch, expected_version=current.version)
    request.update_mask.paths.extend(paths)
    return request


def newest_fired(reminders: Sequence[reminder_pb2.Reminder]) -> reminder_pb2.Reminder | None:
    """The reminder that fired last, if any fired."""
    fired = [r for r in reminders if r.state == reminder_pb2.REMINDER_STATE_FIRED]
    if not fired:
        return None
    return max(fired, key=lambda r: (_seconds(r.fired_time), _seconds(r.fire_time), r.reminder_id))


def _seconds(stamp: timestamp_pb2.Timestamp) -> tuple[int, int]:
    return stamp.seconds, stamp.nanos
