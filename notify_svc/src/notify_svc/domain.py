"""What the notification service decides, free of I/O.

What a reminder says and through which channels it goes; when a push delivery
may be attempted (quiet hours, a failing endpoint, the retry period); how long
to wait after a failure; which channel settings are valid; what a webhook body
holds.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import TypeAlias

from google.protobuf import json_format

from todo_contracts.notify.v1 import notify_pb2
from todo_contracts.reminder.v1 import reminder_pb2
from todo_kit import zoned
from todo_kit.errors import Violations, shown
from todo_kit.inputs import text_problem

Channel: TypeAlias = notify_pb2.Channel.ValueType
IN_APP = notify_pb2.CHANNEL_IN_APP
WEBHOOK = notify_pb2.CHANNEL_WEBHOOK
EMAIL = notify_pb2.CHANNEL_EMAIL
PUSH_CHANNELS = (WEBHOOK, EMAIL)
CHANNEL_NAMES: dict[int, str] = {IN_APP: "in-app", WEBHOOK: "webhook", EMAIL: "email"}
JOB_PREFIXES: dict[int, str] = {WEBHOOK: "webhook/", EMAIL: "email/"}
"""Delivery jobs are named "<prefix><notification id>": one per (notification, push channel)."""

PENDING = notify_pb2.DELIVERY_STATE_PENDING
SENT = notify_pb2.DELIVERY_STATE_SENT
FAILED = notify_pb2.DELIVERY_STATE_FAILED

PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 1000
MARK_IDS_MAX = 1000
REPLAY_PAGE = 500
"""A stream reads what it has not sent yet in pages of this many, so its memory stays bounded."""
RECENT_ATTEMPTS = 20
TITLE_MAX = 600

URL_MAX = 2048
ADDRESS_MAX = 320
SECRET_MAX = 200
FIRST_RETRY_DELAY = 1.0
"""Seconds before the first retry of a failing endpoint; each further failure doubles it, up to the maximum."""
RETRY_AFTER_CAP = 3600.0
"""A receiver's Retry-After is honoured up to an hour."""
ATTEMPT_MARGIN = timedelta(seconds=60)
"""An attempt in progress holds its delivery (and a failing endpoint's probe) for the sender's timeout plus this."""

_HH_MM = re.compile(r"\A([01]\d|2[0-3]):([0-5]\d)\Z")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def job_name(channel: int, notification_id: str) -> str:
    """The delivery job of a notification on a push channel."""
    return JOB_PREFIXES[channel] + notification_id


def message_id(notification_id: str, channel: int) -> str:
    """The id a receiver sees for one delivery (webhook-id, the e-mail's Message-ID): the same on every retry."""
    return f"{notification_id}-{CHANNEL_NAMES[channel]}"


# --- the user's channel settings ---------------------------------------------------


@dataclass(frozen=True)
class UserChannels:
    """A user's channel settings as stored (in-app is always on).

    The webhook signing secret is kept as given: it must be usable as the HMAC
    key, so it cannot be stored as a hash. It is never returned or logged.
    """

    webhook_enabled: bool = False
    webhook_url: str = ""
    webhook_secret: str = ""
    email_enabled: bool = False
    email_address: str = ""
    quiet_enabled: bool = False
    quiet_start: str = ""
    quiet_end: str = ""
    quiet_zone: str = ""

    def to_proto(self) -> notify_pb2.ChannelSettings:
        """As the API shows them: the secret only as signing_secret_set."""
        return notify_pb2.ChannelSettings(
            in_app_enabled=True,
            webhook=notify_pb2.WebhookSettings(
                enabled=self.webhook_enabled, url=self.webhook_url, signing_secret_set=bool(self.webhook_secret)
            ),
            email=notify_pb2.EmailSettings(enabled=self.email_enabled, address=self.email_address),
            quiet_hours=notify_pb2.QuietHours(
                enabled=self.quiet_enabled, start=self.quiet_start, end=self.quiet_end, time_zone=self.quiet_zone
            ),
        )

    def channel_problem(self, channel: int) -> str | None:
        """Why a push channel cannot deliver to this user now (turned off, no URL or address), or None."""
        if channel == WEBHOOK:
            if not self.webhook_enabled:
                return "webhook delivery was turned off"
            if not self.webhook_url or not self.webhook_secret:
                return "no webhook URL or signing secret is set"
        elif channel == EMAIL:
            if not self.email_enabled:
                return "e-mail delivery was turned off"
            if not self.email_address:
                return "no e-mail address is set"
        return None


