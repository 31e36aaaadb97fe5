"""The event handler that records activity, AuditService over gRPC, and the pruner of old entries."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta

from audit_svc import domain, storage
from todo_contracts.audit.v1 import audit_pb2, audit_pb2_grpc
from todo_contracts.common.v1 import common_pb2
from todo_contracts.envelope import DecodedEvent
from todo_kit import paging
from todo_kit.auth import current_user
from todo_kit.db import Database
from todo_kit.errors import Violations, shown
from todo_kit.messaging import claim_event
from todo_kit.offloop import OffLoop
from todo_kit.runtime.port import DropEvent
from todo_kit.server import ServicerContext
from todo_kit.zoned import now_utc

log = logging.getLogger(__name__)

APP_ID = "audit_svc"
PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 1000
EVENT_TYPES_MAX = 20
RESPONSE_BYTES_MAX = 3 * 1024 * 1024
"""A page stops before this many bytes of entries (clients receive at most 4 MiB by default); it then holds fewer
than page_size entries and a next_page_token."""
VERIFY_PAGE = 5000
"""Entries read per query while verifying; each page is hashed in a worker thread, off the event loop."""
VERIFY_AT_ONCE = 2
"""Verifications running at once in a host; more wait for a turn within their call's deadline."""
PRUNE_BATCH = 1000
"""Entries pruned per transaction (checked first, then removed by the database's prune_activity)."""
PRUNE_USERS_PER_PAGE = 500
Context = ServicerContext


class ActivityRecorder:
    """Appends one entry per event to its user's log, once per event id, whatever the topic."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def __call__(self, event: DecodedEvent) -> None:
        try:
            draft = domain.draft_of(event)
        except domain.Unrecordable as exc:
            raise DropEvent(str(exc)) from None
        async with self.db.transaction() as conn:
            if not await claim_event(conn, APP_ID, event.id):
                return
            head = await storage.lock_head(conn, draft.user_id)
            if await storage.has_event(conn, draft.event_id):
                return  # recorded before, and its inbox id pruned since
            # The record time is taken under the head's lock, so it follows the chain's order.
            await storage.append(conn, domain.chained(draft, head, now_utc()))


def to_message(entry: domain.Entry) -> audit_pb2.ActivityEntry:
    """The ActivityEntry message of an entry."""
    message = audit_pb2.ActivityEntry(
        sequence=entry.sequence,
        user_id=entry.user_id,
        event_id=entry.event_id,
        event_type=entry.event_type,
        source=entry.source,
        task_id=entry.task_id,
        summary=entry.summary,
        payload_json=entry.payload_json,
        entry_hash=entry.entry_hash,
        previous_hash=entry.previous_hash,
    )
    message.occur_time.FromDatetime(entry.occur_time)
    message.record_time.FromDatetime(entry.record_time)
    return message


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    """Lists and verifies the authenticated user's activity log, and only theirs."""

    def __init__(self, db: Database, page_tokens: paging.PageTokens) -> None:
        self.db = db
        self.page_tokens = page_tokens
        self.hashing = OffLoop("audit-verify", workers=VERIFY_AT_ONCE, timeout=30.0)
        self._verifying = asyncio.Semaphore(VERIFY_AT_ONCE)

    async def close(self) -> None:
        """Stops the hashing threads."""
        self.hashing.close()

    async def ListActivity(
        self, request: audit_pb2.ListActivityRequest, context: Context
    ) -> audit_pb2.ListActivityResponse:
        user = current_user()
        wanted, size = self._listing(request, user)
        async with self.db.engine.connect() as conn:
            found = await storage.list_entries(conn, wanted, size + 1)
        response = audit_pb2.ListActivityResponse()
        budget = RESPONSE_BYTES_MAX
        for entry in found[:size]:
            message = to_message(entry)
            budget -= message.ByteSize() + 8
            if budget < 0 and response.entries:
                break
            response.entries.append(message)
        if len(found) > len(response.entries):
            last = response.entries[-1]
            position = (last.occur_time.ToDatetime(tzinfo=UTC), last.sequence)
            response.next_page_token = self.page_tokens.issue(paging.query_fingerprint(request, user=user), position)
        return response

    def _listing(self, request: audit_pb2.ListActivityRequest, user: str) -> tuple[storage.ActivityFilter, int]:
        """The filter and page size a request asks for; InvalidArgument naming every bad field."""
        violations = Violations()
        task_id = ""
        if request.task_id:
            # Only the canonical form: uuid.UUID also takes "{...}" and "urn:uuid:...".
            try:
                task_id = str(uuid.UUID(request.task_id))
            except ValueError:
                task_id = ""
            if task_id != request.task_id.lower():
                violations.add("task_id", f"{shown(request.task_id)} is not a task id")
        known = domain.known_event_types()
        if len(request.event_types) > EVENT_TYPES_MAX:
            violations.add("event_types", f"at most {EVENT_TYPES_MAX} event types, got {len(request.event_types)}")
        else:
            for number, name in enumerate(request.event_types):
                if name not in known:
                    violations.add(
                        f"event_types[{number}]",
                        f"{shown(name)} is not an event type; types are full names such as todo.task.v1.TaskCompleted",
                    )
        start, end = _range(request.occur_range)
        if start is not None and end is not None and start > end:
            violations.add("occur_range", "start_time must not be after end_time")
        if request.sort_order not in (common_pb2.SORT_ORDER_UNSPECIFIED, common_pb2.SORT_ORDER_ASCENDING,
                                      common_pb2.SORT_ORDER_DESCENDING):  # fmt: skip
            violations.add("sort_order", f"unknown sort order {request.sort_order}")
        if not 0 <= request.page_size <= PAGE_SIZE_MAX:
            violations.add("page_size", f"must be between 1 and {PAGE_SIZE_MAX} (0 means {PAGE_SIZE_DEFAULT})")
        after: tuple[datetime, int] | None = None
        if request.page_token:
            try:
                occur_time, sequence = self.page_tokens.read(
                    request.page_token,
                    paging.query_fingerprint(request, user=user),
                    (paging.Part.TIME, paging.Part.INTEGER),
                )
            except ValueError as exc:
                violations.add("page_token", str(exc))
            else:
                assert isinstance(occur_time, datetime) and isinstance(sequence, int)  # as the shape says
                after = (occur_time, sequence)
        violations.raise_if_any()
        wanted = storage.ActivityFilter(
            user_id=user,
            task_id=task_id,
            event_types=tuple(sorted(set(request.event_types))),
            start=start,
            end=end,
            newest_first=request.sort_order != common_pb2.SORT_ORDER_ASCENDING,
            after=after,
        )
        return wanted, request.page_size or PAGE_SIZE_DEFAULT

    async def VerifyLog(self, request: audit_pb2.VerifyLogRequest, context: Context) -> audit_pb2.VerifyLogResponse:
        """Recomputes the caller's chain from its anchor, a page at a time, in one snapshot of the log.

        The work is bounded per step (VERIFY_PAGE entries read, then hashed in a
        worker thread), at most VERIFY_AT_ONCE run at once, and the whole call
        by its deadline (the server's default when the client sets none): a log
        too long to check within it ends in DEADLINE_EXCEEDED, and a longer
        deadline checks it.
        """
        user = current_user()
        async with self._verifying, storage.snapshot(self.db) as conn:
            head = await storage.head(conn, user)
            if head is None:
                return audit_pb2.VerifyLogResponse(intact=True)
            check = domain.ChainCheck.from_anchor(head)
            after = head.pruned_through_sequence
            while check.broken is None:
                page = await storage.entries_after(conn, user, after, VERIFY_PAGE)
                if not page:
                    break
                check = await self.hashing.run(domain.check_page, check, page)
                after = page[-1].sequence
                if len(page) < VERIFY_PAGE:
                    break
            check.finish(head)
        broken = check.broken
        return audit_pb2.VerifyLogResponse(
            intact=broken is None,
            entries_checked=check.checked,
            first_broken_sequence=broken.sequence if broken else 0,
            problem=broken.problem if broken else "",
            head_hash=head.last_hash,
            pruned_through_sequence=head.pruned_through_sequence,
        )


