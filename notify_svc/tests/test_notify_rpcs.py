"""ListNotifications, MarkNotificationsRead and the channel settings on a real host: pages, counts, other users'
ids, and bad input that changes nothing."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2
from notify_fixtures import Notify, eventually, zoned

from todo_contracts import topics
from todo_contracts.notify.v1 import events_pb2, notify_pb2
from todo_kit.testing import violated_fields

SENT_EVENT = topics.event_type_name(events_pb2.NotificationSent)


async def test_a_due_reminder_becomes_one_notification_however_often_it_is_delivered(notify: Notify) -> None:
    reminder = await notify.due(
        task_title="Pay rent", task_due=zoned("2026-12-01T09:00:00", "Europe/Paris"), late=True,
        lateness=duration_pb2.Duration(seconds=185),
    )  # fmt: skip
    # The same firing again, in another event (a replay): still one notification.
    await notify.due(reminder_id=reminder.reminder_id, task_id=reminder.task_id)
    [notification] = await notify.notifications()
    assert notification.title == "Reminder: Pay rent"
    assert notification.body == "Due Tue 1 Dec 2026 09:00 (Europe/Paris), late by 3 min"
    assert (notification.task_id, notification.reminder_id, notification.late) == (
        reminder.task_id, reminder.reminder_id, True,
    )  # fmt: skip
    assert not notification.HasField("read_time")
    [in_app] = notification.deliveries
    assert (in_app.channel, in_app.state, in_app.attempts) == (
        notify_pb2.CHANNEL_IN_APP, notify_pb2.DELIVERY_STATE_SENT, 1,
    )  # fmt: skip
    [sent] = await eventually(lambda: notify.recorder.events(SENT_EVENT))
    assert (sent.message.channel, sent.message.attempt) == (notify_pb2.CHANNEL_IN_APP, 1)
    assert sent.message.notification.notification_id == notification.notification_id
    listed = await notify.listed()
    assert len(listed.notifications) == 1 and listed.unread_count == 1


async def test_a_malformed_reminder_due_is_dropped_and_creates_nothing(notify: Notify) -> None:
    await notify.due("alice", reminder_id="")
    await notify.due("alice", task_title="after the bad one")
    [only] = await notify.notifications()
    assert only.title == "Reminder: after the bad one"


async def test_pages_go_newest_first_with_unread_filter_and_count(notify: Notify) -> None:
    for number in range(7):
        await notify.due(task_title=f"task {number}")
    everything = await notify.notifications(count=7)
    assert [n.title for n in everything] == [f"Reminder: task {n}" for n in reversed(range(7))]
    await notify.stub.MarkNotificationsRead(
        notify_pb2.MarkNotificationsReadRequest(notification_ids=[everything[1].notification_id]), metadata=notify.alice
    )
    pages: list[list[str]] = []
    token = ""
    while True:
        page = await notify.listed(unread_only=True, page_size=2, page_token=token)
        assert page.unread_count == 6
        pages.append([n.title for n in page.notifications])
        token = page.next_page_token
        if not token:
            break
    assert pages == [["Reminder: task 6", "Reminder: task 4"], ["Reminder: task 3", "Reminder: task 2"],
                     ["Reminder: task 1", "Reminder: task 0"]]  # fmt: skip


async def test_a_page_token_works_only_for_its_own_listing_and_user(notify: Notify) -> None:
    for _ in range(3):
        await notify.due()
        await notify.due("bob")
    await notify.notifications("alice", count=3)
    await notify.notifications("bob", count=3)
    first = await notify.listed(page_size=1)
    assert first.next_page_token
    for user, fields in [
        ("alice", {"unread_only": True}),  # other filters
        ("bob", {}),  # another user
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await notify.listed(user, page_size=1, page_token=first.next_page_token, **fields)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violated_fields(caught.value) == ["page_token"]
    altered = first.next_page_token[:-2] + ("AA" if not first.next_page_token.endswith("AA") else "BB")
    for token in [altered, "garbage!", "x" * 5000]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await notify.listed(page_size=1, page_token=token)
        assert violated_fields(caught.value) == ["page_token"]


@pytest.mark.parametrize("page_size", [-1, 1001])
async def test_a_page_size_out_of_range_is_invalid(notify: Notify, page_size: int) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notify.listed(page_size=page_size)
    assert violated_fields(caught.value) == ["page_size"]


async def test_marking_read_counts_only_what_changed_and_ignores_other_users_ids(notify: Notify) -> None:
    for _ in range(3):
        await notify.due()
    await notify.due("bob")
    mine = await notify.notifications(count=3)
    [bobs] = await notify.notifications("bob")

    async def mark(*ids: str, all: bool = False, user: str = "alice") -> int:
        request = notify_pb2.MarkNotificationsReadRequest(notification_ids=list(ids), all=all)
        response = await notify.stub.MarkNotificationsRead(request, metadata=notify.token(user))
        return int(response.marked_count)

    first = mine[0].notification_id
    assert await mark(first, first, first.upper(), bobs.notification_id, str(uuid.uuid4())) == 1
    assert await mark(first) == 0  # already read
    assert await mark() == 0
    [read] = [n for n in await notify.notifications(count=3) if n.notification_id == first]
    assert read.HasField("read_time")
    assert (await notify.listed("bob")).unread_count == 1  # bob's was not touched
    assert await mark(all=True) == 2
    assert (await notify.listed()).unread_count == 0
    assert (await notify.listed("bob")).unread_count == 1


@pytest.mark.parametrize(
    ("ids", "all", "fields"),
    [
        (["not-an-id"], False, ["notification_ids[0]"]),
        ([""], False, ["notification_ids[0]"]),
        ([str(uuid.uuid4()), "{" + str(uuid.uuid4()) + "}"], False, ["notification_ids[1]"]),
        ([str(uuid.uuid4())] * 1001, False, ["notification_ids"]),
        ([str(uuid.uuid4())], True, ["all"]),
    ],
)
async def test_bad_mark_requests_are_invalid_and_mark_nothing(
    notify: Notify, ids: list[str], all: bool, fields: list[str]
) -> None:
    await notify.due()
    await notify.notifications()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notify.stub.MarkNotificationsRead(
            notify_pb2.MarkNotificationsReadRequest(notification_ids=ids, all=all), metadata=notify.alice
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(caught.value) == fields
    assert (await notify.listed()).unread_count == 1


async def test_another_users_notifications_are_never_visible(notify: Notify) -> None:
    await notify.due("alice")
    await notify.notifications("alice")
    listed = await notify.listed("bob")
    assert list(listed.notifications) == [] and listed.unread_count == 0


# --- channel settings ------------------------------------------------------------------------


async def settings_of(notify: Notify, user: str = "alice") -> notify_pb2.ChannelSettings:
    response = await notify.stub.GetChannelSettings(notify_pb2.GetChannelSettingsRequest(), metadata=notify.token(user))
    settings: notify_pb2.ChannelSettings = response.settings
    return settings


async def update(notify: Notify, paths: list[str], user: str = "alice", **parts: object) -> str:
    return await notify.set_channels(user, notify_pb2.ChannelSettings(**parts), paths)  # type: ignore[arg-type]


async def test_settings_start_in_app_only_and_change_only_the_named_fields(notify: Notify) -> None:
    assert await settings_of(notify) == notify_pb2.ChannelSettings(
        in_app_enabled=True, webhook={}, email={}, quiet_hours={}
    )
    await update(notify, ["quiet_hours"], quiet_hours={"enabled": True, "start": "22:00", "end": "07:00",
                                                       "time_zone": "Europe/Paris"})  # fmt: skip
    await update(notify, ["webhook.url"], webhook={"url": "https://hooks.test/alice", "enabled": True})
    found = await settings_of(notify)
    assert found.quiet_hours == notify_pb2.QuietHours(
        enabled=True, start="22:00", end="07:00", time_zone="Europe/Paris"
    )
    assert found.webhook == notify_pb2.WebhookSettings(url="https://hooks.test/alice")  # enabled was not in the mask
    assert await settings_of(notify, "bob") == notify_pb2.ChannelSettings(
        in_app_enabled=True, webhook={}, email={}, quiet_hours={}
    )


async def test_enabling_a_webhook_without_a_secret_generates_one_shown_only_once(notify: Notify) -> None:
    secret = await notify.enable_webhook()
    assert secret.startswith("whsec_")
    found = await settings_of(notify)
    assert found.webhook.signing_secret_set and found.webhook.signing_secret == ""
    assert secret not in str(found)
    # Changing the URL keeps the secret (no new one shown); asking for a new one rotates it.
    assert await update(notify, ["webhook.url"], webhook={"url": "https://hooks.test/new"}) == ""
    rotated = await update(notify, ["webhook.signing_secret"])
    assert rotated.startswith("whsec_") and rotated != secret
    given = "whsec_" + "A" * 43 + "="
    assert await update(notify, ["webhook.signing_secret"], webhook={"signing_secret": given}) == ""


@pytest.mark.parametrize(
    ("paths", "parts", "fields"),
    [
        (["in_app_enabled"], {"in_app_enabled": False}, ["settings.in_app_enabled"]),
        (["webhook.colour"], {}, ["update_mask"]),
        ([], {}, ["update_mask"]),
        (["webhook"], {"webhook": {"enabled": True, "url": "http://10.0.0.1/"}}, ["settings.webhook.url"]),
        (["webhook"], {"webhook": {"enabled": True}}, ["settings.webhook.url"]),
        (["email.address"], {"email": {"address": "not an address"}}, ["settings.email.address"]),
        (["quiet_hours"], {"quiet_hours": {"enabled": True, "start": "22:00", "end": "07:00",
                                           "time_zone": "Moon/Base"}}, ["settings.quiet_hours.time_zone"]),
        (["quiet_hours.start", "quiet_hours.end"], {"quiet_hours": {"start": "9am", "end": "25:00"}},
         ["settings.quiet_hours.start", "settings.quiet_hours.end"]),
    ],
)  # fmt: skip
async def test_invalid_settings_are_refused_naming_the_field_and_change_nothing(
    notify: Notify, paths: list[str], parts: dict[str, object], fields: list[str]
) -> None:
    secret = await notify.enable_webhook()
    before = await settings_of(notify)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await update(notify, paths, **parts)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(caught.value) == fields
    assert await settings_of(notify) == before
    assert secret not in (caught.value.details() or "")


async def test_a_request_without_settings_is_invalid(notify: Notify) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notify.stub.UpdateChannelSettings(
            notify_pb2.UpdateChannelSettingsRequest(update_mask=field_mask_pb2.FieldMask(paths=["email"])),
            metadata=notify.alice,
        )
    assert violated_fields(caught.value) == ["settings"]


async def test_email_cannot_be_enabled_where_no_smtp_server_is_configured(notify: Notify) -> None:
    # The test unit has no e-mail sender, as a server without TODO_NOTIFY_SMTP_HOST.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await update(notify, ["email"], email={"enabled": True, "address": "alice@example.test"})
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert not (await settings_of(notify)).email.enabled
    await update(notify, ["email.address"], email={"address": "alice@example.test"})  # an address alone is fine
    assert (await settings_of(notify)).email.address == "alice@example.test"
