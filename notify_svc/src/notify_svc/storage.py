"""Notifications, their deliveries and attempts, users' channel settings, in the notification service's database."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from notify_svc.domain import PENDING, RECENT_ATTEMPTS, Endpoint, UserChannels
from todo_contracts.notify.v1 import notify_pb2
from todo_kit.db import Database, delete_in_batches

metadata = sa.MetaData()
channel_settings = sa.Table(
    "channel_settings",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("webhook_enabled", sa.Boolean, nullable=False),
    sa.Column("webhook_url", sa.Text, nullable=False),
    sa.Column("webhook_secret", sa.Text, nullable=False),
    sa.Column("email_enabled", sa.Boolean, nullable=False),
    sa.Column("email_address", sa.Text, nullable=False),
    sa.Column("quiet_enabled", sa.Boolean, nullable=False),
    sa.Column("quiet_start", sa.Text, nullable=False),
    sa.Column("quiet_end", sa.Text, nullable=False),
    sa.Column("quiet_zone", sa.Text, nullable=False),
    sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
)
user_sequences = sa.Table(
    "user_sequences",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
)
notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("notification_id", pg.UUID(as_uuid=False), primary_key=True),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("task_id", sa.Text, nullable=False),
    sa.Column("reminder_id", sa.Text),
    sa.Column("late", sa.Boolean, nullable=False),
    sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("read_time", sa.DateTime(timezone=True)),
)
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("notification_id", pg.UUID(as_uuid=False), primary_key=True),
    sa.Column("channel", sa.SmallInteger, primary_key=True),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("state", sa.SmallInteger, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text, nullable=False),
    sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("next_attempt_time", sa.DateTime(timezone=True)),
    sa.Column("retry_until", sa.DateTime(timezone=True), nullable=False),
    sa.Column("attempt_lease_until", sa.DateTime(timezone=True)),
    sa.Column("needs_job", sa.Boolean, nullable=False),
)
delivery_attempts = sa.Table(
    "delivery_attempts",
    metadata,
    sa.Column("notification_id", pg.UUID(as_uuid=False), primary_key=True),
    sa.Column("channel", sa.SmallInteger, primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("attempt_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("succeeded", sa.Boolean, nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("response_code", sa.Integer, nullable=False),
)
endpoint_backoff = sa.Table(
    "endpoint_backoff",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("channel", sa.SmallInteger, primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=False),
    sa.Column("probing_until", sa.DateTime(timezone=True)),
    sa.Column("last_error", sa.Text, nullable=False),
)

NEW_NOTIFICATION_CHANNEL = "notify_svc_new"
"""The PostgreSQL NOTIFY channel of new notifications; the payload is "<seq> <user id>"."""
PRUNE_BATCH = 1000
WAKE_MAX = 1000
"""Deliveries woken at once when a user's endpoint works again; more wake at their own time."""


@dataclass(frozen=True)
class DeliveryRow:
    """A delivery as the delivery jobs see it."""

    notification_id: str
    channel: int
    user_id: str
    state: int
    attempts: int
    retry_until: datetime
    attempt_lease_until: datetime | None


def _notification(row: Any) -> notify_pb2.Notification:
    message = notify_pb2.Notification(
        notification_id=row.notification_id,
        user_id=row.user_id,
        title=row.title,
        body=row.body,
        task_id=row.task_id,
        reminder_id=row.reminder_id or "",
        late=row.late,
    )
    message.create_time.FromDatetime(row.create_time)
    if row.read_time is not None:
        message.read_time.FromDatetime(row.read_time)
    return message


def _delivery(row: Any) -> notify_pb2.Delivery:
    message = notify_pb2.Delivery(
        channel=row.channel, state=row.state, attempts=row.attempts, last_error=row.last_error
    )
    message.update_time.FromDatetime(row.update_time)
    if row.state == PENDING and row.next_attempt_time is not None:
        message.next_attempt_time.FromDatetime(row.next_attempt_time)
    return message


