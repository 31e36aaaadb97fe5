"""ChatService over gRPC: checks the input, interprets, lets the assistant act, stores the turn and its event."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Protocol

from chat_svc import domain
from chat_svc.acting import Assistant, Situation
from chat_svc.storage import ConversationRepository, ConversationState, StoredMessage
from todo_contracts.chat.v1 import chat_pb2, chat_pb2_grpc
from todo_contracts.chat.v1 import events_pb2 as chat_events
from todo_contracts.ids import new_id
from todo_kit import zoned
from todo_kit.auth import current_user
from todo_kit.db import Database
from todo_kit.errors import NotFound, Violations, shown
from todo_kit.messaging import Outbox
from todo_kit.server import ServicerContext

log = logging.getLogger(__name__)

APP_ID = "chat_svc"
Context = ServicerContext


class MessageInterpreter(Protocol):
    """What the chat needs of an interpreter (chat_svc.interpret.Interpreter has this shape).

    interpret() never raises. The rules' is deterministic and fast (meant to
    take under 10 ms for a message of MAX_TEXT_CHARS), so it runs on the event
    loop and returns the intent; a language model's
    (chat_svc.interpret.conversation) is a coroutine that awaits the model
    with its own deadline.
    """

    name: str

    def interpret(
        self, text: str, time_zone: str, reference_time: datetime
    ) -> chat_pb2.Intent | Awaitable[chat_pb2.Intent]: ...


class ChatServicer(chat_pb2_grpc.ChatServiceServicer):
    """Every ChatService RPC, acting as the authenticated user."""

    def __init__(self, db: Database, outbox: Outbox, assistant: Assistant, interpreter: MessageInterpreter) -> None:
        self.db = db
        self.outbox = outbox
        self.assistant = assistant
        self.interpreter = interpreter

    async def _interpret(self, text: str, time_zone: str, reference_time: datetime) -> chat_pb2.Intent:
        answered = self.interpreter.interpret(text, time_zone, reference_time)
        intent = await answered if inspect.isawaitable(answered) else answered
        if not intent.interpreter:
            intent.interpreter = self.interpreter.name
        return intent

    async def SendMessage(self, request: chat_pb2.SendMessageRequest, context: Context) -> chat_pb2.SendMessageResponse:
        user = current_user()
        violations = Violations()
        text = domain.checked_text(request.text, violations)
        domain.check_zone(request.time_zone, violations)
        conversation_id = domain.checked_conversation_id(request.conversation_id, violations)
        domain.check_request_id(request.client_request_id, violations)
        violations.raise_if_any()
        zone = zoned.zone_named(request.time_zone)
        request_id = request.client_request_id
        now = zoned.now_utc()
        intent = await self._interpret(text, request.time_zone, now)
        async with self.db.transaction() as conn:
            repo = ConversationRepository(conn)
            if request_id:
                # A retry waits for the first call with its id, then gets that call's response.
                await repo.lock_request(user, request_id)
                answered = await repo.answered(user, request_id)
                if answered is not None:
                    return chat_pb2.SendMessageResponse.FromString(answered)
            state: ConversationState | None
            if conversation_id:
                state = await repo.lock(user, conversation_id)
                if state is None:
                    raise NotFound(f"conversation {shown(conversation_id)} not found")
            else:
                state = await repo.create(user, new_id(), now)
            message_id = new_id()
            situation = Situation(zone, now, state.memory, domain.task_request_id(request_id, message_id))
            turn = await self.assistant.respond(intent, text, situation)
            # What is answered, stored and published never holds a signing secret the user typed.
            shown_intent = domain.intent_without_secrets(intent)
            shown_text = domain.without_secrets(text)
            response = chat_pb2.SendMessageResponse(
                conversation_id=state.conversation_id,
                reply=turn.reply,
                actions=turn.actions,
                needs_clarification=turn.needs_clarification,
                intent=shown_intent,
            )
            replied = zoned.now_utc()
            await repo.save(
                state,
                [
                    StoredMessage(message_id, chat_pb2.CHAT_ROLE_USER, shown_text, [], now),
                    StoredMessage(new_id(), chat_pb2.CHAT_ROLE_ASSISTANT, turn.reply, turn.actions, replied),
                ],
                replied,
            )
            if request_id:
                await repo.remember_answer(user, request_id, response.SerializeToString())
            event = chat_events.ChatMessageHandled(
                user_id=user,
                conversation_id=state.conversation_id,
                text=shown_text,
                intent=shown_intent,
                reply=turn.reply,
                actions=turn.actions,
            )
            await self.outbox.add_event(conn, event, subject=state.conversation_id)
        return response

    async def Interpret(self, request: chat_pb2.InterpretRequest, context: Context) -> chat_pb2.InterpretResponse:
        violations = Violations()
        text = domain.checked_text(request.text, violations)
        domain.check_zone(request.time_zone, violations)
        reference = (
            request.reference_time.ToDatetime(tzinfo=UTC) if request.HasField("reference_time") else zoned.now_utc()
        )
        domain.check_reference_time(reference, violations)
        violations.raise_if_any()
        return chat_pb2.InterpretResponse(intent=await self._interpret(text, request.time_zone, reference))

    async def GetConversation(
        self, request: chat_pb2.GetConversationRequest, context: Context
    ) -> chat_pb2.GetConversationResponse:
        user = current_user()
        violations = Violations()
        conversation_id = domain.checked_conversation_id(request.conversation_id, violations, required=True)
        violations.raise_if_any()
        async with self.db.engine.connect() as conn:
            found = await ConversationRepository(conn).conversation(user, conversation_id, domain.MESSAGES_RETURNED)
        if found is None:
            raise NotFound(f"conversation {shown(conversation_id)} not found")
        return chat_pb2.GetConversationResponse(conversation=found)
