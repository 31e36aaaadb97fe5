"""Server wiring: the chat service as a unit any runtime can host."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

import grpc

from chat_svc import storage
from chat_svc.acting import Assistant
from chat_svc.handlers import APP_ID, ChatServicer, MessageInterpreter
from chat_svc.interpret import RulesInterpreter
from chat_svc.interpret.conversation import ConversationInterpreter, ConversationSettings
from todo_contracts.chat.v1 import chat_pb2, chat_pb2_grpc
from todo_kit.runtime.port import ServiceUnit, UnitContext, UnitWiring

SERVICE_NAME = chat_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name


def build_unit(*, interpreter: MessageInterpreter | None = None) -> ServiceUnit:
    """The chat unit; the interpreter defaults to the offline rules (chat_svc.interpret.RulesInterpreter).

    Tests pass their own interpreter here. Under the Dapr runtime with
    TODO_DAPR_CONVERSATION set, a language model through Dapr's Conversation API
    helps the rules (chat_svc.interpret.conversation).
    """

    async def register(server: grpc.aio.Server, context: UnitContext) -> UnitWiring:
        """Adds ChatService; prunes the responses kept for retries."""
        chosen: MessageInterpreter = interpreter or RulesInterpreter()
        on_stop: list[Callable[[], Awaitable[None]]] = []
        conversation = ConversationSettings.from_env(os.environ) if context.settings.runtime == "dapr" else None
        if interpreter is None and conversation is not None:
            model = ConversationInterpreter(conversation)
            chosen = model
            on_stop.append(model.close)
        servicer = ChatServicer(context.db, context.outbox, Assistant(context.runtime), chosen)
        chat_pb2_grpc.add_ChatServiceServicer_to_server(servicer, server)

        async def prune_answered_requests(before: datetime) -> int:
            return await storage.prune_answered_requests(context.db, before)

        return UnitWiring(pruners={"answered_requests": prune_answered_requests}, on_stop=on_stop)

    return ServiceUnit(
        app_id=APP_ID,
        database="todo_chat",
        migrations=Path(__file__).parent / "migrations",
        service_names=(SERVICE_NAME,),
        register=register,
    )


unit = build_unit()