DEFAULT_CHANNELS = UserChannels()


def push_channels(user: UserChannels, *, webhook_available: bool, email_available: bool) -> list[Channel]:
    """The push channels a new notification of this user goes through (in-app always does, besides)."""
    chosen: list[Channel] = []
    if webhook_available and user.channel_problem(WEBHOOK) is None:
        chosen.append(WEBHOOK)
    if email_available and user.channel_problem(EMAIL) is None:
        chosen.append(EMAIL)
    return chosen


# --- quiet hours ---------------------------------------------------------------------


def parse_hh_mm(text: str) -> time | None:
    """A "HH:MM" 24-hour time, or None if text is not one."""
    match = _HH_MM.match(text)
    return time(int(match.group(1)), int(match.group(2))) if match else None


def quiet_until(user: UserChannels, now: datetime) -> datetime | None:
    """The end of the user's quiet hours if now is within them, else None.

    The hours are wall-clock times in the user's zone, every day; an end
    earlier than the start is on the next day (22:00 to 07:00). On a day when
    the clocks change, a start or end the change skips moves forward by the
    gap, and one it repeats is its first occurrence (as due times are).
    """
    if not user.quiet_enabled:
        return None
    start, end = parse_hh_mm(user.quiet_start), parse_hh_mm(user.quiet_end)
    if start is None or end is None or start == end:
        return None
    try:
        today = now.astimezone(zoned.zone_named(user.quiet_zone)).date()
    except ValueError:
        return None
    # A period that began yesterday may still run (across midnight), or one that began today.
    for day in (today - timedelta(days=1), today):
        begin = _instant(day, start, user.quiet_zone)
        finish = _instant(day + timedelta(days=1) if end < start else day, end, user.quiet_zone)
        if begin <= now < finish:
            return finish
    return None


def _instant(day: date, at: time, zone: str) -> datetime:
    return zoned.resolve(datetime.combine(day, at), zone).instant


# --- what a reminder says ------------------------------------------------------------


def plain_time(local: datetime, zone: str) -> str:
    """A wall-clock time as people read it, e.g. "Tue 1 Dec 2026 09:00 (Europe/Paris)"."""
    return (
        f"{_DAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]} {local.year} "
        f"{local.hour:02d}:{local.minute:02d} ({zone})"
    )


