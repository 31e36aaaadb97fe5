"""Server wiring: the chat service as a unit any runtime can host."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import grpc

from chat_svc import storage
from chat_svc.acting import Assistant
from chat_svc.handlers import APP_ID, ChatServicer, MessageInterpreter
from todo_contracts.chat.v1 import chat_pb2, chat_pb2_grpc
from todo_kit.runtime.port import ServiceUnit, UnitContext, UnitWiring

log = logging.getLogger(__name__)

SERVICE_NAME = chat_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name


class _RulesWhenFirstUsed:
    """The rules interpreter (chat_svc.interpret), imported at its first message rather than at start-up.

    Where the package is not installed, every message gets a clarifying
    question instead, so nothing is ever done on a guess.
    """

    name = "rules"

    def __init__(self) -> None:
        self._rules: MessageInterpreter | None = None

    def interpret(self, text: str, time_zone: str, reference_time: datetime) -> chat_pb2.Intent:
        if self._rules is None:
            self._rules = _rules_or_none()
        return self._rules.interpret(text, time_zone, reference_time)


class _NothingUnderstood:
    name = "none"

    def interpret(self, text: str, time_zone: str, reference_time: datetime) -> chat_pb2.Intent:
        return chat_pb2.Intent(
            kind=chat_pb2.INTENT_KIND_UNSPECIFIED,
            clarifying_question="Sorry, I can't understand messages on this server yet.",
            interpreter=self.name,
        )


def _rules_or_none() -> MessageInterpreter:
    try:
        from chat_svc.interpret import RulesInterpreter  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        log.error("chat_svc.interpret is not installed: the chat understands no message")
        return _NothingUnderstood()
    rules: MessageInterpreter = RulesInterpreter()
    return rules


def build_unit(*, interpreter: MessageInterpreter | None = None) -> ServiceUnit:
    """The chat unit; the interpreter defaults to the offline rules (chat_svc.interpret.RulesInterpreter).

    Tests pass their own interpreter here. A language-model interpreter would
    come in the same way, behind the same protocol, once a runtime offers one.
    """

    async def register(server: grpc.aio.Server, context: UnitContext) -> UnitWiring:
        """Adds ChatService; prunes the responses kept for retries."""
        servicer = ChatServicer(
            context.db, context.outbox, Assistant(context.runtime), interpreter or _RulesWhenFirstUsed()
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
