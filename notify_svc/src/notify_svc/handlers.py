"""NotificationService over gRPC, the ReminderDue handler that creates notifications, and the delivery jobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from notify_svc import domain
from notify_svc.domain import EMAIL, FAILED, IN_APP, PENDING, PUSH_CHANNELS, SENT, WEBHOOK, Channel, Step
from notify_svc.senders import EMAIL_UNAVAILABLE, WEBHOOK_UNAVAILABLE, Channels, DeliveryOutcome
from notify_svc.settings import NotifySettings
from notify_svc.storage import NotificationRepository
from todo_contracts import ids
from todo_contracts.envelope import DecodedEvent
from todo_contracts.notify.v1 import events_pb2, notify_pb2, notify_pb2_grpc
from todo_contracts.reminder.v1 import events_pb2 as reminder_events
from todo_kit import paging
from todo_kit.auth import USER_ID_PATTERN, current_user
from todo_kit.db import Database
from todo_kit.errors import FailedPrecondition, InvalidArgument, NotFound, Violations, shown
from todo_kit.livefeed import LiveFeed, Quiet, follow
from todo_kit.messaging import Outbox, claim_event
from todo_kit.runtime.port import DropEvent, JobExists, JobOptions, Runtime
from todo_kit.server import ServicerContext
from todo_kit.zoned import now_utc

log = logging.getLogger(__name__)

APP_ID = "notify_svc"
REMINDER_ID_MAX = 512
TASK_ID_MAX = 64
SWEEP_GRACE = timedelta(seconds=30)
"""A delivery whose job should have been scheduled this long ago and is not marked done gets it again."""
SWEEP_INTERVAL_SECONDS = 30.0
SWEEP_BATCH = 500
Context = ServicerContext


def _core(notification: notify_pb2.Notification) -> notify_pb2.Notification:
    """The notification without its delivery details, as events carry it."""
    core = notify_pb2.Notification()
    core.CopyFrom(notification)
    core.ClearField("deliveries")
    return core


def _notification_id(value: str, field: str) -> str:
    """A notification id in its canonical form; InvalidArgument naming field otherwise."""
    try:
        canonical = str(uuid.UUID(value))
    except ValueError:
        canonical = ""
    # Only the canonical form: uuid.UUID also takes "{...}" and "urn:uuid:...".
    if not canonical or canonical != value.lower():
        raise InvalidArgument([(field, f"{shown(value)} is not a notification id")])
    return canonical


class DeliveryJobs:
    """The webhook/ and email/ jobs: one attempt per firing, retried with the endpoint's backoff.

    A job finds its delivery in the database and decides there (domain.decide_delivery):
    it tolerates being fired twice, late, or after its delivery ended. Jobs of
    new deliveries are scheduled after the commit that created them; one that
    a crash kept from being scheduled is found by sweep().
    """

    def __init__(
        self, db: Database, outbox: Outbox, runtime: Runtime, settings: NotifySettings, channels: Channels,
        *, jitter: Callable[[], float] = random.random,
    ) -> None:  # fmt: skip
        self.db = db
        self.outbox = outbox
        self.runtime = runtime
        self.settings = settings
        self.channels = channels
        self.jitter = jitter

    async def webhook(self, name: str, data: bytes) -> None:
        """Job handler of webhook/<notification id>."""
        await self._deliver(WEBHOOK, name, data)

    async def email(self, name: str, data: bytes) -> None:
        """Job handler of email/<notification id>."""
        await self._deliver(EMAIL, name, data)

    async def schedule(self, jobs: Sequence[tuple[str, int, datetime]], *, overwrite: bool) -> None:
        """Schedules the jobs of (notification id, channel, when) and records that they exist."""
        if not jobs:
            return
        for notification_id, channel, at in jobs:
            # JobExists: scheduled already (by the sweep, or before a crash).
            with contextlib.suppress(JobExists):
                await self.runtime.schedule_job(
                    domain.job_name(channel, notification_id), at, notification_id.encode(),
                    JobOptions(overwrite=overwrite),
                )  # fmt: skip
        async with self.db.transaction() as conn:
            await NotificationRepository(conn).job_scheduled([(n, c) for n, c, _ in jobs])

    async def sweep(self) -> int:
        """Schedules the jobs of pending deliveries that may have none (a crash between commit and scheduling)."""
        async with self.db.engine.connect() as conn:
            found = await NotificationRepository(conn).without_job(now_utc() - SWEEP_GRACE, SWEEP_BATCH)
        now = now_utc()
        await self.schedule([(n, c, at or now) for n, c, at in found], overwrite=False)
        if found:
            log.info("delivery jobs scheduled again", extra={"deliveries": len(found)})
        return len(found)

    async def sweep_periodically(self) -> None:
        """Background work: sweep() at start and every SWEEP_INTERVAL_SECONDS."""
        while True:
            while await self.sweep() == SWEEP_BATCH:
                pass
            await asyncio.sleep(SWEEP_INTERVAL_SECONDS)

    def _sender_problem(self, channel: Channel) -> str | None:
        if channel == WEBHOOK and self.channels.webhook is None:
            return WEBHOOK_UNAVAILABLE
        if channel == EMAIL and self.channels.email is None:
            return EMAIL_UNAVAILABLE
        return None

    def _lease(self, channel: Channel) -> timedelta:
        timeout = self.settings.webhook_timeout_seconds if channel == WEBHOOK else self.settings.smtp_timeout_seconds
        return timedelta(seconds=timeout) + domain.ATTEMPT_MARGIN

    async def _deliver(self, channel: Channel, name: str, data: bytes) -> None:
        try:
            notification_id = _notification_id(data.decode("utf-8", errors="replace"), "data")
        except InvalidArgument:
            log.warning("delivery job of no notification ignored", extra={"job": name})
            return
        now = now_utc()
        async with self.db.transaction() as conn:
            repo = NotificationRepository(conn)
            delivery = await repo.delivery(notification_id, channel)
            if delivery is None:
                return  # a job of a delivery that is gone
            user = await repo.channels(delivery.user_id)
            endpoint = await repo.endpoint(delivery.user_id, channel) if delivery.state == PENDING else None
            decision = domain.decide_delivery(
                state=delivery.state,
                now=now,
                retry_until=delivery.retry_until,
                attempt_lease_until=delivery.attempt_lease_until,
                channel_problem=self._sender_problem(channel) or user.channel_problem(channel),
                quiet_end=domain.quiet_until(user, now),
                endpoint=endpoint,
            )
            if decision.step is Step.SKIP:
                return
            if decision.step is Step.WAIT:
                assert decision.at is not None
                await repo.set_delivery(notification_id, channel, next_attempt_time=decision.at)
            elif decision.step is Step.GIVE_UP:
                await repo.set_delivery(
                    notification_id, channel, state=FAILED, last_error=decision.reason, update_time=now,
                    next_attempt_time=None, attempt_lease_until=None, needs_job=False,
                )  # fmt: skip
                gone = await repo.get(notification_id)
                assert gone is not None  # a delivery goes only with its notification
                await self._failed_event(conn, gone, channel, delivery.attempts, decision.reason, False)
            else:
                lease = now + self._lease(channel)
                await repo.set_delivery(notification_id, channel, attempt_lease_until=lease)
                if endpoint is not None:
                    # This delivery probes the failing endpoint; the others wait for its result.
                    await repo.save_endpoint(delivery.user_id, channel, replace(endpoint, probing_until=lease))
                found = await repo.get(notification_id)
                assert found is not None  # a delivery goes only with its notification
                notification = found
        if decision.step is Step.WAIT:
            assert decision.at is not None
            await self.runtime.schedule_job(name, decision.at, data)
            return
        if decision.step is Step.GIVE_UP:
            log.warning(
                "delivery failed",
                extra={"notification_id": notification_id, "channel": domain.CHANNEL_NAMES[channel],
                       "attempts": delivery.attempts, "reason": decision.reason},
            )  # fmt: skip
            return
        result = await self._send(channel, notification, user)
        await self._record(channel, name, data, notification, result)

    async def _send(
        self, channel: Channel, notification: notify_pb2.Notification, user: domain.UserChannels
    ) -> DeliveryOutcome | _Crashed:
        message_id = domain.message_id(notification.notification_id, channel)
        try:
            if channel == WEBHOOK:
                assert self.channels.webhook is not None
                return await self.channels.webhook.send(
                    user.webhook_url, user.webhook_secret, message_id, domain.webhook_body(_core(notification))
                )
            assert self.channels.email is not None
            return await self.channels.email.send(
                user.email_address, notification.title, domain.email_text(notification), message_id
            )
        except Exception:
            # A sender answers every failure with a result; this is a defect, recorded as a failed attempt.
            log.exception("a sender failed unexpectedly", extra={"channel": domain.CHANNEL_NAMES[channel]})
            return _Crashed()

    async def _record(
        self, channel: Channel, name: str, data: bytes, notification: notify_pb2.Notification,
        result: DeliveryOutcome | _Crashed,
    ) -> None:  # fmt: skip
        notification_id = notification.notification_id
        now = now_utc()
        retry_at: datetime | None = None
        woken: list[str] = []
        async with self.db.transaction() as conn:
            repo = NotificationRepository(conn)
            delivery = await repo.delivery(notification_id, channel)
            if delivery is None:
                return
            attempt = delivery.attempts + 1
            await repo.add_attempt(
                notification_id, channel, attempt, now, succeeded=result.succeeded, error=result.error,
                response_code=result.response_code,
            )  # fmt: skip
            changes: dict[str, object] = {"attempts": attempt, "attempt_lease_until": None}
            if delivery.state != PENDING:
                await repo.set_delivery(notification_id, channel, **changes)  # another attempt ended it meanwhile
                return
            endpoint = await repo.endpoint(delivery.user_id, channel)
            if result.succeeded:
                await repo.set_delivery(
                    notification_id, channel, **changes, state=SENT, last_error="", update_time=now,
                    next_attempt_time=None, needs_job=False,
                )  # fmt: skip
                if endpoint is not None:
                    await repo.forget_endpoint(delivery.user_id, channel)
                    # The endpoint works again: what waited for it goes now, not at the end of its pause.
                    woken = await repo.wake_waiting(delivery.user_id, channel, now)
                await self.outbox.add_event(
                    conn,
                    events_pb2.NotificationSent(
                        user_id=delivery.user_id, notification=_core(notification), channel=channel, attempt=attempt
                    ),
                    subject=notification.task_id,
                )
            else:
                after = domain.after_failure(
                    now=now,
                    error=result.error,
                    permanent=result.permanent,
                    retry_after=result.retry_after,
                    endpoint=endpoint,
                    retry_until=delivery.retry_until,
                    max_delay=float(self.settings.retry_max_delay_seconds),
                    jitter=self.jitter(),
                )
                await repo.save_endpoint(delivery.user_id, channel, after.endpoint)
                retry_at = after.next_attempt
                if retry_at is None:
                    changes.update(state=FAILED, update_time=now, next_attempt_time=None, needs_job=False)
                else:
                    changes.update(next_attempt_time=retry_at)
                await repo.set_delivery(notification_id, channel, **changes, last_error=result.error)
                await self._failed_event(conn, notification, channel, attempt, result.error, retry_at is not None)
        extra = {"notification_id": notification_id, "channel": domain.CHANNEL_NAMES[channel], "attempt": attempt,
                 "response_code": result.response_code}  # fmt: skip
        if result.succeeded:
            log.info("notification delivered", extra=extra)
        else:
            log.warning("delivery attempt failed", extra={**extra, "error": result.error, "will_retry": bool(retry_at)})
        if retry_at is not None:
            await self.runtime.schedule_job(name, retry_at, data)
        if woken:
            await self.schedule([(n, channel, now) for n in woken], overwrite=True)

    async def _failed_event(
        self, conn: AsyncConnection, notification: notify_pb2.Notification, channel: Channel, attempt: int, error: str,
        will_retry: bool,
    ) -> None:  # fmt: skip
        event = events_pb2.NotificationFailed(
            user_id=notification.user_id, notification=_core(notification), channel=channel, attempt=attempt,
            error=error, will_retry=will_retry,
        )  # fmt: skip
        await self.outbox.add_event(conn, event, subject=notification.task_id)


class _Crashed:
    """The outcome of a sender that raised instead of answering."""

    succeeded = False
    error = "the sender failed unexpectedly"
    response_code = 0
    permanent = False
    retry_after: float | None = None


def reminder_due_problem(message: reminder_events.ReminderDue) -> str | None:
    """What makes a ReminderDue impossible to turn into a notification, if anything."""
    reminder = message.reminder
    if not USER_ID_PATTERN.match(message.user_id):
        return "no valid user_id"
    if reminder.user_id and reminder.user_id != message.user_id:
        return "the reminder belongs to another user than the event"
    if not reminder.reminder_id or len(reminder.reminder_id) > REMINDER_ID_MAX:
        return "no valid reminder id"
    if len(reminder.task_id) > TASK_ID_MAX:
        return "the task id is too long"
    return None


class NotificationCreator:
    """Turns each ReminderDue into one notification, stored, streamed and pushed through the user's channels."""

    def __init__(
        self, db: Database, outbox: Outbox, settings: NotifySettings, channels: Channels, jobs: DeliveryJobs
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.settings = settings
        self.channels = channels
        self.jobs = jobs

    async def __call__(self, event: DecodedEvent) -> None:
        message = event.message
        if not isinstance(message, reminder_events.ReminderDue):
            return
        problem = reminder_due_problem(message)
        if problem is not None:
            raise DropEvent(problem)
        user_id, reminder = message.user_id, message.reminder
        now = now_utc()
        pushed: list[tuple[str, int, datetime]] = []
        async with self.db.transaction() as conn:
            if not await claim_event(conn, APP_ID, event.id):
                return
            repo = NotificationRepository(conn)
            # One notification per firing, whatever event carried it.
            if await repo.has_reminder_notification(user_id, reminder.reminder_id):
                return
            user = await repo.channels(user_id)
            text = domain.reminder_text(reminder, user)
            notification = notify_pb2.Notification(
                notification_id=str(ids.uuid7()),
                user_id=user_id,
                title=text.title,
                body=text.body,
                task_id=reminder.task_id,
                reminder_id=reminder.reminder_id,
                late=reminder.late,
            )
            notification.create_time.FromDatetime(now)
            channels = domain.push_channels(
                user,
                webhook_available=self.channels.webhook is not None,
                email_available=self.channels.email is not None,
            )
            # Pushed now, or when the user's quiet hours end.
            due = domain.quiet_until(user, now) or now
            # The user's counter last: it is held until commit.
            seq = await repo.next_seq(user_id)
            if not await repo.add_notification(notification, seq):
                return  # the same firing, created by a concurrent delivery of the event
            nid = notification.notification_id
            await repo.add_delivery(nid, user_id, IN_APP, state=SENT, now=now, next_attempt=None, retry_until=now,
                                    attempts=1)  # fmt: skip
            await repo.add_attempt(nid, IN_APP, 1, now, succeeded=True, error="", response_code=0)
            for channel in channels:
                await repo.add_delivery(nid, user_id, channel, state=PENDING, now=now, next_attempt=due,
                                        retry_until=due + self.settings.retry_for)  # fmt: skip
                pushed.append((nid, channel, due))
            await self.outbox.add_event(
                conn,
                events_pb2.NotificationSent(user_id=user_id, notification=notification, channel=IN_APP, attempt=1),
                subject=reminder.task_id,
            )
            await repo.announce(user_id, seq)
        log.info(
            "notification created",
            extra={"notification_id": notification.notification_id, "user_id": user_id,
                   "reminder_id": reminder.reminder_id, "push": [domain.CHANNEL_NAMES[c] for c in channels]},
        )  # fmt: skip
        await self.jobs.schedule(pushed, overwrite=False)


class NotificationServicer(notify_pb2_grpc.NotificationServiceServicer):
    """Lists, marks and streams the authenticated user's notifications; keeps the user's channel settings."""

    def __init__(
        self, db: Database, settings: NotifySettings, channels: Channels, feed: LiveFeed,
        page_tokens: paging.PageTokens,
    ) -> None:  # fmt: skip
        self.db = db
        self.settings = settings
        self.channels = channels
        self.feed = feed
        self.page_tokens = page_tokens
        self.checks = domain.SettingsChecks(
            channels.webhook_url_problem, channels.signing_secret_problem, channels.email_address_problem
        )

    async def ListNotifications(
        self, request: notify_pb2.ListNotificationsRequest, context: Context
    ) -> notify_pb2.ListNotificationsResponse:
        user = current_user()
        violations = Violations()
        if not 0 <= request.page_size <= domain.PAGE_SIZE_MAX:
            violations.add(
                "page_size", f"must be between 1 and {domain.PAGE_SIZE_MAX} (0 means {domain.PAGE_SIZE_DEFAULT})"
            )
        # Keyset pages: the next page starts strictly below the last number of this one.
        fingerprint = paging.query_fingerprint(request, user=user)
        before: int | None = None
        if request.page_token:
            try:
                (position,) = self.page_tokens.read(request.page_token, fingerprint, (paging.Part.INTEGER,))
            except ValueError as exc:
                violations.add("page_token", str(exc))
            else:
                assert isinstance(position, int)  # as the shape says
                before = position
        violations.raise_if_any()
        size = request.page_size or domain.PAGE_SIZE_DEFAULT
        async with self.db.engine.connect() as conn:
            repo = NotificationRepository(conn)
            found = await repo.page(user, unread_only=request.unread_only, before_seq=before, limit=size + 1)
            unread = await repo.unread_count(user)
        response = notify_pb2.ListNotificationsResponse(notifications=[n for _, n in found[:size]], unread_count=unread)
        if len(found) > size:
            response.next_page_token = self.page_tokens.issue(fingerprint, (found[size - 1][0],))
        return response

    async def MarkNotificationsRead(
        self, request: notify_pb2.MarkNotificationsReadRequest, context: Context
    ) -> notify_pb2.MarkNotificationsReadResponse:
        user = current_user()
        violations = Violations()
        wanted: dict[str, None] = {}
        if len(request.notification_ids) > domain.MARK_IDS_MAX:
            count = len(request.notification_ids)
            violations.add("notification_ids", f"at most {domain.MARK_IDS_MAX} ids, got {count}")
        elif request.all and request.notification_ids:
            violations.add("all", "set notification_ids or all, not both")
        else:
            for index, value in enumerate(request.notification_ids):
                try:
                    wanted[_notification_id(value, f"notification_ids[{index}]")] = None
                except InvalidArgument as exc:
                    violations.items.extend(exc.violations)
        violations.raise_if_any()
        async with self.db.transaction() as conn:
            # Ids of other users' notifications (or of none) match nothing: only the user's own change.
            marked = await NotificationRepository(conn).mark_read(
                user, None if request.all else list(wanted), now_utc()
            )
        return notify_pb2.MarkNotificationsReadResponse(marked_count=marked)

    async def StreamNotifications(
        self, request: notify_pb2.StreamNotificationsRequest, context: Context
    ) -> AsyncIterator[notify_pb2.StreamNotificationsResponse]:
        user = current_user()
        resume_after = _notification_id(request.resume_after, "resume_after") if request.resume_after else ""
        # Registered before anything is read: a notification committed after the read wakes it.
        subscriber = self.feed.subscribe(user)
        try:
            async with self.db.engine.connect() as conn:
                repo = NotificationRepository(conn)
                if resume_after:
                    seq = await repo.seq_of(user, resume_after)
                    if seq is None:
                        raise NotFound(f"notification {resume_after} not found")
                    last_id = resume_after
                else:
                    seq, last_id = await repo.newest(user)
            subscriber.last_seq = seq
            yield self._heartbeat(last_id)

            async def read_after(after: int, limit: int) -> list[tuple[int, notify_pb2.Notification]]:
                async with self.db.engine.connect() as conn:
                    return await NotificationRepository(conn).after(user, after, limit)

            beats = self.settings.heartbeat_seconds
            async with contextlib.aclosing(
                follow(self.feed, subscriber, read_after, page=domain.REPLAY_PAGE, heartbeat_seconds=beats)
            ) as stream:
                async for item in stream:
                    if isinstance(item, Quiet):
                        yield self._heartbeat(last_id)
                    else:
                        yield notify_pb2.StreamNotificationsResponse(notification=item)
                        last_id = item.notification_id
        finally:
            self.feed.unsubscribe(subscriber)

    @staticmethod
    def _heartbeat(last_id: str) -> notify_pb2.StreamNotificationsResponse:
        heartbeat = notify_pb2.Heartbeat(last_notification_id=last_id)
        heartbeat.server_time.FromDatetime(now_utc())
        return notify_pb2.StreamNotificationsResponse(heartbeat=heartbeat)

    async def GetChannelSettings(
        self, request: notify_pb2.GetChannelSettingsRequest, context: Context
    ) -> notify_pb2.GetChannelSettingsResponse:
        user = current_user()
        async with self.db.engine.connect() as conn:
            found = await NotificationRepository(conn).channels(user)
        return notify_pb2.GetChannelSettingsResponse(settings=found.to_proto())

    async def UpdateChannelSettings(
        self, request: notify_pb2.UpdateChannelSettingsRequest, context: Context
    ) -> notify_pb2.UpdateChannelSettingsResponse:
        user = current_user()
        if not request.HasField("settings"):
            raise InvalidArgument([("settings", "is required (with the new values of the fields in update_mask)")])
        paths = list(request.update_mask.paths)
        generated = ""
        async with self.db.transaction() as conn:
            repo = NotificationRepository(conn)
            current = await repo.channels(user, lock=True)
            updated = domain.updated_channels(current, request.settings, paths, self.checks)
            if domain.newly_on(current, updated, WEBHOOK) and self.channels.webhook is None:
                raise FailedPrecondition(WEBHOOK_UNAVAILABLE)
            if domain.newly_on(current, updated, EMAIL) and self.channels.email is None:
                raise FailedPrecondition(EMAIL_UNAVAILABLE)
            if domain.needs_signing_secret(updated):
                generated = self.channels.new_signing_secret()
                updated = replace(updated, webhook_secret=generated)
            await repo.save_channels(user, updated)
            for channel in PUSH_CHANNELS:
                if domain.endpoint_changed(current, updated, channel):
                    await repo.forget_endpoint(user, channel)  # a new endpoint starts without the old one's failures
        # The paths only: values (a URL, an address, a secret) stay out of logs.
        log.info("channel settings changed", extra={"user_id": user, "paths": sorted(set(paths))})
        return notify_pb2.UpdateChannelSettingsResponse(settings=updated.to_proto(), generated_signing_secret=generated)
