"""What the audit service's tests drive: a running host with the audit unit, stubs, tokens and event helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
import sqlalchemy as sa
from google.protobuf.message import Message

from audit_svc import domain, storage
from audit_svc.unit import unit as audit_unit
from todo_contracts import envelope, topics
from todo_contracts.audit.v1 import audit_pb2, audit_pb2_grpc
from todo_contracts.task.v1 import events_pb2 as task_events
from todo_contracts.task.v1 import task_pb2, task_service_pb2_grpc
from todo_kit.config import Settings
from todo_kit.db import Database
from todo_kit.embedded_host import EmbeddedHost
from todo_kit.messaging import OutgoingEvent
from todo_kit.runtime.port import EventHandler, ServiceUnit
from todo_kit.testing import EventRecorder, bearer, running_host

AUDIT_DATABASE = "todo_audit"


@dataclass
class AuditClient:
    """An AuditService (and TaskService) stub on a running host, tokens for two users, and ways to feed events."""

    host: EmbeddedHost
    settings: Settings
    audit: audit_pb2_grpc.AuditServiceStub
    tasks: task_service_pb2_grpc.TaskServiceStub
    alice: list[tuple[str, str]]
    bob: list[tuple[str, str]]
    recorder: EventRecorder

    @property
    def handler(self) -> EventHandler:
        """The audit unit's event handler (the same for every topic)."""
        return self.host.wirings["audit_svc"].subscriptions[0].handler

    async def record(self, message: Message, *, time: datetime | None = None) -> envelope.DecodedEvent:
        """Hands one event straight to the audit's handler, as its subscription would; returns it."""
        event = envelope.decode(envelope.encode(message, source="/todo/test", time=time))
        await self.handler(event)
        return event

    async def publish(self, messages: Sequence[Message]) -> list[str]:
        """Publishes events through the runtime, as services do; returns their ids."""
        outgoing = []
        for message in messages:
            ce = envelope.wrap(message, source="/todo/test")
            key = ce.attributes[envelope.ATTR_PARTITION_KEY].ce_string
            outgoing.append(OutgoingEvent(ce.id, topics.topic_of(message).name, key, ce.type, ce.SerializeToString()))
        assert self.host.runtime is not None
        await self.host.runtime.publish(outgoing)
        return [e.event_id for e in outgoing]

    @asynccontextmanager
    async def owner(self) -> AsyncIterator[Database]:
        """The audit database as its owner (the role migrations run as), not as the service's runtime role."""
        db = Database(self.host.database_url(self.settings.database_prefix + AUDIT_DATABASE))
        try:
            yield db
        finally:
            await db.close()

    async def entries(self, user: str) -> list[domain.Entry]:
        """Every stored entry of a user, in sequence order (read as the owner)."""
        async with self.owner() as db, db.engine.connect() as conn:
            return await storage.entries_after(conn, user, 0, 1_000_000)

    async def verify(self, metadata: list[tuple[str, str]]) -> audit_pb2.VerifyLogResponse:
        """VerifyLog as the user of metadata."""
        return await self.audit.VerifyLog(audit_pb2.VerifyLogRequest(), metadata=metadata)

    async def list_all(self, metadata: list[tuple[str, str]], **request: object) -> list[audit_pb2.ActivityEntry]:
        """Every entry ListActivity returns for a request, page after page."""
        found: list[audit_pb2.ActivityEntry] = []
        token = ""
        while True:
            reply = await self.audit.ListActivity(
                audit_pb2.ListActivityRequest(page_token=token, **request),  # type: ignore[arg-type]
                metadata=metadata,
            )
            found += reply.entries
            token = reply.next_page_token
            if not token:
                return found


@asynccontextmanager
async def running_audit(settings: Settings, units: Sequence[ServiceUnit] = ()) -> AsyncIterator[AuditClient]:
    """A host with the audit unit (and units, if given) and a recorder of every topic."""
    recorder = EventRecorder()
    async with (
        running_host(settings, [*units, audit_unit], recorder=recorder) as host,
        grpc.aio.insecure_channel(host.address) as channel,
    ):
        yield AuditClient(
            host,
            settings,
            audit_pb2_grpc.AuditServiceStub(channel),
            task_service_pb2_grpc.TaskServiceStub(channel),
            bearer(settings, "alice"),
            bearer(settings, "bob"),
            recorder,
        )


def task_event(number: int, *, user: str = "alice", task_id: str = "", title: str = "Pay rent") -> Message:
    """A TaskUpdated of a task (its id, or one made from number), as task_svc publishes it."""
    task = task_pb2.Task(task_id=task_id or f"00000000-0000-4000-8000-{number:012d}", user_id=user, title=title)
    return task_events.TaskUpdated(user_id=user, task=task, previous=task, changed_fields=["title"])


def at(seconds: float) -> datetime:
    """A fixed instant, seconds after 2026-11-29 08:00 UTC."""
    return datetime.fromtimestamp(1_795_939_200 + seconds, UTC)


async def count_entries(db: Database) -> int:
    """How many entries the log holds (of every user)."""
    async with db.engine.connect() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(storage.activity_log)) or 0)
