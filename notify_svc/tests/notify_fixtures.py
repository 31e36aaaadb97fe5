"""A running host with the notification unit (scripted senders handed in through its constructor), and helpers."""

from __future__ import annotations

import asyncio
import base64
import secrets
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc
from google.protobuf import field_mask_pb2

from notify_svc.senders import Channels
from notify_svc.settings import NotifySettings
from notify_svc.unit import build_unit
from todo_contracts import envelope, topics
from todo_contracts.common.v1 import common_pb2
from todo_contracts.notify.v1 import notify_pb2, notify_pb2_grpc
from todo_contracts.reminder.v1 import events_pb2 as reminder_events
from todo_contracts.reminder.v1 import reminder_pb2
from todo_kit.config import Settings
from todo_kit.embedded_host import EmbeddedHost
from todo_kit.messaging import OutgoingEvent
from todo_kit.runtime.port import ServiceUnit
from todo_kit.testing import EventRecorder, bearer, eventually, running_host

__all__ = ["eventually"]


@dataclass(frozen=True)
class Answer:
    """What a scripted sender answers (the fields of notify_svc.channels.DeliveryResult)."""

    succeeded: bool
    error: str = ""
    response_code: int = 0
    permanent: bool = False
    retry_after: float | None = None


OK = Answer(True, response_code=200)
DOWN = Answer(False, error="connection refused")


@dataclass
class ScriptedSender:
    """A webhook or e-mail sender answering attempts from a script (its last answer repeats); it records calls."""

    answers: list[Answer] = field(default_factory=lambda: [OK])
    calls: list[dict[str, object]] = field(default_factory=list)
    by_target: dict[str, Answer] = field(default_factory=dict)  # a fixed answer for one URL or address

    def _answer(self, call: dict[str, object]) -> Answer:
        self.calls.append(call)
        target = str(call.get("url", call.get("to")))
        if target in self.by_target:
            return self.by_target[target]
        return self.answers[min(len(self.calls), len(self.answers)) - 1]

    async def send(self, *args: object) -> Answer:
        if len(args) == 4 and isinstance(args[3], bytes):
            url, secret, message_id, body = args
            return self._answer({"url": url, "secret": secret, "message_id": message_id, "body": body})
        to, subject, text, message_id = args
        return self._answer({"to": to, "subject": subject, "text": text, "message_id": message_id})

    async def close(self) -> None:
        return None


def url_problem(url: str) -> str | None:
    return None if url.startswith("https://") and " " not in url else "must be an https URL"


def secret_problem(secret: str) -> str | None:
    return None if secret.startswith("whsec_") and len(secret) >= 38 else "must be whsec_ and base64"


def address_problem(address: str) -> str | None:
    return None if address.count("@") == 1 and " " not in address else "is not an e-mail address"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def scripted_channels(webhook: ScriptedSender | None = None, email: ScriptedSender | None = None) -> Channels:
    return Channels(
        webhook=webhook if webhook is not None else ScriptedSender(),
        email=email,
        webhook_url_problem=url_problem,
        signing_secret_problem=secret_problem,
        new_signing_secret=new_secret,
        email_address_problem=address_problem,
    )


def notify_unit(settings: NotifySettings | None = None, channels: Channels | None = None) -> ServiceUnit:
    return build_unit(
        settings=settings or NotifySettings(retry_max_delay_seconds=1, max_streams_per_user=3),
        channels=channels or scripted_channels(),
    )


