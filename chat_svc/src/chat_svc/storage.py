"""The chat's own tables: conversations (with their memory), their messages, and answered request ids."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from chat_svc.domain import Memory, PendingQuestion
from todo_contracts.chat.v1 import chat_pb2
from todo_kit.db import Database, delete_in_batches

metadata = sa.MetaData()

conversations = sa.Table(
    "conversations",
    metadata,
    sa.Column("conversation_id", pg.UUID(as_uuid=False), primary_key=True),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("message_count", sa.BigInteger, nullable=False),
    sa.Column("pending", pg.JSONB),
    sa.Column("last_task_ids", pg.ARRAY(sa.Text), nullable=False),
)
messages = sa.Table(
    "messages",
    metadata,
    sa.Column("conversation_id", pg.UUID(as_uuid=False), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("message_id", pg.UUID(as_uuid=False), nullable=False, unique=True),
    sa.Column("role", sa.SmallInteger, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("actions", sa.LargeBinary, nullable=False),  # a ChatMessage holding only the actions
    sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
)
answered_requests = sa.Table(
    "answered_requests",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("client_request_id", sa.Text, primary_key=True),
    sa.Column("response", sa.LargeBinary, nullable=False),  # the SendMessageResponse
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)


@dataclass
class ConversationState:
    """A conversation as the next message finds it."""

    conversation_id: str
    create_time: datetime
    message_count: int
    memory: Memory


@dataclass
class StoredMessage:
    """One message to store."""

    message_id: str
    role: int
    text: str
    actions: list[chat_pb2.ChatAction]
    create_time: datetime


class ConversationRepository:
    """Reads and writes conversations inside the caller's transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def lock_request(self, user_id: str, client_request_id: str) -> None:
        """Makes calls with the same (user, request id) take turns until this transaction ends."""
        key = sa.func.hashtextextended(user_id + "\x1f" + client_request_id, 0)
        await self.conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))

    async def answered(self, user_id: str, client_request_id: str) -> bytes | None:
        """The stored response to an earlier call with this request id, if any."""
        result: bytes | None = await self.conn.scalar(
            sa.select(answered_requests.c.response).where(
                answered_requests.c.user_id == user_id, answered_requests.c.client_request_id == client_request_id
            )
        )
        return result

    async def remember_answer(self, user_id: str, client_request_id: str, response: bytes) -> None:
        """Stores the response a retry with this request id gets."""
        await self.conn.execute(
            pg.insert(answered_requests)
            .values(user_id=user_id, client_request_id=client_request_id, response=response)
            .on_conflict_do_nothing()
        )

    async def create(self, user_id: str, conversation_id: str, now: datetime) -> ConversationState:
        """A new, empty conversation (its row is this transaction's until it ends)."""
        await self.conn.execute(
            sa.insert(conversations).values(
                conversation_id=conversation_id, user_id=user_id, create_time=now, update_time=now,
                message_count=0, pending=None, last_task_ids=[],
            )
        )  # fmt: skip
        return ConversationState(conversation_id, now, 0, Memory())

    async def lock(self, user_id: str, conversation_id: str) -> ConversationState | None:
        """The user's conversation, locked until the transaction ends; None if unknown or another user's.

        Two messages to one conversation take turns here, so neither loses the
        pending question the other sets or answers.
        """
        row = (
            await self.conn.execute(
                sa.select(conversations)
                .where(conversations.c.conversation_id == conversation_id, conversations.c.user_id == user_id)
                .with_for_update()
            )
        ).first()
        if row is None:
            return None
        memory = Memory(PendingQuestion.from_json(row.pending), list(row.last_task_ids))
        return ConversationState(row.conversation_id, row.create_time, row.message_count, memory)

    async def save(self, state: ConversationState, added: list[StoredMessage], now: datetime) -> None:
        """Appends messages and stores the conversation's memory."""
        rows: list[dict[str, Any]] = []
        for offset, message in enumerate(added, start=1):
            rows.append(
                {
                    "conversation_id": state.conversation_id,
                    "seq": state.message_count + offset,
                    "message_id": message.message_id,
                    "role": message.role,
                    "text": message.text,
                    "actions": chat_pb2.ChatMessage(actions=message.actions).SerializeToString(),
                    "create_time": message.create_time,
                }
            )
        if rows:
            await self.conn.execute(sa.insert(messages), rows)
        memory = state.memory
        await self.conn.execute(
            sa.update(conversations)
            .where(conversations.c.conversation_id == state.conversation_id)
            .values(
                message_count=state.message_count + len(rows),
                update_time=now,
                pending=memory.pending.to_json() if memory.pending is not None else None,
                last_task_ids=list(memory.last_task_ids),
            )
        )
        state.message_count += len(rows)

    async def conversation(self, user_id: str, conversation_id: str, limit: int) -> chat_pb2.Conversation | None:
        """The user's conversation with its last `limit` messages, oldest first; None if unknown or another user's."""
        row = (
            await self.conn.execute(
                sa.select(conversations.c.conversation_id, conversations.c.create_time).where(
                    conversations.c.conversation_id == conversation_id, conversations.c.user_id == user_id
                )
            )
        ).first()
        if row is None:
            return None
        found = chat_pb2.Conversation(conversation_id=row.conversation_id, user_id=user_id)
        found.create_time.FromDatetime(row.create_time)
        latest = (
            sa.select(messages)
            .where(messages.c.conversation_id == conversation_id)
            .order_by(messages.c.seq.desc())
            .limit(limit)
            .subquery()
        )
        for message in (await self.conn.execute(sa.select(latest).order_by(latest.c.seq))).all():
            stored = chat_pb2.ChatMessage.FromString(message.actions)
            item = found.messages.add(message_id=message.message_id, role=message.role, text=message.text)
            item.actions.extend(stored.actions)
            item.create_time.FromDatetime(message.create_time.astimezone(UTC))
        return found


async def prune_answered_requests(db: Database, before: datetime) -> int:
    """Forgets responses to request ids first answered before `before`; a retry after that is a new message."""
    return await delete_in_batches(
        db,
        answered_requests,
        [answered_requests.c.user_id, answered_requests.c.client_request_id],
        answered_requests.c.created_at < before,
    )
