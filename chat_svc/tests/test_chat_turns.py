"""Conversations: questions and their answers, references to earlier tasks, confirmations, and the other commands."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from chat_fixtures import Chat, command, create_intent, in_days
from google.protobuf import duration_pb2, field_mask_pb2

from todo_contracts.audit.v1 import audit_pb2
from todo_contracts.chat.v1 import chat_pb2
from todo_contracts.common.v1 import common_pb2
from todo_contracts.notify.v1 import notify_pb2
from todo_contracts.reminder.v1 import reminder_pb2
from todo_contracts.task.v1 import task_pb2
from todo_kit.testing import eventually

K = chat_pb2
BERLIN = "Europe/Berlin"
ANSWER_SECOND = chat_pb2.Intent(kind=K.INTENT_KIND_ANSWER, choice=2)
YES = chat_pb2.Intent(kind=K.INTENT_KIND_ANSWER, confirmation=K.CONFIRMATION_YES)
NO = chat_pb2.Intent(kind=K.INTENT_KIND_ANSWER, confirmation=K.CONFIRMATION_NO)


def _duration(delta: timedelta) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromTimedelta(delta)
    return value


async def test_several_matches_ask_which_and_the_number_alone_acts_on_that_one(chat: Chat) -> None:
    rent = await chat.add("Pay rent", due=in_days(2, 9, BERLIN))
    deposit = await chat.add("Pay rent deposit", due=in_days(5, 9, BERLIN))
    chat.teach("paid the rent", command(K.INTENT_KIND_COMPLETE_TASK, "rent"))
    asked = await chat.say("paid the rent")
    assert asked.needs_clarification and not asked.actions
    assert asked.reply.startswith("Which one?\n1. ") and "Pay rent deposit (due " in asked.reply
    offered = [line.split(". ", 1)[1].split(" (")[0] for line in asked.reply.splitlines()[1:3]]
    assert sorted(offered) == ["Pay rent", "Pay rent deposit"]
    assert {t.status for t in await chat.listed()} == {task_pb2.TASK_STATUS_OPEN}

    answered = await chat.say("2", conversation_id=asked.conversation_id)
    second = rent if offered[1] == "Pay rent" else deposit
    first = deposit if second is rent else rent
    assert [a.task.task_id for a in answered.actions] == [second.task_id]
    assert (await chat.get(second.task_id)).status == task_pb2.TASK_STATUS_COMPLETED
    assert (await chat.get(first.task_id)).status == task_pb2.TASK_STATUS_OPEN
    # The question was answered: the same number again is no answer to anything.
    again = await chat.say("2", conversation_id=asked.conversation_id)
    assert not again.actions and (await chat.get(first.task_id)).status == task_pb2.TASK_STATUS_OPEN


async def test_the_second_one_answers_a_question_and_a_wrong_number_asks_again(chat: Chat) -> None:
    await chat.add("Call mom")
    await chat.add("Call the plumber")
    chat.teach("drop the call", command(K.INTENT_KIND_DELETE_TASK, "call"))
    chat.teach("the second one", ANSWER_SECOND)
    asked = await chat.say("drop the call")
    wrong = await chat.say("7", conversation_id=asked.conversation_id)
    assert wrong.needs_clarification and "1 to 2" in wrong.reply and len(await chat.listed()) == 2
    done = await chat.say("the second one", conversation_id=asked.conversation_id)
    [action] = done.actions
    assert action.kind == K.INTENT_KIND_DELETE_TASK and done.reply.startswith("Deleted '")
    assert [t.title for t in await chat.listed()] == [
        t for t in ("Call mom", "Call the plumber") if t != action.task.title
    ]


async def test_no_match_says_so_and_changes_nothing(chat: Chat) -> None:
    task = await chat.add("Buy milk")
    chat.teach("I called the plumber", command(K.INTENT_KIND_COMPLETE_TASK, "plumber"))
    response = await chat.say("I called the plumber")
    assert response.reply == "I couldn't find a task matching 'plumber'." and not response.actions
    assert (await chat.get(task.task_id)).version == task.version


async def test_it_after_a_create_is_the_created_task(chat: Chat) -> None:
    await chat.add("Water the roses")  # another match for "roses": "it" must not search
    chat.teach("remind me to water the roses", create_intent("Water the roses", due=in_days(1, 19, BERLIN)))
    chat.teach("actually I did it", command(K.INTENT_KIND_COMPLETE_TASK, refers_to_previous=True))
    created = await chat.say("remind me to water the roses")
    done = await chat.say("actually I did it", conversation_id=created.conversation_id)
    task_id = created.actions[0].task.task_id
    assert [a.task.task_id for a in done.actions] == [task_id]
    assert (await chat.get(task_id)).status == task_pb2.TASK_STATUS_COMPLETED
    assert len(await chat.listed()) == 1  # the other one is still open


async def test_the_second_one_refers_to_the_last_list(chat: Chat) -> None:
    for title in ("Alpha chore", "Beta chore", "Gamma chore"):
        await chat.add(title)
    chat.teach("list chores", chat_pb2.Intent(kind=K.INTENT_KIND_LIST_TASKS, query="chore"))
    chat.teach("delete the second one", command(K.INTENT_KIND_DELETE_TASK, refers_to_previous=True, choice=2))
    chat.teach("delete the ninth one", command(K.INTENT_KIND_DELETE_TASK, refers_to_previous=True, choice=9))
    listed = await chat.say("list chores")
    second = listed.actions[0].tasks[1]
    too_far = await chat.say("delete the ninth one", conversation_id=listed.conversation_id)
    assert too_far.needs_clarification and len(await chat.listed()) == 3
    deleted = await chat.say("delete the second one", conversation_id=listed.conversation_id)
    assert [a.task.task_id for a in deleted.actions] == [second.task_id]
    assert second.task_id not in {t.task_id for t in await chat.listed()}


async def test_delete_all_asks_first_and_acts_only_on_yes(chat: Chat) -> None:
    for n in range(3):
        await chat.add(f"Task {n}")
    chat.teach("delete all my tasks", command(K.INTENT_KIND_DELETE_TASK, all_tasks=True))
    chat.teach("yes", YES)
    chat.teach("no", NO)
    asked = await chat.say("delete all my tasks")
    assert asked.reply == "Delete all 3 open tasks? (yes/no)" and asked.needs_clarification
    declined = await chat.say("no", conversation_id=asked.conversation_id)
    assert not declined.actions and len(await chat.listed()) == 3
    # "no" ended the question: a later "yes" confirms nothing.
    late_yes = await chat.say("yes", conversation_id=asked.conversation_id)
    assert not late_yes.actions and len(await chat.listed()) == 3

    asked_again = await chat.say("delete all my tasks", conversation_id=asked.conversation_id)
    confirmed = await chat.say("yes", conversation_id=asked_again.conversation_id)
    assert confirmed.reply == "Deleted 3 tasks." and len(confirmed.actions) == 3
    assert await chat.listed() == []


async def test_an_update_adds_tags_and_moves_the_due_time_with_the_tasks_version(chat: Chat) -> None:
    task = await chat.add("Soccer practice", tags=["sport"], due=in_days(4, 17, BERLIN))
    new_due = in_days(6, 10, BERLIN)
    chat.teach(
        "add the tag kids to soccer practice and move it",
        chat_pb2.Intent(
            kind=K.INTENT_KIND_UPDATE_TASK, target_query="soccer practice",
            task=task_pb2.Task(tags=["kids"], due=new_due), changed_fields=["tags+", "due"],
        ),
    )  # fmt: skip
    response = await chat.say("add the tag kids to soccer practice and move it")
    after = await chat.get(task.task_id)
    assert list(after.tags) == ["sport", "kids"] and after.due.local_time.startswith(new_due.local_time)
    assert after.version == task.version + 1
    assert response.reply.startswith("Changed 'Soccer practice': ") and "tags sport, kids" in response.reply
    assert "10:00" in response.reply


async def test_reopen_looks_at_completed_tasks(chat: Chat) -> None:
    task = await chat.add("File taxes")
    await chat.add("File taxes for mom")  # open: reopening must not offer it
    await chat.tasks.CompleteTask(
        __import__("todo_contracts.task.v1.task_service_pb2", fromlist=["x"]).CompleteTaskRequest(task_id=task.task_id),
        metadata=chat.alice,
    )
    chat.teach("reopen taxes", command(K.INTENT_KIND_REOPEN_TASK, "taxes"))
    response = await chat.say("reopen taxes")
    assert response.reply == "Reopened 'File taxes'."
    assert (await chat.get(task.task_id)).status == task_pb2.TASK_STATUS_OPEN


async def test_snooze_it_snoozes_the_reminder_that_fired(chat: Chat) -> None:
    due_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    due = common_pb2.ZonedDateTime(local_time=due_at.strftime("%Y-%m-%dT%H:%M:%S"), time_zone="UTC")
    rule = task_pb2.ReminderRule(before_due=_duration(timedelta(seconds=1)))
    chat.teach("remind me to stretch", create_intent("Stretch", due=due, reminders=[rule]))
    snooze = chat_pb2.Intent(kind=K.INTENT_KIND_SNOOZE_REMINDER, refers_to_previous=True)
    snooze.snooze_request.snooze_for.FromTimedelta(timedelta(minutes=5))
    chat.teach("snooze it 5 minutes", snooze)
    created = await chat.say("remind me to stretch", zone="UTC")
    task_id = created.actions[0].task.task_id

    async def fired() -> list[reminder_pb2.Reminder]:
        request = reminder_pb2.ListRemindersRequest(task_id=task_id, states=[reminder_pb2.REMINDER_STATE_FIRED])
        return list((await chat.reminders.ListReminders(request, metadata=chat.alice)).reminders)

    [original] = await eventually(fired)
    before = datetime.now(UTC)
    response = await chat.say("snooze it 5 minutes", conversation_id=created.conversation_id, zone="UTC")
    assert response.reply.startswith("Snoozed 'Stretch' until ") and response.actions[0].task.task_id == task_id
    listed = await chat.reminders.ListReminders(reminder_pb2.ListRemindersRequest(task_id=task_id), metadata=chat.alice)
    [snoozed] = [r for r in listed.reminders if r.snoozed_from_reminder_id == original.reminder_id]
    fire = snoozed.fire_time.ToDatetime(tzinfo=UTC)
    assert before + timedelta(minutes=5) - timedelta(seconds=1) <= fire <= datetime.now(UTC) + timedelta(minutes=5)


async def test_snooze_with_nothing_fired_says_so(chat: Chat) -> None:
    chat.teach("snooze", chat_pb2.Intent(kind=K.INTENT_KIND_SNOOZE_REMINDER))
    response = await chat.say("snooze")
    assert "nothing to snooze" in response.reply and not response.actions


async def test_channel_changes_are_reported_without_secrets(chat: Chat) -> None:
    request = notify_pb2.UpdateChannelSettingsRequest(
        settings=notify_pb2.ChannelSettings(
            webhook=notify_pb2.WebhookSettings(enabled=True, url="https://hooks.example.com/t/PRIVATEPATH?key=k1"),
            quiet_hours=notify_pb2.QuietHours(enabled=True, start="22:00", end="07:00", time_zone=BERLIN),
        ),
        update_mask=field_mask_pb2.FieldMask(paths=["webhook", "quiet_hours"]),
    )
    chat.teach(
        "send my reminders to my hook", chat_pb2.Intent(kind=K.INTENT_KIND_UPDATE_CHANNELS, channels_request=request)
    )
    response = await chat.say("send my reminders to my hook")
    assert response.reply.startswith("Done: webhook on to hooks.example.com; quiet hours 22:00-07:00")
    assert "PRIVATEPATH" not in response.reply and "whsec_" not in response.reply and "k1" not in response.reply
    assert response.actions[0].kind == K.INTENT_KIND_UPDATE_CHANNELS


async def test_a_channel_the_server_cannot_use_is_refused_in_plain_words(chat: Chat) -> None:
    request = notify_pb2.UpdateChannelSettingsRequest(
        settings=notify_pb2.ChannelSettings(email=notify_pb2.EmailSettings(enabled=True, address="alice@example.com")),
        update_mask=field_mask_pb2.FieldMask(paths=["email"]),
    )
    chat.teach("email me my reminders", chat_pb2.Intent(kind=K.INTENT_KIND_UPDATE_CHANNELS, channels_request=request))
    response = await chat.say("email me my reminders")
    assert response.reply.startswith("I couldn't change that: ") and "SMTP" in response.reply
    assert not response.actions


async def test_activity_lists_what_happened_and_chat_messages_are_recorded(chat: Chat) -> None:
    chat.teach("add milk", create_intent("Buy milk"))
    chat.teach("what happened lately", chat_pb2.Intent(kind=K.INTENT_KIND_SHOW_ACTIVITY))
    added = await chat.say("add milk")

    async def recorded() -> list[audit_pb2.ActivityEntry]:
        request = audit_pb2.ListActivityRequest(event_types=["todo.chat.v1.ChatMessageHandled"])
        return list((await chat.audit.ListActivity(request, metadata=chat.alice)).entries)

    [entry] = await eventually(recorded)
    assert "add milk" in entry.summary and "Added 'Buy milk'" in entry.summary
    response = await chat.say("what happened lately", conversation_id=added.conversation_id)
    assert response.reply.startswith("Lately:\n") and "Buy milk" in response.reply
    assert response.actions[0].kind == K.INTENT_KIND_SHOW_ACTIVITY


async def test_help_unclear_and_clarifying_messages_change_nothing(chat: Chat) -> None:
    chat.teach("help", chat_pb2.Intent(kind=K.INTENT_KIND_HELP))
    chat.teach("add", chat_pb2.Intent(kind=K.INTENT_KIND_CREATE_TASK, clarifying_question="What should I add?"))
    helped = await chat.say("help")
    assert "You can say things like" in helped.reply and not helped.needs_clarification
    asked = await chat.say("add")
    assert asked.reply == "What should I add?" and asked.needs_clarification and not asked.actions
    unclear = await chat.say("blorp")
    assert unclear.needs_clarification and "help" in unclear.reply
    assert await chat.listed() == []


async def test_a_refused_create_becomes_a_plain_reply(chat: Chat) -> None:
    chat.teach("add it with a bad tag", create_intent("Buy milk", tags=["not a tag!"]))
    response = await chat.say("add it with a bad tag")
    assert response.reply.startswith("I couldn't add that: a tag") and not response.actions
    assert await chat.listed() == []


async def test_messages_of_one_conversation_at_once_are_all_kept_in_turn(chat: Chat) -> None:
    chat.teach("help", chat_pb2.Intent(kind=K.INTENT_KIND_HELP))
    first = await chat.say("help")
    await asyncio.gather(*(chat.say("help", conversation_id=first.conversation_id) for _ in range(8)))
    request = chat_pb2.GetConversationRequest(conversation_id=first.conversation_id)
    conversation = (await chat.chat.GetConversation(request, metadata=chat.alice)).conversation
    assert len(conversation.messages) == 18
    roles = [m.role for m in conversation.messages]
    assert roles == [K.CHAT_ROLE_USER, K.CHAT_ROLE_ASSISTANT] * 9


async def test_a_signing_secret_typed_in_chat_is_set_but_never_answered_stored_or_published(chat: Chat) -> None:
    secret = "whsec_" + "A" * 32
    request = notify_pb2.UpdateChannelSettingsRequest(
        settings=notify_pb2.ChannelSettings(
            webhook=notify_pb2.WebhookSettings(enabled=True, url="https://hooks.example.com/in", signing_secret=secret)
        ),
        update_mask=field_mask_pb2.FieldMask(paths=["webhook"]),
    )
    text = f"use my hook with secret {secret}"
    chat.teach(text, chat_pb2.Intent(kind=K.INTENT_KIND_UPDATE_CHANNELS, channels_request=request))
    response = await chat.say(text)
    assert response.reply.startswith("Done: webhook on") and secret not in str(response)
    conversation = await chat.chat.GetConversation(
        chat_pb2.GetConversationRequest(conversation_id=response.conversation_id), metadata=chat.alice
    )
    assert secret not in str(conversation) and "whsec_[hidden]" in conversation.conversation.messages[0].text

    async def published() -> list[object]:
        return chat.recorder.events("todo.chat.v1.ChatMessageHandled")

    [event] = await eventually(published)
    assert secret not in str(event.message)  # type: ignore[attr-defined]
    settings = await chat.notify.GetChannelSettings(notify_pb2.GetChannelSettingsRequest(), metadata=chat.alice)
    assert settings.settings.webhook.signing_secret_set and "I made a signing secret" not in response.reply