@dataclass
class Notify:
    """Stubs and tokens for the notification service on a running host."""

    host: EmbeddedHost
    stub: notify_pb2_grpc.NotificationServiceStub
    settings: Settings
    recorder: EventRecorder
    alice: list[tuple[str, str]]
    bob: list[tuple[str, str]]

    def token(self, user: str) -> list[tuple[str, str]]:
        return bearer(self.settings, user)

    async def due(self, user: str = "alice", **fields: object) -> reminder_pb2.Reminder:
        """Publishes a ReminderDue on reminder-events, as the reminder service does; returns its reminder."""
        reminder = reminder_pb2.Reminder(
            reminder_id=str(fields.pop("reminder_id", f"{uuid.uuid4()}/rule-1/1")),
            user_id=user,
            task_id=str(fields.pop("task_id", uuid.uuid4())),
            task_title=str(fields.pop("task_title", "Pay rent")),
            state=reminder_pb2.REMINDER_STATE_FIRED,
            **fields,  # type: ignore[arg-type]
        )
        if not reminder.HasField("fire_time"):
            reminder.fire_time.FromDatetime(datetime.now(UTC))
        await self.publish(reminder_events.ReminderDue(user_id=user, reminder=reminder), reminder.task_id)
        return reminder

    async def publish(self, event: reminder_events.ReminderDue, subject: str) -> str:
        ce = envelope.wrap(event, source="/todo/reminder_svc", subject=subject)
        outgoing = OutgoingEvent(
            ce.id, topics.REMINDER_EVENTS.name, event.user_id, ce.type, ce.SerializeToString(deterministic=True)
        )
        assert self.host.runtime is not None
        await self.host.runtime.for_unit("reminder_svc").publish([outgoing])
        return ce.id

    async def listed(self, user: str = "alice", **fields: object) -> notify_pb2.ListNotificationsResponse:
        request = notify_pb2.ListNotificationsRequest(**fields)  # type: ignore[arg-type]
        response: notify_pb2.ListNotificationsResponse = await self.stub.ListNotifications(
            request, metadata=self.token(user)
        )
        return response

    async def notifications(self, user: str = "alice", count: int = 1) -> list[notify_pb2.Notification]:
        """The user's notifications, newest first, once there are at least count."""

        async def enough() -> list[notify_pb2.Notification]:
            found = list((await self.listed(user, page_size=1000)).notifications)
            return found if len(found) >= count else []

        return list(await eventually(enough))

    async def set_channels(self, user: str, settings: notify_pb2.ChannelSettings, paths: Sequence[str]) -> str:
        response = await self.stub.UpdateChannelSettings(
            notify_pb2.UpdateChannelSettingsRequest(
                settings=settings, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
            ),
            metadata=self.token(user),
        )
        return str(response.generated_signing_secret)

    async def enable_webhook(self, user: str = "alice", url: str = "https://hooks.test/in") -> str:
        return await self.set_channels(
            user,
            notify_pb2.ChannelSettings(webhook=notify_pb2.WebhookSettings(enabled=True, url=url)),
            ["webhook.enabled", "webhook.url"],
        )

    async def delivery(self, user: str, reminder_id: str, channel: int) -> notify_pb2.Delivery | None:
        """The delivery of the user's notification of a reminder through a channel, if there is one yet."""
        for notification in (await self.listed(user, page_size=1000)).notifications:
            if notification.reminder_id == reminder_id:
                for delivery in notification.deliveries:
                    if delivery.channel == channel:
                        return delivery
        return None

    async def delivery_in(self, user: str, reminder_id: str, channel: int, state: int) -> notify_pb2.Delivery:
        """That delivery once it is in state."""

        async def reached() -> notify_pb2.Delivery | None:
            found = await self.delivery(user, reminder_id, channel)
            return found if found is not None and found.state == state else None

        delivery: notify_pb2.Delivery = await eventually(reached, timeout=30)
        return delivery


class Stream:
    """An open StreamNotifications call and its messages as they arrive."""

    def __init__(self, call: grpc.aio.UnaryStreamCall) -> None:
        self.call = call

    async def next(self, timeout: float = 15.0) -> notify_pb2.StreamNotificationsResponse:
        async with asyncio.timeout(timeout):
            message = await self.call.read()
        assert message is not grpc.aio.EOF, "the stream ended"
        assert isinstance(message, notify_pb2.StreamNotificationsResponse)
        return message

    async def next_notification(self, timeout: float = 15.0) -> notify_pb2.Notification:
        """The next notification, passing over heartbeats."""
        while True:
            message = await self.next(timeout)
            if message.HasField("notification"):
                return message.notification

    def close(self) -> None:
        self.call.cancel()


def open_stream(notify: Notify, user: str = "alice", resume_after: str = "") -> Stream:
    return Stream(
        notify.stub.StreamNotifications(
            notify_pb2.StreamNotificationsRequest(resume_after=resume_after), metadata=notify.token(user)
        )
    )


@asynccontextmanager
async def running_notify(settings: Settings, unit: ServiceUnit | None = None) -> AsyncIterator[Notify]:
    recorder = EventRecorder([topics.NOTIFICATION_EVENTS.name])
    async with (
        running_host(settings, [unit or notify_unit()], recorder=recorder) as host,
        grpc.aio.insecure_channel(host.address) as channel,
    ):
        yield Notify(
            host,
            notify_pb2_grpc.NotificationServiceStub(channel),
            settings,
            recorder,
            bearer(settings, "alice"),
            bearer(settings, "bob"),
        )


def zoned(local: str, zone: str) -> common_pb2.ZonedDateTime:
    return common_pb2.ZonedDateTime(local_time=local, time_zone=zone)
