"""The language model through Dapr's Conversation API, against a fake sidecar (the SDK's generated DaprServicer)
answering scripted replies: valid ones become intents, anything malformed, slow or failing falls back to the rules."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from dapr.proto.runtime.v1 import ai_pb2, dapr_pb2_grpc

from chat_svc.interpret.conversation import (
    ConversationInterpreter,
    ConversationSettings,
    InvalidReply,
    parse_reply,
)
from todo_contracts.chat.v1 import chat_pb2
from todo_contracts.task.v1 import task_pb2

ZONE = "Europe/Berlin"
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
VAGUE = "could you maybe jot down that I owe Sam lunch"
COMPONENT = "todo-llm"
TOKEN = "sidecar-api-token"


@dataclass
class FakeSidecar(dapr_pb2_grpc.DaprServicer):  # type: ignore[misc]  # generated, untyped
    """Answers ConverseAlpha2 with the next scripted reply (text, an error code, or a delay)."""

    replies: list[Any] = field(default_factory=list)
    requests: list[ai_pb2.ConversationRequestAlpha2] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    delay: float = 0.0

    async def ConverseAlpha2(
        self, request: ai_pb2.ConversationRequestAlpha2, context: Any
    ) -> ai_pb2.ConversationResponseAlpha2:
        self.requests.append(request)
        self.metadata.append(dict(context.invocation_metadata()))
        if self.delay:
            await asyncio.sleep(self.delay)
        reply = self.replies.pop(0) if self.replies else "{}"
        if isinstance(reply, grpc.StatusCode):
            await context.abort(reply, "the model is not reachable")
        return ai_pb2.ConversationResponseAlpha2(
            outputs=[
                ai_pb2.ConversationResultAlpha2(
                    choices=[ai_pb2.ConversationResultChoices(message=ai_pb2.ConversationResultMessage(content=reply))]
                )
            ]
        )


@pytest.fixture
async def sidecar() -> AsyncIterator[tuple[FakeSidecar, ConversationInterpreter]]:
    fake = FakeSidecar()
    server = grpc.aio.server()
    dapr_pb2_grpc.add_DaprServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    interpreter = ConversationInterpreter(
        ConversationSettings(COMPONENT, f"127.0.0.1:{port}", api_token=TOKEN, deadline_seconds=1.0)
    )
    try:
        yield fake, interpreter
    finally:
        await interpreter.close()
        await server.stop(0)


async def test_what_the_rules_read_surely_never_reaches_the_model(
    sidecar: tuple[FakeSidecar, ConversationInterpreter],
) -> None:
    fake, interpreter = sidecar
    intent = await interpreter.interpret("buy milk tomorrow at 5pm", ZONE, NOW)
    assert (intent.kind, intent.interpreter, intent.task.title) == (
        chat_pb2.INTENT_KIND_CREATE_TASK,
        "rules",
        "Buy milk",
    )
    assert fake.requests == []


async def test_a_valid_reply_becomes_the_intent_and_says_the_model_made_it(
    sidecar: tuple[FakeSidecar, ConversationInterpreter],
) -> None:
    fake, interpreter = sidecar
    reply = {
        "kind": "create_task",
        "title": "lunch for Sam",
        "due": "2026-12-04T12:30",
        "priority": "high",
        "tags": ["social", "social", "money"],
        "repeat": "FREQ=MONTHLY;BYMONTHDAY=4",
        "remind_minutes_before": [30],
    }
    fake.replies.append("```json\n" + json.dumps(reply) + "\n```")
    intent = await interpreter.interpret(VAGUE, ZONE, NOW)
    assert intent.interpreter == f"conversation/{COMPONENT}"
    assert intent.kind == chat_pb2.INTENT_KIND_CREATE_TASK
    assert intent.task.title == "Lunch for Sam"
    assert (intent.task.due.local_time, intent.task.due.time_zone) == ("2026-12-04T12:30:00", ZONE)
    assert intent.task.priority == task_pb2.PRIORITY_HIGH
    assert list(intent.task.tags) == ["social", "money"]
    assert intent.task.recurrence.rrule == "FREQ=MONTHLY;BYMONTHDAY=4"
    assert [r.before_due.seconds for r in intent.task.reminders] == [1800]
    # The call: the component, a system prompt with the schema and the user's zone, the user's words, the token.
    (request,) = fake.requests
    assert request.name == COMPONENT
    system, user = request.inputs[0].messages
    assert '"kind"' in system.of_system.content[0].text and ZONE in system.of_system.content[0].text
    assert user.of_user.content[0].text == VAGUE
    assert fake.metadata[0]["dapr-api-token"] == TOKEN


async def test_the_other_kinds_a_model_may_produce(sidecar: tuple[FakeSidecar, ConversationInterpreter]) -> None:
    fake, interpreter = sidecar
    fake.replies += [
        json.dumps({"kind": "complete_task", "target": "Lunch with Sam"}),
        json.dumps({"kind": "list_tasks", "query": "sam"}),
        json.dumps({"kind": "unclear", "question": "Do you want a task for that?"}),
    ]
    done = await interpreter.interpret(VAGUE, ZONE, NOW)
    assert (done.kind, done.target_query) == (chat_pb2.INTENT_KIND_COMPLETE_TASK, "lunch with sam")
    listing = await interpreter.interpret(VAGUE, ZONE, NOW)
    assert (listing.kind, listing.list_request.query) == (chat_pb2.INTENT_KIND_LIST_TASKS, "sam")
    unclear = await interpreter.interpret(VAGUE, ZONE, NOW)
    assert (unclear.kind, unclear.clarifying_question) == (
        chat_pb2.INTENT_KIND_UNSPECIFIED,
        "Do you want a task for that?",
    )


MALFORMED = [
    "Sure! I'll add that for you.",
    "[]",
    json.dumps({"kind": "drop_database"}),
    json.dumps({"kind": "delete_task", "target": "sam", "all_tasks": True}),  # a key its kind may not carry
    json.dumps({"kind": "delete_task", "target": ""}),
    json.dumps({"kind": "create_task"}),
    json.dumps({"kind": "create_task", "title": "x" * 201}),
    json.dumps({"kind": "create_task", "title": "lunch", "tags": ["Not A Tag!"]}),
    json.dumps({"kind": "create_task", "title": "lunch", "priority": "asap"}),
    json.dumps({"kind": "create_task", "title": "lunch", "due": "next friday"}),
    json.dumps({"kind": "create_task", "title": "lunch", "due": "2026-02-30T12:00"}),
    json.dumps({"kind": "create_task", "title": "lunch", "due": "9999-01-01T12:00"}),
    json.dumps({"kind": "create_task", "title": "lunch", "due": "2026-12-04T12:00", "repeat": "FREQ=SOMETIMES"}),
    json.dumps({"kind": "create_task", "title": "lunch", "repeat": "FREQ=DAILY"}),
    json.dumps({"kind": "create_task", "title": "lunch", "remind_minutes_before": [30]}),
    json.dumps({"kind": "create_task", "title": "lunch", "due": "2026-12-04T12:00", "remind_minutes_before": [-5]}),
    json.dumps({"kind": "create_task", "title": "lunch\u0000", "due": None}),
    json.dumps({"kind": "unclear", "question": 42}),
    "",
    "{" * 5000,
]


@pytest.mark.parametrize("reply", MALFORMED)
async def test_a_malformed_reply_falls_back_to_the_rules(
    sidecar: tuple[FakeSidecar, ConversationInterpreter], reply: str
) -> None:
    fake, interpreter = sidecar
    fake.replies.append(reply)
    intent = await interpreter.interpret(VAGUE, ZONE, NOW)
    assert intent.interpreter == "rules"
    assert intent == interpreter.rules.interpret(VAGUE, ZONE, NOW)
    assert len(fake.requests) == 1  # it was asked, and its answer was not used


async def test_a_slow_model_falls_back_to_the_rules_at_the_deadline(
    sidecar: tuple[FakeSidecar, ConversationInterpreter],
) -> None:
    fake, interpreter = sidecar
    fake.delay = 3.0  # the interpreter's deadline is 1 s
    fake.replies.append(json.dumps({"kind": "help"}))
    intent = await interpreter.interpret(VAGUE, ZONE, NOW)
    assert intent.interpreter == "rules"
    assert intent.kind == chat_pb2.INTENT_KIND_CREATE_TASK


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNIMPLEMENTED])
async def test_a_failing_sidecar_falls_back_to_the_rules(
    sidecar: tuple[FakeSidecar, ConversationInterpreter], code: grpc.StatusCode
) -> None:
    fake, interpreter = sidecar
    fake.replies.append(code)
    intent = await interpreter.interpret(VAGUE, ZONE, NOW)
    assert intent.interpreter == "rules"


async def test_no_sidecar_at_all_falls_back_to_the_rules() -> None:
    interpreter = ConversationInterpreter(ConversationSettings(COMPONENT, "127.0.0.1:9", deadline_seconds=1.0))
    try:
        assert (await interpreter.interpret(VAGUE, ZONE, NOW)).interpreter == "rules"
    finally:
        await interpreter.close()


def test_parse_reply_refuses_what_it_cannot_check() -> None:
    with pytest.raises(InvalidReply):
        parse_reply(json.dumps({"kind": "create_task", "title": "a", "tags": "social"}), ZONE, NOW)
    assert parse_reply('{"kind": "help"}', ZONE, NOW).kind == chat_pb2.INTENT_KIND_HELP


def test_the_settings_name_the_component_and_the_sidecar() -> None:
    assert ConversationSettings.from_env({}) is None
    chosen = ConversationSettings.from_env(
        {"TODO_DAPR_CONVERSATION": "openai", "DAPR_GRPC_PORT": "50009", "DAPR_API_TOKEN": "t"}
    )
    assert chosen == ConversationSettings("openai", "127.0.0.1:50009", api_token="t")
    with pytest.raises(SystemExit, match="DAPR_GRPC_PORT"):
        ConversationSettings.from_env({"TODO_DAPR_CONVERSATION": "openai", "DAPR_GRPC_PORT": "x"})
