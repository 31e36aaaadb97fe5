"""The notification service's decisions, without I/O: quiet hours, backoff, texts, channels, settings updates."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import duration_pb2

from notify_svc import domain
from notify_svc.domain import EMAIL, PENDING, SENT, WEBHOOK, Decision, Endpoint, Step, UserChannels
from todo_contracts.common.v1 import common_pb2
from todo_contracts.notify.v1 import notify_pb2
from todo_contracts.reminder.v1 import reminder_pb2
from todo_kit.errors import InvalidArgument

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def quiet(start: str, end: str, zone: str = "Europe/Paris") -> UserChannels:
    return UserChannels(quiet_enabled=True, quiet_start=start, quiet_end=end, quiet_zone=zone)


# --- quiet hours ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "end"),
    [
        (utc(2026, 12, 1, 22, 30), utc(2026, 12, 2, 6, 0)),  # 23:30 in Paris: ends at 07:00 tomorrow
        (utc(2026, 12, 2, 5, 0), utc(2026, 12, 2, 6, 0)),  # 06:00 in Paris: ends at 07:00 today
        (utc(2026, 12, 1, 21, 0), utc(2026, 12, 2, 6, 0)),  # 22:00 exactly: quiet
        (utc(2026, 12, 2, 6, 0), None),  # 07:00 exactly: over
        (utc(2026, 12, 1, 11, 0), None),  # noon: not quiet
    ],
)
def test_quiet_hours_across_midnight_end_the_next_morning(now: datetime, end: datetime | None) -> None:
    assert domain.quiet_until(quiet("22:00", "07:00"), now) == end


def test_quiet_hours_within_one_day() -> None:
    lunch = quiet("12:00", "13:30", "America/New_York")
    assert domain.quiet_until(lunch, utc(2026, 12, 1, 17, 15)) == utc(2026, 12, 1, 18, 30)
    assert domain.quiet_until(lunch, utc(2026, 12, 1, 16, 59)) is None


def test_quiet_hours_follow_the_zone_across_daylight_saving_changes() -> None:
    # Spring forward in Paris, 29 March 2026 at 02:00: the night of 22:00 to 07:00 is an hour shorter,
    # and ends at 07:00 summer time (05:00 UTC), not at 06:00 UTC.
    assert domain.quiet_until(quiet("22:00", "07:00"), utc(2026, 3, 29, 1, 0)) == utc(2026, 3, 29, 5, 0)
    # An end the change skips (02:30) moves forward by the gap, as due times do: 03:30 summer time.
    assert domain.quiet_until(quiet("01:00", "02:30"), utc(2026, 3, 29, 0, 30)) == utc(2026, 3, 29, 1, 30)
    # Fall back, 25 October 2026 at 03:00: an end the change repeats (02:30) is its first occurrence.
    assert domain.quiet_until(quiet("22:00", "02:30"), utc(2026, 10, 24, 21, 0)) == utc(2026, 10, 25, 0, 30)


@pytest.mark.parametrize(
    "user",
    [
        UserChannels(),
        replace(quiet("22:00", "07:00"), quiet_enabled=False),
        quiet("22:00", "22:00"),
        quiet("22:00", "07:00", "Mars/Olympus"),
        quiet("25:00", "07:00"),
    ],
)
def test_quiet_hours_off_or_unusable_delay_nothing(user: UserChannels) -> None:
    assert domain.quiet_until(user, utc(2026, 12, 1, 22, 30)) is None


# --- backoff ---------------------------------------------------------------------------


@pytest.mark.parametrize("failures", range(1, 25))
@pytest.mark.parametrize("jitter", [0.0, 0.25, 0.5, 0.999999])
def test_retry_delay_doubles_up_to_the_maximum_with_jitter_in_the_upper_half(failures: int, jitter: float) -> None:
    step = min(2.0 ** (failures - 1), 600.0)
    delay = domain.retry_delay(failures, 600.0, jitter)
    assert step / 2 <= delay <= step <= 600.0


def test_retry_delays_grow_and_spread() -> None:
    lowest = [domain.retry_delay(n, 600.0, 0.0) for n in range(1, 12)]
    assert lowest == sorted(lowest) and lowest[0] == 0.5 and lowest[-1] == 300.0
    assert len({domain.retry_delay(3, 600.0, j / 10) for j in range(10)}) == 10


def test_a_first_failure_blocks_the_endpoint_and_the_delivery_waits_for_it() -> None:
    after = domain.after_failure(
        now=NOW, error="503", permanent=False, retry_after=None, endpoint=None,
        retry_until=NOW + timedelta(hours=24), max_delay=600, jitter=0.5,
    )  # fmt: skip
    assert after.endpoint.failures == 1
    assert NOW + timedelta(seconds=0.5) <= after.endpoint.blocked_until <= NOW + timedelta(seconds=1)
    assert after.next_attempt == after.endpoint.blocked_until


def test_a_failed_probe_doubles_the_pause_and_a_failure_already_covered_does_not() -> None:
    ended = Endpoint(
        failures=3, blocked_until=NOW - timedelta(seconds=1), probing_until=NOW + timedelta(60), last_error="x"
    )
    probe = domain.after_failure(
        now=NOW, error="timeout", permanent=False, retry_after=None, endpoint=ended,
        retry_until=NOW + timedelta(hours=24), max_delay=600, jitter=0.0,
    )  # fmt: skip
    assert probe.endpoint == Endpoint(4, NOW + timedelta(seconds=4), None, "timeout")
    # An attempt that was in flight when another one's failure set the pause leaves it as it is.
    blocked = Endpoint(failures=1, blocked_until=NOW + timedelta(seconds=1), probing_until=None, last_error="503")
    late = domain.after_failure(
        now=NOW, error="503", permanent=False, retry_after=None, endpoint=blocked,
        retry_until=NOW + timedelta(hours=24), max_delay=600, jitter=0.0,
    )  # fmt: skip
    assert (late.endpoint.failures, late.endpoint.blocked_until) == (1, NOW + timedelta(seconds=1))


@pytest.mark.parametrize(("retry_after", "seconds"), [(30.0, 30.0), (10.0**7, domain.RETRY_AFTER_CAP), (0.1, 1.0)])
def test_retry_after_is_honoured_up_to_an_hour(retry_after: float, seconds: float) -> None:
    after = domain.after_failure(
        now=NOW, error="429", permanent=False, retry_after=retry_after, endpoint=None,
        retry_until=NOW + timedelta(hours=24), max_delay=1, jitter=0.999999,
    )  # fmt: skip
    assert after.endpoint.blocked_until == pytest.approx(NOW + timedelta(seconds=seconds), abs=timedelta(seconds=0.01))


def test_permanent_errors_and_the_end_of_the_retry_period_give_up() -> None:
    common = {"now": NOW, "error": "e", "retry_after": None, "endpoint": None, "max_delay": 600.0, "jitter": 0.0}
    gone = domain.after_failure(**common, permanent=True, retry_until=NOW + timedelta(hours=24))  # type: ignore[arg-type]
    assert gone.next_attempt is None
    over = domain.after_failure(**common, permanent=False, retry_until=NOW + timedelta(seconds=0.1))  # type: ignore[arg-type]
    assert over.next_attempt is None
    kept = domain.after_failure(**common, permanent=False, retry_until=NOW + timedelta(seconds=10))  # type: ignore[arg-type]
    assert kept.next_attempt is not None


def decide(**changes: object) -> Decision:
    base: dict[str, object] = {
        "state": PENDING, "now": NOW, "retry_until": NOW + timedelta(hours=24), "attempt_lease_until": None,
        "channel_problem": None, "quiet_end": None, "endpoint": None,
    }  # fmt: skip
    return domain.decide_delivery(**{**base, **changes})  # type: ignore[arg-type]


def test_a_pending_delivery_with_nothing_in_its_way_is_attempted() -> None:
    assert decide() == Decision(Step.ATTEMPT)
    passed = Endpoint(2, NOW - timedelta(seconds=1), NOW - timedelta(seconds=1), "503")
    assert decide(endpoint=passed) == Decision(Step.ATTEMPT)


def test_what_keeps_a_delivery_from_an_attempt() -> None:
    assert decide(state=SENT).step is Step.SKIP
    lease = NOW + timedelta(seconds=40)
    assert decide(attempt_lease_until=lease) == Decision(Step.WAIT, at=lease)
    assert decide(channel_problem="webhook delivery was turned off") == Decision(
        Step.GIVE_UP, reason="webhook delivery was turned off"
    )
    morning = NOW + timedelta(hours=8)
    assert decide(quiet_end=morning) == Decision(Step.WAIT, at=morning)
    blocked = Endpoint(1, NOW + timedelta(seconds=5), None, "503")
    assert decide(endpoint=blocked) == Decision(Step.WAIT, at=NOW + timedelta(seconds=5))
    probing = Endpoint(4, NOW - timedelta(seconds=1), NOW + timedelta(seconds=70), "503")
    assert decide(endpoint=probing) == Decision(Step.WAIT, at=NOW + timedelta(seconds=70))
    given_up = decide(endpoint=blocked, retry_until=NOW + timedelta(seconds=1))
    assert given_up.step is Step.GIVE_UP and "503" in given_up.reason


def test_quiet_hours_delay_even_a_delivery_past_its_retry_period() -> None:
    morning = NOW + timedelta(hours=8)
    assert decide(quiet_end=morning, retry_until=NOW - timedelta(hours=1)) == Decision(Step.WAIT, at=morning)


# --- what a reminder says, and where it goes ---------------------------------------------


def fired(**fields: object) -> reminder_pb2.Reminder:
    reminder = reminder_pb2.Reminder(reminder_id="t/r/1", user_id="alice", task_id="t", task_title="Pay rent")
    reminder.fire_time.FromDatetime(utc(2026, 12, 1, 7, 30))
    for name, value in fields.items():
        if isinstance(value, duration_pb2.Duration | common_pb2.ZonedDateTime):
            getattr(reminder, name).CopyFrom(value)
        else:
            setattr(reminder, name, value)
    return reminder


def test_the_body_gives_the_due_time_in_the_tasks_zone() -> None:
    due = common_pb2.ZonedDateTime(local_time="2026-12-01T09:00:00", time_zone="Europe/Paris")
    text = domain.reminder_text(fired(task_due=due), quiet("22:00", "07:00", "Asia/Tokyo"))
    assert text == domain.NotificationText("Reminder: Pay rent", "Due Tue 1 Dec 2026 09:00 (Europe/Paris)")


def test_without_a_due_time_the_body_gives_the_reminder_time_in_the_users_zone_or_utc() -> None:
    assert domain.reminder_text(fired(), UserChannels()).body == "Reminder for Tue 1 Dec 2026 07:30 (UTC)"
    tokyo = quiet("22:00", "07:00", "Asia/Tokyo")
    assert domain.reminder_text(fired(), tokyo).body == "Reminder for Tue 1 Dec 2026 16:30 (Asia/Tokyo)"


def test_a_late_reminder_says_by_how_much() -> None:
    text = domain.reminder_text(fired(late=True, lateness=duration_pb2.Duration(seconds=200)), UserChannels())
    assert text.body == "Reminder for Tue 1 Dec 2026 07:30 (UTC), late by 3 min"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (59, "59 s"), (60, "1 min"), (3599, "59 min"), (3600, "1 h"), (7500, "2 h 5 min"), (97200, "1 d 3 h")],
)
def test_lateness_is_told_in_the_largest_fitting_units(seconds: int, text: str) -> None:
    assert domain.lateness_text(timedelta(seconds=seconds)) == text


def test_a_title_is_one_line() -> None:
    assert domain.reminder_text(fired(task_title="Pay\nrent\t now"), UserChannels()).title == "Reminder: Pay rent now"


def test_a_malformed_due_time_falls_back_to_the_reminder_time() -> None:
    due = common_pb2.ZonedDateTime(local_time="tomorrow", time_zone="Europe/Paris")
    assert domain.reminder_text(fired(task_due=due), UserChannels()).body.startswith("Reminder for Tue 1 Dec 2026")


HOOK = UserChannels(webhook_enabled=True, webhook_url="https://h.test/x", webhook_secret="whsec_x")
MAIL = UserChannels(email_enabled=True, email_address="a@b.test")


@pytest.mark.parametrize(
    ("user", "webhook", "email", "expected"),
    [
        (UserChannels(), True, True, []),
        (HOOK, True, True, [WEBHOOK]),
        (HOOK, False, True, []),
        (replace(HOOK, webhook_secret=""), True, True, []),
        (replace(HOOK, email_enabled=True, email_address="a@b.test"), True, True, [WEBHOOK, EMAIL]),
        (MAIL, True, False, []),
        (replace(MAIL, email_enabled=False), True, True, []),
    ],
)
def test_push_channels_are_those_turned_on_complete_and_available(
    user: UserChannels, webhook: bool, email: bool, expected: list[int]
) -> None:
    assert domain.push_channels(user, webhook_available=webhook, email_available=email) == expected


def test_the_webhook_body_is_the_notification_as_canonical_json_with_its_type_and_the_same_on_every_retry() -> None:
    notification = notify_pb2.Notification(notification_id="n-1", user_id="alice", title="Reminder: Pay rent")
    notification.create_time.FromDatetime(NOW)
    body = domain.webhook_body(notification)
    notification.deliveries.add(channel=WEBHOOK, state=PENDING, attempts=3)
    assert domain.webhook_body(notification) == body
    parsed = json.loads(body)
    assert parsed["type"] == "notification.created"
    assert parsed["timestamp"] == "2026-12-01T12:00:00Z"
    assert parsed["data"] == {
        "notificationId": "n-1", "userId": "alice", "title": "Reminder: Pay rent", "createTime": "2026-12-01T12:00:00Z",
    }  # fmt: skip
    assert domain.message_id("n-1", WEBHOOK) == "n-1-webhook" != domain.message_id("n-1", EMAIL)


# --- channel settings updates --------------------------------------------------------------

CHECKS = domain.SettingsChecks(
    webhook_url_problem=lambda url: None if url.startswith("https://") else "must be https",
    signing_secret_problem=lambda secret: None if secret.startswith("whsec_") else "must start with whsec_",
    email_address_problem=lambda address: None if "@" in address else "is not an e-mail address",
)


def update(current: UserChannels, paths: list[str], **parts: object) -> UserChannels:
    return domain.updated_channels(current, notify_pb2.ChannelSettings(**parts), paths, CHECKS)  # type: ignore[arg-type]


def violations_of(current: UserChannels, paths: list[str], **parts: object) -> list[str]:
    with pytest.raises(InvalidArgument) as caught:
        update(current, paths, **parts)
    return [field for field, _ in caught.value.violations]


def test_only_the_named_fields_change() -> None:
    changed = update(HOOK, ["email.address"], email={"address": "x@y.test", "enabled": True}, webhook={"url": ""})
    assert changed == replace(HOOK, email_address="x@y.test")


def test_a_part_sets_all_its_fields_but_keeps_the_secret_it_cannot_see() -> None:
    changed = update(HOOK, ["webhook"], webhook={"enabled": True, "url": "https://new.test/"})
    assert changed == replace(HOOK, webhook_url="https://new.test/")
    assert not domain.needs_signing_secret(changed)
    rotated = update(HOOK, ["webhook.signing_secret"])
    assert rotated.webhook_secret == "" and domain.needs_signing_secret(rotated)


def test_enabling_a_webhook_without_a_secret_asks_for_one() -> None:
    enabled = update(UserChannels(), ["webhook"], webhook={"enabled": True, "url": "https://h.test/"})
    assert domain.needs_signing_secret(enabled)
    given = update(
        UserChannels(), ["webhook"], webhook={"enabled": True, "url": "https://h.test/", "signing_secret": "whsec_abc"}
    )
    assert given.webhook_secret == "whsec_abc" and not domain.needs_signing_secret(given)


@pytest.mark.parametrize(
    ("paths", "parts", "fields"),
    [
        ([], {}, ["update_mask"]),
        (["webhook.signing_secret_set"], {}, ["update_mask"]),
        (["in_app_enabled"], {"in_app_enabled": False}, ["settings.in_app_enabled"]),
        (["webhook.url"], {"webhook": {"url": "http://h.test/"}}, ["settings.webhook.url"]),
        (["webhook.url"], {"webhook": {"url": "https://" + "x" * 3000}}, ["settings.webhook.url"]),
        (["webhook.enabled"], {"webhook": {"enabled": True}}, ["settings.webhook.url"]),
        (["webhook.signing_secret"], {"webhook": {"signing_secret": "hunter2"}}, ["settings.webhook.signing_secret"]),
        (["email"], {"email": {"enabled": True}}, ["settings.email.address"]),
        (["email.address"], {"email": {"address": "nobody"}}, ["settings.email.address"]),
        (["quiet_hours.enabled"], {"quiet_hours": {"enabled": True}},
         ["settings.quiet_hours.start", "settings.quiet_hours.end", "settings.quiet_hours.time_zone"]),
        (["quiet_hours"], {"quiet_hours": {"enabled": True, "start": "7:00", "end": "24:00", "time_zone": "UTC"}},
         ["settings.quiet_hours.start", "settings.quiet_hours.end"]),
        (["quiet_hours"], {"quiet_hours": {"enabled": True, "start": "07:00", "end": "07:00", "time_zone": "UTC"}},
         ["settings.quiet_hours.end"]),
    ],
)  # fmt: skip
def test_bad_settings_name_each_bad_field(paths: list[str], parts: dict[str, object], fields: list[str]) -> None:
    assert violations_of(UserChannels(), paths, **parts) == fields


@pytest.mark.parametrize("zone", ["Mars/Olympus", "localtime", "Factory", "posixrules", "../etc/passwd", "EST5EDT "])
def test_quiet_hours_take_only_the_zones_the_task_service_takes(zone: str) -> None:
    parts = {"quiet_hours": {"enabled": True, "start": "22:00", "end": "07:00", "time_zone": zone}}
    assert violations_of(UserChannels(), ["quiet_hours"], **parts) == ["settings.quiet_hours.time_zone"]


def test_valid_quiet_hours_are_kept_as_given() -> None:
    parts = {"quiet_hours": {"enabled": True, "start": "22:00", "end": "07:00", "time_zone": "Europe/Paris"}}
    assert update(UserChannels(), ["quiet_hours"], **parts) == quiet("22:00", "07:00")


def test_turning_a_channel_off_needs_nothing_else() -> None:
    assert update(HOOK, ["webhook"], webhook={}) == replace(HOOK, webhook_enabled=False, webhook_url="")
    assert update(MAIL, ["email.enabled"]) == replace(MAIL, email_enabled=False)


def test_the_api_never_shows_the_secret() -> None:
    shown = HOOK.to_proto()
    assert shown.webhook.signing_secret == "" and shown.webhook.signing_secret_set
    assert shown.in_app_enabled
    assert "whsec_x" not in str(shown)
