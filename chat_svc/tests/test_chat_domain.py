"""The chat's decisions, without I/O: input, references, answers, updates, the memory it stores."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chat_svc import domain
from chat_svc.domain import AnswerOutcome, Memory, PendingQuestion, QuestionKind
from todo_contracts.chat.v1 import chat_pb2
from todo_contracts.reminder.v1 import reminder_pb2
from todo_contracts.task.v1 import task_pb2
from todo_kit.errors import Violations

K = chat_pb2
IDS = ["a", "b", "c"]


def _answer(**fields: object) -> chat_pb2.Intent:
    return chat_pb2.Intent(kind=K.INTENT_KIND_ANSWER, **fields)  # type: ignore[arg-type]


def test_text_is_stripped_and_must_be_1_to_4000_characters() -> None:
    for text, ok in (("  hi  ", True), ("", False), (" \n ", False), ("x" * 4000, True), ("x" * 4001, False)):
        violations = Violations()
        domain.checked_text(text, violations)
        assert (violations.items == []) == ok, text[:10]
    violations = Violations()
    assert domain.checked_text("  add milk \n", violations) == "add milk"


def test_zones_are_checked_like_the_task_services() -> None:
    for zone, ok in (("Europe/Berlin", True), ("UTC", True), ("", False), ("Mars/Base", False), ("Factory", False)):
        violations = Violations()
        domain.check_zone(zone, violations)
        assert (violations.items == []) == ok, zone
        assert all(field == "time_zone" for field, _ in violations.items)


def test_the_task_request_id_is_stable_per_chat_request_id_and_within_the_task_services_limit() -> None:
    long_id = "r" * 128
    assert domain.task_request_id(long_id, "m1") == domain.task_request_id(long_id, "m2")
    assert len(domain.task_request_id(long_id, "m1")) <= 128
    assert domain.task_request_id("a", "m1") != domain.task_request_id("b", "m1")
    assert domain.task_request_id("", "m1") != domain.task_request_id("", "m2")


def test_it_is_the_only_last_task_and_asks_among_several() -> None:
    it = chat_pb2.Intent(kind=K.INTENT_KIND_COMPLETE_TASK, refers_to_previous=True)
    assert domain.resolve_reference(it, ["a"]).task_id == "a"
    several = domain.resolve_reference(it, [str(n) for n in range(8)])
    assert several.task_id == "" and several.choose_from == tuple(str(n) for n in range(5))
    assert domain.resolve_reference(it, []) == domain.Reference()


def test_the_second_one_is_the_second_of_the_last_list() -> None:
    second = chat_pb2.Intent(kind=K.INTENT_KIND_DELETE_TASK, refers_to_previous=True, choice=2)
    assert domain.resolve_reference(second, IDS).task_id == "b"
    assert domain.resolve_reference(second, ["a"]).out_of_range


@pytest.mark.parametrize(
    ("intent", "text", "outcome", "task_id"),
    [
        (_answer(choice=2), "the second one", AnswerOutcome.PICKED, "b"),
        (chat_pb2.Intent(), "3", AnswerOutcome.PICKED, "c"),
        (chat_pb2.Intent(), " #1. ", AnswerOutcome.PICKED, "a"),
        (_answer(choice=4), "the fourth", AnswerOutcome.INVALID, ""),
        (chat_pb2.Intent(), "0", AnswerOutcome.INVALID, ""),
        (_answer(confirmation=K.CONFIRMATION_NO), "none of them", AnswerOutcome.DECLINED, ""),
        (chat_pb2.Intent(kind=K.INTENT_KIND_HELP), "help", AnswerOutcome.NEW_COMMAND, ""),
        (chat_pb2.Intent(), "whatever", AnswerOutcome.NEW_COMMAND, ""),
    ],
)
def test_answers_to_a_which_one_question(
    intent: chat_pb2.Intent, text: str, outcome: AnswerOutcome, task_id: str
) -> None:
    pending = PendingQuestion(QuestionKind.CHOICE, chat_pb2.Intent(kind=K.INTENT_KIND_COMPLETE_TASK), IDS)
    answer = domain.read_answer(intent, text, pending)
    assert (answer.outcome, answer.task_id) == (outcome, task_id)


@pytest.mark.parametrize(
    ("intent", "outcome"),
    [
        (_answer(confirmation=K.CONFIRMATION_YES), AnswerOutcome.CONFIRMED),
        (_answer(confirmation=K.CONFIRMATION_NO), AnswerOutcome.DECLINED),
        (_answer(choice=1), AnswerOutcome.DECLINED),
        (chat_pb2.Intent(), AnswerOutcome.DECLINED),
        (chat_pb2.Intent(kind=K.INTENT_KIND_LIST_TASKS), AnswerOutcome.NEW_COMMAND),
    ],
)
def test_only_yes_confirms(intent: chat_pb2.Intent, outcome: AnswerOutcome) -> None:
    pending = PendingQuestion(QuestionKind.CONFIRM, chat_pb2.Intent(kind=K.INTENT_KIND_DELETE_TASK), IDS)
    assert domain.read_answer(intent, "yes", pending).outcome is outcome


def test_a_pending_question_survives_storage_and_a_damaged_one_is_dropped() -> None:
    intent = chat_pb2.Intent(kind=K.INTENT_KIND_UPDATE_TASK, target_query="rent", changed_fields=["title"])
    question = PendingQuestion(QuestionKind.CHOICE, intent, IDS)
    assert PendingQuestion.from_json(question.to_json()) == question
    assert PendingQuestion.from_json({"kind": "choice", "intent": "%%%", "task_ids": []}) is None
    assert PendingQuestion.from_json({"kind": "later"}) is None
    assert PendingQuestion.from_json(None) is None


def test_the_memory_keeps_the_last_ten_tasks_and_ignores_an_empty_list() -> None:
    memory = Memory()
    memory.remember([str(n) for n in range(15)])
    assert memory.last_task_ids == [str(n) for n in range(10)]
    memory.remember([])
    assert len(memory.last_task_ids) == 10


def test_commands_search_the_statuses_they_act_on() -> None:
    open_, done = task_pb2.TASK_STATUS_OPEN, task_pb2.TASK_STATUS_COMPLETED
    assert domain.search_statuses(K.INTENT_KIND_COMPLETE_TASK) == [[open_]]
    assert domain.search_statuses(K.INTENT_KIND_REOPEN_TASK) == [[done]]
    assert domain.search_statuses(K.INTENT_KIND_DELETE_TASK) == [[open_], [done]]
    assert domain.search_statuses(K.INTENT_KIND_UPDATE_TASK) == [[open_], [done]]


def test_tags_plus_adds_to_the_current_tags_and_the_update_expects_the_resolved_version() -> None:
    current = task_pb2.Task(task_id="t1", title="Soccer", tags=["sport", "kids"], version=7)
    intent = chat_pb2.Intent(
        kind=K.INTENT_KIND_UPDATE_TASK,
        task=task_pb2.Task(tags=["kids", "weekend"], priority=task_pb2.PRIORITY_HIGH),
        changed_fields=["tags+", "priority"],
    )
    request = domain.update_request(intent, current)
    assert list(request.task.tags) == ["sport", "kids", "weekend"]
    assert list(request.update_mask.paths) == ["tags", "priority"]
    assert request.expected_version == 7 and request.task.task_id == "t1"
    replaced = domain.update_request(
        chat_pb2.Intent(task=task_pb2.Task(tags=["new"]), changed_fields=["tags"]), current
    )
    assert list(replaced.task.tags) == ["new"]


def test_an_all_command_lists_open_tasks_only_up_to_its_limit() -> None:
    intent = chat_pb2.Intent(kind=K.INTENT_KIND_DELETE_TASK, all_tasks=True, target_query="errands")
    request = domain.all_tasks_request(intent)
    assert list(request.statuses) == [task_pb2.TASK_STATUS_OPEN] and request.query == "errands"
    assert request.page_size == domain.ALL_TASKS_MAX


def test_the_newest_fired_reminder_is_chosen() -> None:
    def reminder(rid: str, fired: int, state: int = reminder_pb2.REMINDER_STATE_FIRED) -> reminder_pb2.Reminder:
        item = reminder_pb2.Reminder(reminder_id=rid, state=state)  # type: ignore[arg-type]
        item.fired_time.FromDatetime(datetime.fromtimestamp(fired, UTC))
        return item

    found = domain.newest_fired(
        [reminder("old", 100), reminder("new", 300), reminder("cancelled", 500, reminder_pb2.REMINDER_STATE_CANCELLED)]
    )
    assert found is not None and found.reminder_id == "new"
    assert domain.newest_fired([]) is None
