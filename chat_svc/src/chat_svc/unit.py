"""Server wiring: the chat service as a unit any runtime can host."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import grpc

from chat_svc import storage
from chat_svc.acting import Assistant
from chat_svc.handlers import APP_ID, ChatServicer, MessageInterpreter
from chat_svc.interpret import RulesInterpreter
from todo_contracts.chat.v1 import chat_pb2, chat_pb2_grpc
from todo_kit.runtime.port import ServiceUnit, UnitContext, UnitWiring

SERVICE_NAME = chat_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name


def build_unit(*, interpreter: MessageInterpreter | None = None) -> ServiceUnit:
    """The chat unit; the interpreter defaults to the offline rules (chat_svc.interpret.RulesInterpreter).

    Tests pass their own interpreter here. A language-model interpreter would
    come in the same way, behind the same protocol, once a runtime offers one.
    """

    async def register(server: grpc.aio.Server, context: UnitContext) -> UnitWiring:
        """Adds ChatService; prunes the responses kept for retries."""
        servicer = ChatServicer(
            context.db, context.outbox, Assistant(context.runtime), interpreter or RulesInterpreter()
        )
        chat_pb2_grpc.add_ChatServiceServicer_to_server(servicer, server)

        async def prune_answered_requests(before: datetime) -> int:
            return await storage.prune_answered_requests(context.db, before)

        return UnitWiring(pruners={"answered_requests": prune_answered_requests})

    return ServiceUnit(
        app_id=APP_ID,
        database="todo_chat",
        migrations=Path(__file__).parent / "migrations",
        service_names=(SERVICE_NAME,),
        register=register,
    )


unit = build_unit()