def lateness_text(late_by: timedelta) -> str:
    """How late, roughly: "40 s", "3 min", "2 h 5 min", "1 d 3 h"."""
    seconds = max(0, int(late_by.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _one_line(text: str) -> str:
    """Line breaks and control characters as spaces: a title is one line (and an e-mail subject)."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


@dataclass(frozen=True)
class NotificationText:
    """What a notification says."""

    title: str
    body: str


def reminder_text(reminder: reminder_pb2.Reminder, user: UserChannels) -> NotificationText:
    """Title and body of the notification of a reminder that fired.

    The body gives the task's due time in the task's zone; a task without a
    due time gets the reminder's time in the user's quiet-hours zone if one is
    set, else in UTC. A reminder that fired late says by how much.
    """
    title = _one_line(f"Reminder: {reminder.task_title or 'a task'}")[:TITLE_MAX]
    when = None
    if reminder.HasField("task_due"):
        try:
            local = zoned.parse_local(reminder.task_due.local_time)
            zoned.zone_named(reminder.task_due.time_zone)
            when = "Due " + plain_time(local, reminder.task_due.time_zone)
        except ValueError:
            when = None  # a malformed due time: say when the reminder was set for instead
    if when is None:
        zone = user.quiet_zone or "UTC"
        try:
            info = zoned.zone_named(zone)
        except ValueError:
            zone, info = "UTC", zoned.zone_named("UTC")
        fire = reminder.fire_time.ToDatetime(tzinfo=UTC).astimezone(info).replace(tzinfo=None)
        when = "Reminder for " + plain_time(fire, zone)
    if reminder.late:
        when += ", late by " + lateness_text(reminder.lateness.ToTimedelta())
    return NotificationText(title=title, body=when)


def webhook_body(notification: notify_pb2.Notification) -> bytes:
    """The body of a webhook request: the notification as canonical protobuf JSON, with the event's type.

    Shaped as Standard Webhooks suggests ({"type", "timestamp", "data"}), and
    the same bytes on every retry (no delivery state in it).
    """
    core = notify_pb2.Notification()
    core.CopyFrom(notification)
    core.ClearField("deliveries")
    core.ClearField("read_time")
    payload = {
        "type": "notification.created",
        "timestamp": core.create_time.ToJsonString(),
        "data": json_format.MessageToDict(core),
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def email_text(notification: notify_pb2.Notification) -> str:
    """The plain-text body of a notification's e-mail."""
    return f"{notification.body}\n"


# --- delivery decisions --------------------------------------------------------------


def retry_delay(failures: int, max_delay: float, jitter: float) -> float:
    """Seconds to wait after the failures-th failure in a row: capped doubling from 1 s, with jitter.

    jitter is a number in [0, 1); the delay is between half and all of the
    capped step, so endpoints that failed together do not retry together.
    """
    step = min(FIRST_RETRY_DELAY * 2.0 ** min(max(failures, 1) - 1, 40), max_delay)
    return float(step * (0.5 + 0.5 * jitter))


class Step(enum.Enum):
    """What a delivery job does."""

    SKIP = "skip"  # delivered or failed already: a repeated or late job
    WAIT = "wait"  # not now: fire again at Decision.at
    GIVE_UP = "give up"  # mark it failed without an attempt
    ATTEMPT = "attempt"  # one attempt through the sender


@dataclass(frozen=True)
class Decision:
    """A delivery job's step, and when to come back (WAIT) or why it gave up (GIVE_UP)."""

    step: Step
    at: datetime | None = None
    reason: str = ""


@dataclass(frozen=True)
class Endpoint:
    """A user's push endpoint that failed recently: no delivery tries it before blocked_until.

    probing_until: one delivery is trying it now (the probe), until then at
    the latest; the others keep waiting for its result.
    """

    failures: int
    blocked_until: datetime
    probing_until: datetime | None
    last_error: str

    def waits_until(self, now: datetime) -> datetime | None:
        """When a delivery may try the endpoint, if not now."""
        later = max(self.blocked_until, self.probing_until or self.blocked_until)
        return later if later > now else None


def decide_delivery(
    *,
    state: int,
    now: datetime,
    retry_until: datetime,
    attempt_lease_until: datetime | None,
    channel_problem: str | None,
    quiet_end: datetime | None,
    endpoint: Endpoint | None,
) -> Decision:
    """What a fired delivery job does now.

    A delivered or failed delivery is left alone; one whose attempt is still
    in progress elsewhere waits for it; a channel turned off since gives up;
    quiet hours delay it to their end (never past it, never dropped); a
    failing endpoint makes it wait for the endpoint's next try (one delivery
    probes, the others wait for it), and after the retry period gives up.
    """
    if state != PENDING:
        return Decision(Step.SKIP)
    if attempt_lease_until is not None and attempt_lease_until > now:
        return Decision(Step.WAIT, at=attempt_lease_until)
    if channel_problem is not None:
        return Decision(Step.GIVE_UP, reason=channel_problem)
    if quiet_end is not None:
        return Decision(Step.WAIT, at=quiet_end)
    if endpoint is not None:
        wait = endpoint.waits_until(now)
        if wait is not None:
            if wait > retry_until:
                return Decision(
                    Step.GIVE_UP, reason=f"gave up retrying; the endpoint's last error: {endpoint.last_error}"
                )
            return Decision(Step.WAIT, at=wait)
    return Decision(Step.ATTEMPT)


@dataclass(frozen=True)
class AfterFailure:
    """What follows a failed attempt: the endpoint's new backoff, and the delivery's next attempt or its end."""

    endpoint: Endpoint
    next_attempt: datetime | None  # None: give up (FAILED)


def after_failure(
    *,
    now: datetime,
    error: str,
    permanent: bool,
    retry_after: float | None,
    endpoint: Endpoint | None,
    retry_until: datetime,
    max_delay: float,
    jitter: float,
) -> AfterFailure:
    """The endpoint's backoff and the delivery's next attempt after one failed attempt.

    The endpoint (the user's URL or address) backs off, not each delivery: the
    first failure, or a failed probe, doubles the pause (with jitter, at least
    a Retry-After the receiver sent, up to an hour); failures of attempts that
    were already in flight leave the pause as it is. Every delivery waiting
    for the endpoint then tries again at its end. A permanent error, or a next
    attempt past the retry period, gives up.
    """
    if endpoint is not None and endpoint.blocked_until > now:
        backoff = Endpoint(endpoint.failures, endpoint.blocked_until, None, error)
    else:
        failures = (endpoint.failures if endpoint is not None else 0) + 1
        delay = retry_delay(failures, max_delay, jitter)
        if retry_after is not None and retry_after > 0:
            delay = max(delay, min(retry_after, RETRY_AFTER_CAP))
        backoff = Endpoint(failures, now + timedelta(seconds=delay), None, error)
    if permanent or backoff.blocked_until > retry_until:
        return AfterFailure(backoff, None)
    return AfterFailure(backoff, backoff.blocked_until)


# --- channel settings updates ----------------------------------------------------------

SETTINGS_PATHS = frozenset(
    {
        "in_app_enabled",
        "webhook",
        "webhook.enabled",
        "webhook.url",
        "webhook.signing_secret",
        "email",
        "email.enabled",
        "email.address",
        "quiet_hours",
        "quiet_hours.enabled",
        "quiet_hours.start",
        "quiet_hours.end",
        "quiet_hours.time_zone",
    }
)


@dataclass(frozen=True)
class SettingsChecks:
    """The channel checks of URLs, secrets and addresses (from the channel modules)."""

    webhook_url_problem: Callable[[str], str | None]
    signing_secret_problem: Callable[[str], str | None]
    email_address_problem: Callable[[str], str | None]


def updated_channels(
    current: UserChannels, patch: notify_pb2.ChannelSettings, paths: Sequence[str], checks: SettingsChecks
) -> UserChannels:
    """The settings after setting the fields in paths to patch's values; raises InvalidArgument.

    "webhook", "email" and "quiet_hours" set every field of their part, except
    that an empty signing secret there keeps the current one (the secret is
    write-only, so a client cannot send it back); "webhook.signing_secret"
    with an empty value removes the secret, and the caller makes a new one if
    webhook delivery stays on (a rotation). in_app_enabled cannot be turned off.
    Every bad field is reported; nothing changes on any.
    """
    violations = Violations()
    if not paths:
        violations.add("update_mask", "name at least one field to change, e.g. webhook.url")
    for path in paths:
        if path not in SETTINGS_PATHS:
            allowed = ", ".join(sorted(SETTINGS_PATHS))
            violations.add("update_mask", f"{shown(path)} cannot be updated; allowed: {allowed}")
    violations.raise_if_any()
    chosen = set(paths)
    webhook, email, quiet = patch.webhook, patch.email, patch.quiet_hours
    changes: dict[str, object] = {}
    if "in_app_enabled" in chosen and not patch.in_app_enabled:
        violations.add("settings.in_app_enabled", "in-app notifications are always on")

    def picked(part: str, field: str) -> bool:
        return part in chosen or f"{part}.{field}" in chosen

    if picked("webhook", "enabled"):
        changes["webhook_enabled"] = webhook.enabled
    if picked("webhook", "url"):
        _check(violations, "settings.webhook.url", webhook.url, URL_MAX, checks.webhook_url_problem)
        changes["webhook_url"] = webhook.url
    if "webhook.signing_secret" in chosen or ("webhook" in chosen and webhook.signing_secret):
        _check(violations, "settings.webhook.signing_secret", webhook.signing_secret, SECRET_MAX,
               checks.signing_secret_problem)  # fmt: skip
        changes["webhook_secret"] = webhook.signing_secret
    if picked("email", "enabled"):
        changes["email_enabled"] = email.enabled
    if picked("email", "address"):
        _check(violations, "settings.email.address", email.address, ADDRESS_MAX, checks.email_address_problem)
        changes["email_address"] = email.address
    if picked("quiet_hours", "enabled"):
        changes["quiet_enabled"] = quiet.enabled
    for field, key in (("start", "quiet_start"), ("end", "quiet_end")):
        if picked("quiet_hours", field):
            value = getattr(quiet, field)
            if value and parse_hh_mm(value) is None:
                violations.add(
                    f"settings.quiet_hours.{field}", f"must be a time like 22:00 (HH:MM), got {shown(value)}"
                )
            changes[key] = value
    if picked("quiet_hours", "time_zone"):
        if quiet.time_zone:
            try:
                zoned.zone_named(quiet.time_zone)
            except ValueError as exc:
                violations.add("settings.quiet_hours.time_zone", str(exc))
        changes["quiet_zone"] = quiet.time_zone
    violations.raise_if_any()
    updated = replace(current, **changes)  # type: ignore[arg-type]
    _check_complete(updated, violations)
    violations.raise_if_any()
    return updated


def _check(violations: Violations, field: str, value: str, limit: int, problem_of: Callable[[str], str | None]) -> None:
    """An empty value is allowed here (whether it may stay empty is checked on the result)."""
    if not value:
        return
    problem = text_problem(value, limit)
    if problem is None:
        problem = problem_of(value)
    if problem is not None:
        violations.add(field, problem)


def _check_complete(updated: UserChannels, violations: Violations) -> None:
    """A channel that is on has what it needs (the signing secret aside: the caller makes one)."""
    if updated.webhook_enabled and not updated.webhook_url:
        violations.add("settings.webhook.url", "is required while webhook delivery is enabled")
    if updated.email_enabled and not updated.email_address:
        violations.add("settings.email.address", "is required while e-mail delivery is enabled")
    if updated.quiet_enabled:
        for field, value in (("start", updated.quiet_start), ("end", updated.quiet_end),
                             ("time_zone", updated.quiet_zone)):  # fmt: skip
            if not value:
                violations.add(f"settings.quiet_hours.{field}", "is required while quiet hours are enabled")
        if updated.quiet_start and updated.quiet_start == updated.quiet_end:
            violations.add("settings.quiet_hours.end", "must differ from start")


def needs_signing_secret(updated: UserChannels) -> bool:
    """Webhook delivery is on without a secret: the service makes one and shows it once."""
    return updated.webhook_enabled and not updated.webhook_secret


def newly_on(before: UserChannels, after: UserChannels, channel: int) -> bool:
    """Whether an update turns a push channel on."""
    if channel == WEBHOOK:
        return after.webhook_enabled and not before.webhook_enabled
    return after.email_enabled and not before.email_enabled


def endpoint_changed(before: UserChannels, after: UserChannels, channel: int) -> bool:
    """Whether an update points a push channel elsewhere (its failures so far then no longer count)."""
    if channel == WEBHOOK:
        return (before.webhook_url, before.webhook_secret) != (after.webhook_url, after.webhook_secret)
    return before.email_address != after.email_address
