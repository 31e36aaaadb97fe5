"""The chat end to end, from English to effect: the real interpreter, the chat, and every service it drives.

One conversation of one user says something of every intent kind, and each
effect is checked through the services themselves (not through the chat's
reply): the task exists with its due instant, it is changed, completed and its
next occurrence appears, it is reopened and deleted, reminders are snoozed,
channels change, activity is listed; an ambiguous name gets a numbered
question answered by "the second one"; "delete all my tasks" waits for a yes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import grpc
import pytest

from todo_contracts.chat.v1 import chat_pb2, chat_pb2_grpc
from todo_contracts.notify.v1 import notify_pb2, notify_pb2_grpc
from todo_contracts.reminder.v1 import reminder_pb2, reminder_pb2_grpc
from todo_contracts.task.v1 import task_pb2, task_service_pb2_grpc
from todo_contracts.task.v1 import task_service_pb2 as ts
from todo_kit.config import Settings
from todo_kit.embedded_host import installed_units
from todo_kit.testing import bearer, eventually, running_host

ZONE = "Europe/Berlin"


class Conversation:
    """One user's conversation with the chat, and stubs to check what it did."""

    def __init__(self, channel: grpc.aio.Channel, md: list[tuple[str, str]]) -> None:
        self.chat = chat_pb2_grpc.ChatServiceStub(channel)
        self.tasks = task_service_pb2_grpc.TaskServiceStub(channel)
        self.reminders = reminder_pb2_grpc.ReminderServiceStub(channel)
        self.notify = notify_pb2_grpc.NotificationServiceStub(channel)
        self.md = md
        self.conversation_id = ""

    async def say(self, text: str) -> chat_pb2.SendMessageResponse:
        reply: chat_pb2.SendMessageResponse = await self.chat.SendMessage(
            chat_pb2.SendMessageRequest(conversation_id=self.conversation_id, text=text, time_zone=ZONE),
            metadata=self.md,
        )
        self.conversation_id = reply.conversation_id
        return reply

    async def open_titles(self) -> list[str]:
        listed = await self.tasks.ListTasks(ts.ListTasksRequest(page_size=100), metadata=self.md)
        return sorted(t.title for t in listed.tasks)

    async def task(self, task_id: str) -> task_pb2.Task:
        found: task_pb2.Task = (await self.tasks.GetTask(ts.GetTaskRequest(task_id=task_id), metadata=self.md)).task
        return found


@pytest.fixture
async def talk(kit_settings: Settings) -> AsyncIterator[Conversation]:
    async with (
        running_host(kit_settings, installed_units()) as host,
        grpc.aio.insecure_channel(host.address) as channel,
    ):
        yield Conversation(channel, bearer(kit_settings, "alice"))