def _range(value: common_pb2.TimeRange) -> tuple[datetime | None, datetime | None]:
    start = value.start_time.ToDatetime(tzinfo=UTC) if value.HasField("start_time") else None
    end = value.end_time.ToDatetime(tzinfo=UTC) if value.HasField("end_time") else None
    return start, end


class ActivityPruner:
    """Removes users' entries older than the retention period, oldest first, keeping every chain verifiable."""

    def __init__(self, db: Database, retention: timedelta | None) -> None:
        self.db = db
        self.retention = retention

    async def __call__(self, host_cutoff: datetime) -> int:
        """The host's periodic call; the log keeps its own retention (TODO_AUDIT_RETENTION_DAYS), not the host's."""
        if self.retention is None:
            return 0
        return await self.prune_before(now_utc() - self.retention)

    async def prune_before(self, cutoff: datetime) -> int:
        """Prunes every user's entries recorded before cutoff; returns how many went."""
        deleted = 0
        after = ""
        while True:
            async with self.db.engine.connect() as conn:
                last, due = await storage.users_due_for_pruning(conn, after, cutoff, PRUNE_USERS_PER_PAGE)
            for user in due:
                deleted += await self.prune_user(user, cutoff)
            if last is None:
                return deleted
            after = last

    async def prune_user(self, user: str, cutoff: datetime) -> int:
        """Prunes one user's entries recorded before cutoff, PRUNE_BATCH per transaction; returns how many went.

        Each batch is checked against the chain first: entries that do not
        check out stay (with an error in the log), since pruning them would
        destroy the evidence.
        """
        deleted = 0
        while True:
            async with self.db.engine.connect() as conn:
                head = await storage.head(conn, user)
                if head is None:
                    return deleted
                oldest = await storage.entries_after(conn, user, head.pruned_through_sequence, PRUNE_BATCH)
            through, broken = domain.prunable_through(head, oldest, cutoff)
            if broken is not None:
                log.error(
                    "activity log does not verify; its entries are kept",
                    extra={"user_id": user, "first_broken_sequence": broken.sequence, "problem": broken.problem},
                )
                return deleted
            if through <= head.pruned_through_sequence:
                return deleted
            async with self.db.transaction() as conn:
                removed = await storage.prune_through(conn, user, through, cutoff)
            deleted += removed
            if removed == 0:
                return deleted  # another replica pruned it meanwhile
