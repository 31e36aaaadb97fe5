"""SendMessage end to end: each kind of intent carried out through the real services, as the user who sent it."""

from __future__ import annotations

from datetime import timedelta

from chat_fixtures import Chat, command, create_intent, in_days
from google.protobuf import duration_pb2

from todo_contracts.chat.v1 import chat_pb2
from todo_contracts.reminder.v1 import reminder_pb2
from todo_contracts.task.v1 import task_pb2
from todo_kit import zoned
from todo_kit.testing import eventually

K = chat_pb2
BERLIN = "Europe/Berlin"


def _minutes(n: int) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromTimedelta(timedelta(minutes=n))
    return value


async def test_a_task_created_by_chat_is_listed_with_its_due_instant_reminder_and_rule(chat: Chat) -> None:
    due = in_days(10, 9, BERLIN)
    chat.teach(
        "remind me to pay rent",
        create_intent(
            "Pay rent", due=due, priority=task_pb2.PRIORITY_HIGH, tags=["finance"],
            reminders=[task_pb2.ReminderRule(before_due=_minutes(30))],
            recurrence=task_pb2.Recurrence(rrule="FREQ=MONTHLY"),
        ),
    )  # fmt: skip
    response = await chat.say("remind me to pay rent")
    [task] = await chat.listed(query="rent")
    expected = zoned.from_proto(due).instant
    assert task.title == "Pay rent" and task.due.instant.ToDatetime().replace(tzinfo=expected.tzinfo) == expected
    assert response.actions[0].kind == K.INTENT_KIND_CREATE_TASK and response.actions[0].task.task_id == task.task_id
    assert response.reply.startswith("Added 'Pay rent', due ")
    assert "09:00" in response.reply and "repeats monthly" in response.reply
    assert "I'll remind you at 08:30" in response.reply and not response.needs_clarification
    assert response.intent.interpreter == "fake" and response.conversation_id

    async def reminder_planned() -> list[reminder_pb2.Reminder]:
        listed = await chat.reminders.ListReminders(
            reminder_pb2.ListRemindersRequest(task_id=task.task_id), metadata=chat.alice
        )
        return list(listed.reminders)

    [reminder] = await eventually(reminder_planned)
    assert reminder.fire_time.ToDatetime() == task.due.instant.ToDatetime() - timedelta(minutes=30)


async def test_completing_a_monthly_task_by_chat_makes_the_next_occurrence_appear(chat: Chat) -> None:
    first = await chat.add(
        "Renew the car insurance", due=in_days(3, 8, BERLIN), recurrence=task_pb2.Recurrence(rrule="FREQ=MONTHLY")
    )
    chat.teach("I renewed the insurance", command(K.INTENT_KIND_COMPLETE_TASK, "insurance"))
    response = await chat.say("I renewed the insurance")
    assert response.reply.startswith("Completed 'Renew the car insurance'")
    assert (await chat.get(first.task_id)).status == task_pb2.TASK_STATUS_COMPLETED

    async def next_one() -> list[task_pb2.Task]:
        return [t for t in await chat.listed(series_id=first.recurrence.series_id) if t.task_id != first.task_id]

    [second] = await eventually(next_one)
    first_local = zoned.parse_local(first.due.local_time)
    assert zoned.parse_local(second.due.local_time).day == first_local.day
    assert second.status == task_pb2.TASK_STATUS_OPEN and second.recurrence.occurrence_index == 2


async def test_a_list_shows_one_page_and_says_how_many_more(chat: Chat) -> None:
    for n in range(12):
        await chat.add(f"Errand {n:02d}", tags=["errands"])
    await chat.add("Something else")
    chat.teach("list my errands", chat_pb2.Intent(kind=K.INTENT_KIND_LIST_TASKS, query="errand"))
    response = await chat.say("list my errands")
    [action] = response.actions
    assert action.kind == K.INTENT_KIND_LIST_TASKS and len(action.tasks) == 10
    assert all(t.title.startswith("Errand") for t in action.tasks)
    assert "Found 12 tasks" in response.reply and response.reply.endswith("and 2 more.")