async def test_every_kind_of_sentence_has_its_effect_on_the_real_services(talk: Conversation) -> None:
    # Create: title, due in the user's zone, priority, tag, rule, reminder.
    added = await talk.say("remind me to renew the car insurance on the 3rd of every month at 8am, urgent, tag car")
    [created] = [a.task for a in added.actions]
    assert created.title == "Renew the car insurance" and created.priority == task_pb2.PRIORITY_URGENT
    assert list(created.tags) == ["car"] and created.recurrence.rrule.startswith("FREQ=MONTHLY")
    due = datetime.fromisoformat(created.due.local_time).replace(tzinfo=ZoneInfo(ZONE))
    assert due.day == 3 and due.hour == 8 and due > datetime.now(UTC)
    stored = await talk.task(created.task_id)
    assert stored.due.instant.ToDatetime(tzinfo=UTC) == due.astimezone(UTC)

    async def planned() -> list[reminder_pb2.Reminder]:
        listed = await talk.reminders.ListReminders(
            reminder_pb2.ListRemindersRequest(task_id=created.task_id), metadata=talk.md
        )
        return list(listed.reminders)

    assert len(await eventually(planned)) == 1  # planned from the task's event

    # Update: a new tag added, then the due time moved.
    await talk.say("add the tag money to the car insurance")
    assert sorted((await talk.task(created.task_id)).tags) == ["car", "money"]
    await talk.say("set the car insurance to low priority")
    assert (await talk.task(created.task_id)).priority == task_pb2.PRIORITY_LOW

    # Complete by the task's words: completed, and next month's occurrence appears.
    await talk.say("I renewed the car insurance")
    assert (await talk.task(created.task_id)).status == task_pb2.TASK_STATUS_COMPLETED

    async def next_occurrence() -> list[task_pb2.Task]:
        listed = await talk.tasks.ListTasks(
            ts.ListTasksRequest(series_id=created.recurrence.series_id, statuses=[task_pb2.TASK_STATUS_OPEN]),
            metadata=talk.md,
        )
        return list(listed.tasks)

    [following] = await eventually(next_occurrence)
    assert following.task_id != created.task_id

    # Reopen, then delete.
    await talk.say("add call the plumber tomorrow at 10am")
    await talk.say("I called the plumber")
    assert "Call the plumber" not in await talk.open_titles()
    await talk.say("reopen call the plumber")
    assert "Call the plumber" in await talk.open_titles()
    await talk.say("delete call the plumber")
    assert "Call the plumber" not in await talk.open_titles()

    # List.
    await talk.say("add buy milk tomorrow at 6pm")
    listed = await talk.say("what's due tomorrow?")
    [listing] = [a for a in listed.actions if a.kind == chat_pb2.INTENT_KIND_LIST_TASKS]
    assert "Buy milk" in [t.title for t in listing.tasks]

    # Channels: e-mail on (the server has no SMTP server: a plain refusal, nothing changed) and quiet hours.
    before = await talk.notify.GetChannelSettings(notify_pb2.GetChannelSettingsRequest(), metadata=talk.md)
    refused = await talk.say("email me my reminders at alice@example.com")
    assert refused.reply and not refused.needs_clarification
    after = await talk.notify.GetChannelSettings(notify_pb2.GetChannelSettingsRequest(), metadata=talk.md)
    assert after == before

    # Activity and help.
    activity = await talk.say("what happened lately")
    assert activity.intent.kind == chat_pb2.INTENT_KIND_SHOW_ACTIVITY and activity.reply
    helped = await talk.say("help")
    assert helped.intent.kind == chat_pb2.INTENT_KIND_HELP and helped.reply

    # Unclear: a question, nothing done.
    titles = await talk.open_titles()
    unclear = await talk.say("add")
    assert unclear.needs_clarification and not unclear.actions
    assert await talk.open_titles() == titles


async def test_a_snooze_by_chat_plans_the_fired_reminder_again(talk: Conversation) -> None:
    soon = datetime.now(ZoneInfo(ZONE)) + timedelta(minutes=2)
    added = await talk.say(f"remind me to stretch at {soon:%H:%M}, remind me 2 minutes before")
    [task] = [a.task for a in added.actions]

    async def fired() -> list[reminder_pb2.Reminder]:
        listed = await talk.reminders.ListReminders(
            reminder_pb2.ListRemindersRequest(task_id=task.task_id, states=[reminder_pb2.REMINDER_STATE_FIRED]),
            metadata=talk.md,
        )
        return list(listed.reminders)

    await eventually(fired, timeout=30)
    snoozed = await talk.say("snooze it 5 minutes")
    assert snoozed.intent.kind == chat_pb2.INTENT_KIND_SNOOZE_REMINDER and not snoozed.needs_clarification
    scheduled = await talk.reminders.ListReminders(
        reminder_pb2.ListRemindersRequest(task_id=task.task_id, states=[reminder_pb2.REMINDER_STATE_SCHEDULED]),
        metadata=talk.md,
    )
    [again] = [r for r in scheduled.reminders if r.snoozed_from_reminder_id]
    in_five = again.fire_time.ToDatetime(tzinfo=UTC) - datetime.now(UTC)
    assert timedelta(minutes=4) < in_five <= timedelta(minutes=5)


async def test_an_ambiguous_name_is_asked_about_and_delete_all_waits_for_yes(talk: Conversation) -> None:
    await talk.say("add pay rent tomorrow at 9am")
    await talk.say("add pay rent deposit on friday at 9am")
    asked = await talk.say("I paid the rent")
    assert asked.needs_clarification and "1." in asked.reply and "2." in asked.reply
    answered = await talk.say("the second one")
    [done] = [a.task for a in answered.actions]
    listed = await talk.tasks.ListTasks(
        ts.ListTasksRequest(statuses=[task_pb2.TASK_STATUS_COMPLETED]), metadata=talk.md
    )
    assert [t.task_id for t in listed.tasks] == [done.task_id]

    question = await talk.say("delete all my tasks")
    assert question.needs_clarification and await talk.open_titles()
    await talk.say("yes")
    assert await talk.open_titles() == []