class NotificationRepository:
    """Reads and writes inside the caller's transaction (or connection, for reads)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    # --- channel settings ---------------------------------------------------------

    async def channels(self, user_id: str, *, lock: bool = False) -> UserChannels:
        """The user's channel settings (the defaults if never set); lock holds the user's row until commit."""
        if lock:
            # A row to lock even for a user who never changed anything.
            await self.conn.execute(
                pg.insert(channel_settings)
                .values(user_id=user_id, **asdict(UserChannels()), update_time=sa.func.now())
                .on_conflict_do_nothing()
            )
        query = sa.select(channel_settings).where(channel_settings.c.user_id == user_id)
        row = (await self.conn.execute(query.with_for_update() if lock else query)).first()
        if row is None:
            return UserChannels()
        return UserChannels(**{key: getattr(row, key) for key in asdict(UserChannels())})

    async def save_channels(self, user_id: str, updated: UserChannels) -> None:
        """Stores the user's channel settings (after channels(user, lock=True))."""
        await self.conn.execute(
            sa.update(channel_settings)
            .where(channel_settings.c.user_id == user_id)
            .values(**asdict(updated), update_time=sa.func.now())
        )

    # --- notifications ------------------------------------------------------------

    async def has_reminder_notification(self, user_id: str, reminder_id: str) -> bool:
        """Whether the reminder's firing made a notification already."""
        found = await self.conn.scalar(
            sa.select(sa.literal(1)).where(
                notifications.c.user_id == user_id, notifications.c.reminder_id == reminder_id
            )
        )
        return found is not None

    async def next_seq(self, user_id: str) -> int:
        """The user's next notification number, holding the user's counter until commit.

        So a user's notifications commit in the order of their numbers, and a
        reader of "seq > n" never passes over one that commits late.
        """
        stmt = pg.insert(user_sequences).values(user_id=user_id, last_seq=1)
        counted = stmt.on_conflict_do_update(
            index_elements=[user_sequences.c.user_id], set_={"last_seq": user_sequences.c.last_seq + 1}
        ).returning(user_sequences.c.last_seq)
        return int((await self.conn.execute(counted)).scalar_one())

    async def add_notification(self, notification: notify_pb2.Notification, seq: int) -> bool:
        """Stores a new notification; False if its reminder made one already."""
        result = await self.conn.execute(
            pg.insert(notifications)
            .values(
                notification_id=notification.notification_id,
                user_id=notification.user_id,
                seq=seq,
                title=notification.title,
                body=notification.body,
                task_id=notification.task_id,
                reminder_id=notification.reminder_id or None,
                late=notification.late,
                create_time=notification.create_time.ToDatetime(tzinfo=UTC),
            )
            .on_conflict_do_nothing()
            .returning(notifications.c.notification_id)
        )
        return result.first() is not None

    async def announce(self, user_id: str, seq: int) -> None:
        """Tells every replica's live streams of the user, at commit, that notification seq exists."""
        await self.conn.execute(sa.select(sa.func.pg_notify(NEW_NOTIFICATION_CHANNEL, f"{seq} {user_id}")))

    async def add_delivery(
        self, notification_id: str, user_id: str, channel: int, *, state: int, now: datetime,
        next_attempt: datetime | None, retry_until: datetime, attempts: int = 0,
    ) -> None:  # fmt: skip
        """Stores the delivery of a notification through one channel (a push one waits for its job)."""
        await self.conn.execute(
            sa.insert(deliveries).values(
                notification_id=notification_id,
                channel=channel,
                user_id=user_id,
                state=state,
                attempts=attempts,
                last_error="",
                update_time=now,
                next_attempt_time=next_attempt,
                retry_until=retry_until,
                needs_job=state == PENDING,
            )
        )

    async def seq_of(self, user_id: str, notification_id: str) -> int | None:
        """The user's number of one of the user's notifications (None if not the user's or gone)."""
        value = await self.conn.scalar(
            sa.select(notifications.c.seq).where(
                notifications.c.notification_id == notification_id, notifications.c.user_id == user_id
            )
        )
        return int(value) if value is not None else None

    async def newest(self, user_id: str) -> tuple[int, str]:
        """(seq, id) of the user's newest notification; (0, "") when there is none."""
        row = (
            await self.conn.execute(
                sa.select(notifications.c.seq, notifications.c.notification_id)
                .where(notifications.c.user_id == user_id)
                .order_by(notifications.c.seq.desc())
                .limit(1)
            )
        ).first()
        return (int(row.seq), row.notification_id) if row is not None else (0, "")

    async def after(self, user_id: str, seq: int, limit: int) -> list[tuple[int, notify_pb2.Notification]]:
        """Up to limit of the user's notifications numbered after seq, oldest first, with their deliveries."""
        rows = (
            await self.conn.execute(
                sa.select(notifications)
                .where(notifications.c.user_id == user_id, notifications.c.seq > seq)
                .order_by(notifications.c.seq)
                .limit(limit)
            )
        ).all()
        found = [(int(r.seq), _notification(r)) for r in rows]
        await self._attach_deliveries([n for _, n in found], attempts=False)
        return found

    async def page(
        self, user_id: str, *, unread_only: bool, before_seq: int | None, limit: int
    ) -> list[tuple[int, notify_pb2.Notification]]:
        """Up to limit of the user's notifications, newest first, numbered below before_seq if given."""
        query = sa.select(notifications).where(notifications.c.user_id == user_id)
        if unread_only:
            query = query.where(notifications.c.read_time.is_(None))
        if before_seq is not None:
            query = query.where(notifications.c.seq < before_seq)
        rows = (await self.conn.execute(query.order_by(notifications.c.seq.desc()).limit(limit))).all()
        found = [(int(r.seq), _notification(r)) for r in rows]
        await self._attach_deliveries([n for _, n in found], attempts=True)
        return found

    async def get(self, notification_id: str) -> notify_pb2.Notification | None:
        """One notification, with its deliveries (no attempts)."""
        row = (
            await self.conn.execute(sa.select(notifications).where(notifications.c.notification_id == notification_id))
        ).first()
        if row is None:
            return None
        found = _notification(row)
        await self._attach_deliveries([found], attempts=False)
        return found

    async def unread_count(self, user_id: str) -> int:
        """How many of the user's notifications are unread."""
        return int(
            await self.conn.scalar(
                sa.select(sa.func.count())
                .select_from(notifications)
                .where(notifications.c.user_id == user_id, notifications.c.read_time.is_(None))
            )
            or 0
        )

    async def mark_read(self, user_id: str, notification_ids: Sequence[str] | None, now: datetime) -> int:
        """Marks the user's unread notifications among ids (every one, when ids is None) read; how many changed."""
        stmt = sa.update(notifications).where(notifications.c.user_id == user_id, notifications.c.read_time.is_(None))
        if notification_ids is not None:
            if not notification_ids:
                return 0
            stmt = stmt.where(notifications.c.notification_id.in_(list(notification_ids)))
        result = await self.conn.execute(stmt.values(read_time=now))
        return int(result.rowcount)

    async def _attach_deliveries(self, found: list[notify_pb2.Notification], *, attempts: bool) -> None:
        if not found:
            return
        ids = [n.notification_id for n in found]
        by_id = {n.notification_id: n for n in found}
        rows = (
            await self.conn.execute(
                sa.select(deliveries).where(deliveries.c.notification_id.in_(ids)).order_by(deliveries.c.channel)
            )
        ).all()
        placed: dict[tuple[str, int], notify_pb2.Delivery] = {}
        for row in rows:
            delivery = by_id[row.notification_id].deliveries.add()
            delivery.CopyFrom(_delivery(row))
            placed[(row.notification_id, row.channel)] = delivery
        if not attempts:
            return
        ranked = (
            sa.select(
                delivery_attempts,
                sa.func.row_number()
                .over(
                    partition_by=(delivery_attempts.c.notification_id, delivery_attempts.c.channel),
                    order_by=delivery_attempts.c.attempt.desc(),
                )
                .label("rank"),
            )
            .where(delivery_attempts.c.notification_id.in_(ids))
            .subquery()
        )
        attempt_rows = (
            await self.conn.execute(
                sa.select(ranked)
                .where(ranked.c.rank <= RECENT_ATTEMPTS)
                .order_by(ranked.c.notification_id, ranked.c.channel, ranked.c.attempt.desc())
            )
        ).all()
        grouped: dict[tuple[str, int], list[Any]] = defaultdict(list)
        for row in attempt_rows:
            grouped[(row.notification_id, row.channel)].append(row)
        for key, rows_of in grouped.items():
            placed_delivery = placed.get(key)
            if placed_delivery is None:
                continue
            for row in rows_of:
                attempt = placed_delivery.recent_attempts.add(
                    attempt=row.attempt, succeeded=row.succeeded, error=row.error, response_code=row.response_code
                )
                attempt.attempt_time.FromDatetime(row.attempt_time)

    # --- deliveries -----------------------------------------------------------------

    async def delivery(self, notification_id: str, channel: int) -> DeliveryRow | None:
        """A delivery, locked until commit."""
        row = (
            await self.conn.execute(
                sa.select(deliveries)
                .where(deliveries.c.notification_id == notification_id, deliveries.c.channel == channel)
                .with_for_update()
            )
        ).first()
        if row is None:
            return None
        return DeliveryRow(
            row.notification_id, row.channel, row.user_id, row.state, row.attempts, row.retry_until,
            row.attempt_lease_until,
        )  # fmt: skip

    async def set_delivery(self, notification_id: str, channel: int, **values: Any) -> None:
        """Changes a delivery's columns (its state, next attempt, lease...)."""
        await self.conn.execute(
            sa.update(deliveries)
            .where(deliveries.c.notification_id == notification_id, deliveries.c.channel == channel)
            .values(**values)
        )

    async def add_attempt(
        self, notification_id: str, channel: int, attempt: int, at: datetime, *, succeeded: bool, error: str,
        response_code: int,
    ) -> None:  # fmt: skip
        """Records one attempt of a delivery."""
        await self.conn.execute(
            sa.insert(delivery_attempts).values(
                notification_id=notification_id,
                channel=channel,
                attempt=attempt,
                attempt_time=at,
                succeeded=succeeded,
                error=error,
                response_code=response_code,
            )
        )

    async def endpoint(self, user_id: str, channel: int) -> Endpoint | None:
        """The user's failing endpoint on a channel, locked until commit; None when it is not failing."""
        row = (
            await self.conn.execute(
                sa.select(endpoint_backoff)
                .where(endpoint_backoff.c.user_id == user_id, endpoint_backoff.c.channel == channel)
                .with_for_update()
            )
        ).first()
        if row is None:
            return None
        return Endpoint(row.failures, row.blocked_until, row.probing_until, row.last_error)

    async def save_endpoint(self, user_id: str, channel: int, endpoint: Endpoint) -> None:
        """Stores the backoff of a user's failing endpoint."""
        values = {
            "failures": endpoint.failures,
            "blocked_until": endpoint.blocked_until,
            "probing_until": endpoint.probing_until,
            "last_error": endpoint.last_error,
        }
        stmt = pg.insert(endpoint_backoff).values(user_id=user_id, channel=channel, **values)
        await self.conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[endpoint_backoff.c.user_id, endpoint_backoff.c.channel], set_=values
            )
        )

    async def forget_endpoint(self, user_id: str, channel: int) -> None:
        """The endpoint works (or was changed): no more backoff."""
        await self.conn.execute(
            sa.delete(endpoint_backoff).where(
                endpoint_backoff.c.user_id == user_id, endpoint_backoff.c.channel == channel
            )
        )

    async def wake_waiting(self, user_id: str, channel: int, now: datetime) -> list[str]:
        """Moves the user's deliveries on a channel that wait for a later attempt to now; their notification ids.

        They then need their jobs scheduled again (needs_job) after commit.
        """
        waiting = (
            sa.select(deliveries.c.notification_id)
            .where(
                deliveries.c.user_id == user_id,
                deliveries.c.channel == channel,
                deliveries.c.state == PENDING,
                deliveries.c.next_attempt_time > now,
            )
            .order_by(deliveries.c.next_attempt_time)
            .limit(WAKE_MAX)
            .with_for_update(skip_locked=True)
        )
        result = await self.conn.execute(
            sa.update(deliveries)
            .where(deliveries.c.channel == channel, deliveries.c.notification_id.in_(waiting.scalar_subquery()))
            .values(next_attempt_time=now, needs_job=True)
            .returning(deliveries.c.notification_id)
        )
        return list(result.scalars())

    async def job_scheduled(self, keys: Sequence[tuple[str, int]]) -> None:
        """Records that the jobs of these deliveries exist."""
        if not keys:
            return
        await self.conn.execute(
            sa.update(deliveries)
            .where(sa.tuple_(deliveries.c.notification_id, deliveries.c.channel).in_(list(keys)))
            .values(needs_job=False)
        )

    async def without_job(self, before: datetime, limit: int) -> list[tuple[str, int, datetime]]:
        """Pending deliveries whose job was to be scheduled before `before` and may never have been."""
        rows = await self.conn.execute(
            sa.select(deliveries.c.notification_id, deliveries.c.channel, deliveries.c.next_attempt_time)
            .where(deliveries.c.needs_job, deliveries.c.state == PENDING, deliveries.c.update_time < before)
            .order_by(deliveries.c.update_time)
            .limit(limit)
        )
        return [(r.notification_id, r.channel, r.next_attempt_time) for r in rows]


async def prune_notifications(
    db: Database, read_before: datetime, unread_before: datetime, *, batch: int = PRUNE_BATCH
) -> int:
    """Deletes notifications with no delivery still pending: read ones created before read_before, unread ones
    created before unread_before; their deliveries and attempts go with them. Returns how many notifications.
    """
    settled = ~sa.exists().where(
        deliveries.c.notification_id == notifications.c.notification_id, deliveries.c.state == PENDING
    )
    old = sa.or_(
        sa.and_(notifications.c.read_time.is_not(None), notifications.c.create_time < read_before),
        notifications.c.create_time < unread_before,
    )
    return await delete_in_batches(
        db,
        notifications,
        [notifications.c.notification_id],
        sa.and_(old, settled),
        batch=batch,
        order_by=[notifications.c.create_time],
    )


async def prune_endpoints(db: Database, before: datetime, *, batch: int = PRUNE_BATCH) -> int:
    """Deletes endpoint backoff rows whose pause ended before `before` (nothing waits for them any more)."""
    return await delete_in_batches(
        db,
        endpoint_backoff,
        [endpoint_backoff.c.user_id, endpoint_backoff.c.channel],
        endpoint_backoff.c.blocked_until < before,
        batch=batch,
    )
