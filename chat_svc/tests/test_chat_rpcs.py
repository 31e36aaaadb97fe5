"""ChatService's contract: input checks, idempotent retries, isolation between users, conversations, Interpret."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import grpc
import pytest
import sqlalchemy as sa
from chat_fixtures import Chat, command, create_intent
from google.protobuf import timestamp_pb2

from chat_svc import storage
from todo_contracts.chat.v1 import chat_pb2
from todo_contracts.task.v1 import task_pb2
from todo_kit.testing import violated_fields

K = chat_pb2


async def _refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


@pytest.mark.parametrize(
    ("text", "zone", "field"),
    [
        ("", "Europe/Berlin", "text"),
        ("   \n\t ", "Europe/Berlin", "text"),
        ("x" * 4001, "Europe/Berlin", "text"),
        ("help", "", "time_zone"),
        ("help", "Mars/Olympus", "time_zone"),
        ("help", "localtime", "time_zone"),
    ],
)
async def test_bad_text_or_zone_is_invalid_argument_and_nothing_is_stored(
    chat: Chat, text: str, zone: str, field: str
) -> None:
    chat.teach(text, create_intent("Never made"))
    for call in (
        chat.chat.SendMessage(chat_pb2.SendMessageRequest(text=text, time_zone=zone), metadata=chat.alice),
        chat.chat.Interpret(chat_pb2.InterpretRequest(text=text, time_zone=zone), metadata=chat.alice),
    ):
        error = await _refused(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and violated_fields(error) == [field]
    assert chat.interpreter.seen == [] and await chat.listed() == []


async def test_4000_characters_after_stripping_are_accepted(chat: Chat) -> None:
    text = "y" * 4000
    response = await chat.say("  " + text + "  ")
    assert response.needs_clarification and chat.interpreter.seen[0][0] == text


async def test_bad_ids_are_invalid_argument(chat: Chat) -> None:
    for request, field in (
        (chat_pb2.SendMessageRequest(text="hi", time_zone="UTC", conversation_id="nope"), "conversation_id"),
        (chat_pb2.SendMessageRequest(text="hi", time_zone="UTC", client_request_id="r" * 129), "client_request_id"),
    ):
        error = await _refused(chat.chat.SendMessage(request, metadata=chat.alice))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and violated_fields(error) == [field]
    for conversation_id in ("", "not-an-id"):
        error = await _refused(
            chat.chat.GetConversation(
                chat_pb2.GetConversationRequest(conversation_id=conversation_id), metadata=chat.alice
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and violated_fields(error) == ["conversation_id"]


async def test_a_retry_with_the_same_client_request_id_acts_once_and_gets_the_same_response(chat: Chat) -> None:
    chat.teach("add milk", create_intent("Buy milk"))
    first = await chat.say("add milk", client_request_id="msg-1")
    again = await chat.say("add milk", client_request_id="msg-1")
    at_once = await asyncio.gather(*(chat.say("add milk", client_request_id="msg-2") for _ in range(4)))
    assert again == first
    assert all(r == at_once[0] for r in at_once)
    assert len(await chat.listed()) == 2
    conversation = await chat.chat.GetConversation(
        chat_pb2.GetConversationRequest(conversation_id=first.conversation_id), metadata=chat.alice
    )
    assert len(conversation.conversation.messages) == 2  # the retry was not stored again
    # The same id of another user is another request.
    await chat.say("add milk", who=chat.bob, client_request_id="msg-1")
    assert len(await chat.listed(who=chat.bob)) == 1


async def test_another_users_conversation_is_not_found(chat: Chat) -> None:
    chat.teach("add milk", create_intent("Buy milk"))
    mine = await chat.say("add milk")
    for call in (
        chat.chat.GetConversation(
            chat_pb2.GetConversationRequest(conversation_id=mine.conversation_id), metadata=chat.bob
        ),
        chat.chat.SendMessage(
            chat_pb2.SendMessageRequest(text="add milk", time_zone="UTC", conversation_id=mine.conversation_id),
            metadata=chat.bob,
        ),
        chat.chat.GetConversation(
            chat_pb2.GetConversationRequest(conversation_id="01000000-0000-7000-8000-000000000000"), metadata=chat.alice
        ),
    ):
        error = await _refused(call)
        assert error.code() == grpc.StatusCode.NOT_FOUND
    assert await chat.listed(who=chat.bob) == []


async def test_the_chat_never_acts_on_another_users_task(chat: Chat) -> None:
    alices = await chat.add("Pay rent")
    chat.teach("I paid the rent", command(K.INTENT_KIND_COMPLETE_TASK, "rent"))
    chat.teach("delete that task", command(K.INTENT_KIND_DELETE_TASK, target_task_id=alices.task_id))
    paid = await chat.say("I paid the rent", who=chat.bob)
    deleted = await chat.say("delete that task", who=chat.bob)
    assert paid.reply == "I couldn't find a task matching 'rent'." and not deleted.actions
    after = await chat.get(alices.task_id)
    assert after.status == task_pb2.TASK_STATUS_OPEN and after.version == alices.version


async def test_a_conversation_holds_its_messages_oldest_first_with_the_actions(chat: Chat) -> None:
    chat.teach("add milk", create_intent("Buy milk"))
    chat.teach("help", chat_pb2.Intent(kind=K.INTENT_KIND_HELP))
    first = await chat.say("add milk")
    second = await chat.say("help", conversation_id=first.conversation_id)
    assert second.conversation_id == first.conversation_id
    conversation = (
        await chat.chat.GetConversation(
            chat_pb2.GetConversationRequest(conversation_id=first.conversation_id), metadata=chat.alice
        )
    ).conversation
    assert [(m.role, m.text) for m in conversation.messages] == [
        (K.CHAT_ROLE_USER, "add milk"),
        (K.CHAT_ROLE_ASSISTANT, first.reply),
        (K.CHAT_ROLE_USER, "help"),
        (K.CHAT_ROLE_ASSISTANT, second.reply),
    ]
    assert list(conversation.messages[1].actions) == list(first.actions) and conversation.user_id == "alice"
    times = [m.create_time.ToDatetime() for m in conversation.messages]
    assert times == sorted(times) and len({m.message_id for m in conversation.messages}) == 4
    fresh = await chat.say("help")
    assert fresh.conversation_id != first.conversation_id


async def test_interpret_returns_the_intent_for_the_reference_time_without_acting(chat: Chat) -> None:
    chat.teach("add milk", create_intent("Buy milk"))
    reference = timestamp_pb2.Timestamp(seconds=1_800_000_000)
    response = await chat.chat.Interpret(
        chat_pb2.InterpretRequest(text="add milk", time_zone="Asia/Tokyo", reference_time=reference),
        metadata=chat.alice,
    )
    assert response.intent.kind == K.INTENT_KIND_CREATE_TASK and response.intent.task.title == "Buy milk"
    assert response.intent.interpreter == "fake"
    assert chat.interpreter.seen[-1] == ("add milk", "Asia/Tokyo", datetime.fromtimestamp(1_800_000_000, UTC))
    await chat.chat.Interpret(chat_pb2.InterpretRequest(text="add milk", time_zone="UTC"), metadata=chat.alice)
    assert abs((chat.interpreter.seen[-1][2] - datetime.now(UTC)).total_seconds()) < 60
    assert await chat.listed() == []


async def test_interpret_refuses_a_reference_time_whose_dates_cannot_be_written(chat: Chat) -> None:
    """Year 1 in a zone ahead of UTC (found by the fuzzer) was an INTERNAL error."""
    for seconds in (-62_135_596_800, 253_402_300_000 - 86_400):  # 0001-01-01 and the last day of 9999
        error = await _refused(
            chat.chat.Interpret(
                chat_pb2.InterpretRequest(
                    text="m", time_zone="Pacific/Kiritimati", reference_time=timestamp_pb2.Timestamp(seconds=seconds)
                ),
                metadata=chat.alice,
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violated_fields(error) == ["reference_time"]


async def test_calls_without_a_token_are_unauthenticated(chat: Chat) -> None:
    error = await _refused(chat.chat.SendMessage(chat_pb2.SendMessageRequest(text="help", time_zone="UTC")))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_retry_after_the_response_was_lost_still_creates_one_task(chat: Chat) -> None:
    chat.teach("add milk", create_intent("Buy milk"))
    first = await chat.say("add milk", client_request_id="lost-1")
    # As if the chat had acted and then crashed before storing its response.
    async with chat.host.databases["todo_chat"].transaction() as conn:
        await conn.execute(sa.delete(storage.answered_requests))
    again = await chat.say("add milk", client_request_id="lost-1")
    assert [t.task_id for t in await chat.listed()] == [first.actions[0].task.task_id]
    assert again.actions[0].task.task_id == first.actions[0].task.task_id
