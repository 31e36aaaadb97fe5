"""The topic registry: which event types travel on which topic.

Publishers look up the topic of the event they publish, subscribers the event
types they can receive, so both sides read the same table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf.message import Message

from todo_contracts.chat.v1 import events_pb2 as chat_events
from todo_contracts.notify.v1 import events_pb2 as notify_events
from todo_contracts.reminder.v1 import events_pb2 as reminder_events
from todo_contracts.task.v1 import events_pb2 as task_events

DEAD_LETTER_SUFFIX = "-dlq"
DEFAULT_PARTITIONS = 6
"""Partitions of a topic on Kafka: the most consumers of one group that share its work (two cores, two replicas)."""


@dataclass(frozen=True)
class Topic:
    """A pub/sub topic and the event message types published on it."""

    name: str
    event_types: tuple[type[Message], ...]
    # Kafka partitions, for the topic and its dead-letter topic; a key (user) always lands on the same one.
    partitions: int = DEFAULT_PARTITIONS

    @property
    def dead_letter(self) -> str:
        """The topic where events this topic's subscribers cannot handle go."""
        return self.name + DEAD_LETTER_SUFFIX

    @property
    def type_names(self) -> frozenset[str]:
        """Full protobuf names of the event types, as in CloudEvent `type`."""
        return frozenset(event_type_name(t) for t in self.event_types)


TASK_EVENTS = Topic(
    "task-events",
    (
        task_events.TaskCreated,
        task_events.TaskUpdated,
        task_events.TaskCompleted,
        task_events.TaskReopened,
        task_events.TaskDeleted,
        task_events.OccurrenceRequested,
    ),
)
REMINDER_EVENTS = Topic(
    "reminder-events",
    (reminder_events.ReminderScheduled, reminder_events.ReminderDue, reminder_events.ReminderCancelled),
)
NOTIFICATION_EVENTS = Topic(
    "notification-events",
    (notify_events.NotificationSent, notify_events.NotificationFailed),
)
AUDIT_EVENTS = Topic("audit-events", (chat_events.ChatMessageHandled,))

ALL_TOPICS: tuple[Topic, ...] = (TASK_EVENTS, REMINDER_EVENTS, NOTIFICATION_EVENTS, AUDIT_EVENTS)


def event_type_name(event_type: type[Message] | Message) -> str:
    """The full protobuf name of an event type, e.g. "todo.task.v1.TaskCreated"."""
    return event_type.DESCRIPTOR.full_name


def _index(topics: Iterable[Topic]) -> tuple[dict[str, type[Message]], dict[str, Topic]]:
    classes: dict[str, type[Message]] = {}
    topic_of: dict[str, Topic] = {}
    for topic in topics:
        for cls in topic.event_types:
            name = event_type_name(cls)
            if name in classes:
                raise RuntimeError(f"{name} is registered on two topics")
            classes[name] = cls
            topic_of[name] = topic
    return classes, topic_of


_CLASSES, _TOPIC_OF = _index(ALL_TOPICS)


def event_types() -> dict[str, type[Message]]:
    """Every registered event type, by full protobuf name."""
    return dict(_CLASSES)


def event_class(type_name: str) -> type[Message] | None:
    """The message class of a registered event type name, or None if unknown."""
    return _CLASSES.get(type_name)


def topic_of(event: type[Message] | Message | str) -> Topic:
    """The topic an event (message, class or full type name) is published on.

    Raises KeyError for a message that is not a registered event.
    """
    name = event if isinstance(event, str) else event_type_name(event)
    try:
        return _TOPIC_OF[name]
    except KeyError:
        raise KeyError(f"{name} is not a registered event type") from None


def topic_named(name: str) -> Topic:
    """The topic with this name; raises KeyError for an unknown name."""
    for topic in ALL_TOPICS:
        if topic.name == name:
            return topic
    raise KeyError(f"no topic named {name!r}")
