"""The Kafka runtime: a unit per process, events on Apache Kafka, jobs in the service's own database.

Publish: the outbox relay's batch is produced with an idempotent producer
(acks=all) in the form Dapr's Kafka component reads and writes with rawPayload:
value = the CloudEvent protobuf bytes as the outbox holds them, key = the
partition key (the user) as UTF-8, header content-type. publish() returns only
when the broker acknowledged every record, so the relay marks rows published
only then; a failure raises (the relay tries again later, and the consumers'
inboxes absorb what went out twice).

Subscriptions: one consumer group per app id and topic ("<app id>.<topic>");
replicas of a unit are members of the same group and share the partitions.
Records of one key (one user) are handled in order, records of different keys
at once (at most DISPATCH_KEYS_AT_ONCE per consumer). A partition's offset is
committed only up to its lowest record not yet finished, and a record is
finished only when its handler's transaction committed or it went to the
dead-letter topic, so a crash repeats work (absorbed by the inbox) and never
skips it. A failing handler is retried with capped backoff for
TODO_EVENT_RETRY_SECONDS; then, and at once for an undecodable or dropped
event, the record goes to the topic's dead-letter topic (todo_contracts.topics)
with headers naming where it came from and why, and the partition moves on. On
a rebalance the revoked partitions take no new records, their handlers in
flight get REVOKE_WAIT_SECONDS to finish, and what finished is committed before
the partitions move. A consumer that cannot reach the broker keeps trying; only
when that lasts TODO_KAFKA_BROKER_DOWN_SECONDS does it end (its unit is then
NOT_SERVING under the host's supervisor, which starts it again and again until
the broker is back).

Jobs: the shared job store (todo_kit.runtime.jobstore) on a jobs table in each
service's own database, so replicas claim each due job once (SKIP LOCKED).

Commands: gRPC to the address TODO_SERVICE_ADDRESSES gives for the target, with
the caller's authorization and traceparent, retries on UNAVAILABLE and a
default deadline.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import deque
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import grpc

from todo_contracts import topics
from todo_kit.commands import command_channel, retry_options
from todo_kit.config import ConfigError, env_bool, env_int, env_str
from todo_kit.db import Database
from todo_kit.messaging import OutgoingEvent
from todo_kit.runtime.delivery import FIRST_RETRY_DELAY, deliver
from todo_kit.runtime.jobstore import JobStore
from todo_kit.runtime.port import JobHandler, JobOptions, Subscription, UnitRuntime

log = logging.getLogger(__name__)

T = TypeVar("T")

CONTENT_TYPE = "application/cloudevents+protobuf"
"""The content-type header of every record (Dapr's rawPayload form of a protobuf CloudEvent)."""
DISPATCH_KEYS_AT_ONCE = 16
"""How many partition keys (users) one consumer handles at once; each key's records stay in order."""
MAX_BUFFERED_RECORDS = 2000
"""Records fetched and not yet finished per consumer before it pauses fetching (memory stays bounded)."""
REVOKE_WAIT_SECONDS = 10.0
"""How long a revoked partition's handlers in flight may take to finish before they are cancelled."""
BROKER_PROBE_INTERVAL = 2.0
"""Seconds without records or commits after which a consumer asks whether the broker is there."""
COMMIT_TIMEOUT_SECONDS = 5.0
"""How long one commit may wait for the broker; a commit that times out is made again later."""
OBSERVER_PREFIX = "observer-"
"""App ids of a host's observers (tests' event recorders): each process reads every event, in a group of its own."""

DEAD_LETTER_HEADERS = ("original-topic", "original-partition", "original-offset", "consumer-group", "error")
"""Headers of a dead-letter record, besides content-type (the key and value are the original's)."""


@dataclass(frozen=True)
class KafkaSettings:
    """Settings of the Kafka runtime (environment).

    TODO_KAFKA_BOOTSTRAP: host:port[,host:port] of the brokers (required).
    TODO_KAFKA_CREATE_TOPICS: create the registry's missing topics and their
      dead-letter topics at start (default true; idempotent).
    TODO_KAFKA_REPLICATION_FACTOR: replicas of topics created (1 to 16, default 1).
    TODO_KAFKA_CLIENT_ID: the client id the broker sees (default: app id, host name and pid).
    TODO_SERVICE_ADDRESSES: "task_svc=host:port,reminder_svc=host:port,...":
      where commands to each service go (runtime.channel(app_id)).
    TODO_KAFKA_SESSION_TIMEOUT_MS: how long a silent group member keeps its
      partitions (6000 to 300000, default 10000).
    TODO_KAFKA_HEARTBEAT_MS: heartbeat interval of a group member (100 to 10000,
      default 1000); a new replica gets its share after about one heartbeat.
    TODO_KAFKA_BROKER_DOWN_SECONDS: how long a consumer may fail to reach the
      broker before its unit is reported NOT_SERVING (1 to 3600, default 30).
    TODO_KAFKA_PUBLISH_TIMEOUT_SECONDS: how long a publish waits for the
      broker's acknowledgements before it fails (1 to 600, default 30).
    TODO_COMMAND_TIMEOUT_SECONDS: the deadline of a command (unary gRPC call to
      another service) made without one (1 to 600, default 15).
    """

    bootstrap: str
    create_topics: bool = True
    replication_factor: int = 1
    client_id: str = ""
    service_addresses: Mapping[str, str] = field(default_factory=dict)
    session_timeout_ms: int = 10_000
    heartbeat_ms: int = 1_000
    broker_down_seconds: int = 30
    publish_timeout_seconds: int = 30
    command_timeout_seconds: int = 15

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaSettings:
        """Reads the settings; raises ConfigError naming the first bad one."""
        env = os.environ if env is None else env
        bootstrap = env_str(env, "TODO_KAFKA_BOOTSTRAP", None)
        for address in bootstrap.split(","):
            host, _, port = address.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"TODO_KAFKA_BOOTSTRAP must be host:port[,host:port], got {bootstrap!r}")
        settings = cls(
            bootstrap=bootstrap,
            create_topics=env_bool(env, "TODO_KAFKA_CREATE_TOPICS", True),
            replication_factor=env_int(env, "TODO_KAFKA_REPLICATION_FACTOR", 1, 1, 16),
            client_id=env.get("TODO_KAFKA_CLIENT_ID", ""),
            service_addresses=parse_service_addresses(env.get("TODO_SERVICE_ADDRESSES", "")),
            session_timeout_ms=env_int(env, "TODO_KAFKA_SESSION_TIMEOUT_MS", 10_000, 6_000, 300_000),
            heartbeat_ms=env_int(env, "TODO_KAFKA_HEARTBEAT_MS", 1_000, 100, 10_000),
            broker_down_seconds=env_int(env, "TODO_KAFKA_BROKER_DOWN_SECONDS", 30, 1, 3600),
            publish_timeout_seconds=env_int(env, "TODO_KAFKA_PUBLISH_TIMEOUT_SECONDS", 30, 1, 600),
            command_timeout_seconds=env_int(env, "TODO_COMMAND_TIMEOUT_SECONDS", 15, 1, 600),
        )
        if settings.heartbeat_ms * 3 > settings.session_timeout_ms:
            raise ConfigError("TODO_KAFKA_HEARTBEAT_MS must be at most a third of TODO_KAFKA_SESSION_TIMEOUT_MS")
        return settings


def parse_service_addresses(raw: str) -> dict[str, str]:
    """ "a=host:port,b=host:port" -> {"a": "host:port", ...}; ConfigError naming TODO_SERVICE_ADDRESSES if malformed."""
    found: dict[str, str] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        app_id, sep, address = item.partition("=")
        host, _, port = address.strip().rpartition(":")
        if not sep or not app_id.strip() or not host or not port.isdigit():
            raise ConfigError(f"TODO_SERVICE_ADDRESSES must be app_id=host:port[,...], got {item!r}")
        found[app_id.strip()] = address.strip()
    return found


def _cancelled_from_outside() -> bool:
    """Whether the current task is being cancelled (a stop), rather than a cancellation leaking out of the client."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def within(seconds: float, awaitable: Awaitable[T]) -> T:
    """Awaits with a deadline (TimeoutError when it passes), never losing a cancellation.

    asyncio.wait_for of Python 3.11 returns the result when the task is
    cancelled just as the awaited call finishes, and the cancellation is lost
    (python/cpython#86296): a consumer loop that polls every 200 ms then kept
    running after its supervisor had cancelled it, and the stop waited for ever.
    asyncio.timeout delivers such a cancellation at the next await.
    """
    async with asyncio.timeout(seconds):
        return await awaitable


class BrokerUnavailable(Exception):
    """A consumer could not reach the broker for longer than it may (its unit goes NOT_SERVING)."""


class KafkaRuntime:
    """The runtime port on Kafka for the units of one process."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        retry_for: float = 6 * 3600,
        max_retry_delay: float = 30.0,
        client_name: str = "todo",
    ) -> None:
        self.settings = settings
        self.retry_for = retry_for
        self.max_retry_delay = max_retry_delay
        self.revoke_wait = REVOKE_WAIT_SECONDS
        self.client_id = settings.client_id or f"{client_name}-{socket.gethostname()}-{os.getpid()}"
        self._producer: Any = None
        self._producer_lock = asyncio.Lock()
        self._consumers: list[TopicConsumer] = []
        self._job_stores: dict[str, JobStore] = {}
        self._job_handlers: dict[str, dict[str, JobHandler]] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}

    # --- set-up -------------------------------------------------------------

    def for_unit(self, app_id: str) -> UnitRuntime:
        """The port bound to one unit."""
        return UnitRuntime(self, app_id)

    def attach_database(self, app_id: str, db: Database) -> None:
        """Keeps a unit's jobs in its own database (whose jobs table exists: jobstore.create_job_table)."""
        store = JobStore(db)
        store.add_job_handlers(app_id, self._job_handlers.get(app_id, {}))
        self._job_stores[app_id] = store

    def job_store(self, app_id: str) -> JobStore:
        """The job store of a unit; LookupError if its database was not attached."""
        try:
            return self._job_stores[app_id]
        except KeyError:
            raise LookupError(f"no database attached for the jobs of {app_id}") from None

    def add_subscription(self, app_id: str, subscription: Subscription) -> None:
        """Registers a unit's subscription (before the workers start)."""
        if any(c.app_id == app_id and c.subscription.topic == subscription.topic for c in self._consumers):
            raise ValueError(f"{app_id} subscribes to {subscription.topic} twice")
        self._consumers.append(TopicConsumer(self, app_id, subscription))

    def add_job_handlers(self, app_id: str, handlers: dict[str, JobHandler]) -> None:
        """Registers a unit's job handlers (before the workers start)."""
        self._job_handlers.setdefault(app_id, {}).update(handlers)
        if app_id in self._job_stores:
            self._job_stores[app_id].add_job_handlers(app_id, handlers)

    def workers(self) -> list[tuple[str, str, Any]]:
        """The loops a host runs under supervision: one per subscription, one job timer per unit with jobs."""
        found: list[tuple[str, str, Any]] = []
        for consumer in self._consumers:
            owner = "host" if consumer.app_id.startswith(OBSERVER_PREFIX) else consumer.app_id
            found.append((f"consume {consumer.subscription.topic} -> {consumer.app_id}", owner, consumer.run))
        for app_id, store in sorted(self._job_stores.items()):
            if self._job_handlers.get(app_id):
                found.append((f"job timer of {app_id}", app_id, store.run))
        return found

    async def wait_joined(self, timeout: float) -> bool:
        """Waits until every consumer has joined its group (had an assignment); False if timeout passed first."""
        try:
            async with asyncio.timeout(timeout):
                for consumer in self._consumers:
                    await consumer.joined.wait()
        except TimeoutError:
            return False
        return True

    async def ensure_topics(self) -> list[str]:
        """Creates the registry's missing topics (and dead-letter topics); returns the names made."""
        from todo_kit.kafka_topics import create_topics

        made = await create_topics(self.settings.bootstrap, self.settings.replication_factor)
        if made:
            log.info("created topics", extra={"topics": made})
        return made

    # --- the port -------------------------------------------------------------

    async def _started_producer(self) -> Any:
        async with self._producer_lock:
            if self._producer is None:
                from aiokafka import AIOKafkaProducer

                producer = AIOKafkaProducer(
                    bootstrap_servers=self.settings.bootstrap,
                    client_id=self.client_id,
                    enable_idempotence=True,  # with acks="all": no duplicates or reordering from the producer's retries
                    acks="all",
                    linger_ms=5,
                    request_timeout_ms=15_000,
                )
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def _discard_producer(self) -> None:
        """Drops a producer after a failure: the next publish starts a fresh one (new connections, new id)."""
        async with self._producer_lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await within(10, producer.stop())
            except Exception:
                log.warning("stopping a failed producer failed", exc_info=True)

    async def produce(self, records: Sequence[tuple[str, bytes, bytes, list[tuple[str, bytes]]]]) -> None:
        """Produces (topic, key, value, headers) records and returns when the broker acknowledged every one."""
        if not records:
            return
        try:
            async with asyncio.timeout(self.settings.publish_timeout_seconds):
                producer = await self._started_producer()
                acks = [
                    await producer.send(topic, value=value, key=key, headers=headers)
                    for topic, key, value, headers in records
                ]
                await asyncio.gather(*acks)
        except Exception:
            await self._discard_producer()
            raise

    async def publish(self, events: Sequence[OutgoingEvent]) -> None:
        """Produces events in order (key = partition key) and waits until the broker acknowledged them all."""
        header = [("content-type", CONTENT_TYPE.encode())]
        await self.produce([(e.topic, e.partition_key.encode(), e.payload, header) for e in events])

    async def schedule_job(
        self, app_id: str, name: str, due_time: datetime, data: bytes, options: JobOptions | None = None
    ) -> None:
        """Stores the job in the unit's own jobs table."""
        await self.job_store(app_id).schedule_job(app_id, name, due_time, data, options)

    async def delete_job(self, app_id: str, name: str) -> None:
        """Deletes a job of the unit's own jobs table; a missing one is not an error."""
        await self.job_store(app_id).delete_job(app_id, name)

    def channel(self, target_app_id: str) -> grpc.aio.Channel:
        """A command channel to target_app_id at its address in TODO_SERVICE_ADDRESSES."""
        if target_app_id not in self._channels:
            address = self.settings.service_addresses.get(target_app_id)
            if address is None:
                raise ConfigError(f"TODO_SERVICE_ADDRESSES has no address for {target_app_id}")
            self._channels[target_app_id] = command_channel(
                address, options=retry_options(), default_timeout=float(self.settings.command_timeout_seconds)
            )
        return self._channels[target_app_id]

    # --- hosting --------------------------------------------------------------

    async def pending_jobs(self, app_id: str) -> list[str]:
        """Names of a unit's jobs that have not fired yet."""
        return await self.job_store(app_id).pending_jobs(app_id)

    async def prune(self, before: datetime, dead_letters_before: datetime) -> dict[str, int]:
        """Nothing of the runtime's own to prune: topics have the broker's retention, jobs are deleted when fired."""
        return {}

    async def stop(self) -> None:
        """Stops jobs in flight, the producer and the command channels (consumers stop with their workers)."""
        for store in self._job_stores.values():
            await store.stop()
        await self._discard_producer()
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


@dataclass
class _PartitionWork:
    """What a consumer holds of one assigned partition."""

    pending: deque[int] = field(default_factory=deque)  # offsets fetched and not finished, in order
    done: set[int] = field(default_factory=set)  # finished offsets behind an unfinished one
    keys: dict[bytes, deque[Any]] = field(default_factory=dict)  # records waiting, per key, in order
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    commit_to: int | None = None  # the next offset to commit (all before it finished)
    committed: int | None = None
    revoked: bool = False


class TopicConsumer:
    """One unit's subscription to one topic: a member of the group "<app id>.<topic>"."""

    def __init__(self, runtime: KafkaRuntime, app_id: str, subscription: Subscription) -> None:
        self.runtime = runtime
        self.app_id = app_id
        self.subscription = subscription
        topic = subscription.topic
        if app_id.startswith(OBSERVER_PREFIX):
            self.group_id = f"{app_id}.{topic}.{uuid.uuid4().hex}"
        else:
            self.group_id = f"{app_id}.{topic}"
        try:
            self.dead_letter_topic = topics.topic_named(topic).dead_letter
        except KeyError:
            self.dead_letter_topic = topic + topics.DEAD_LETTER_SUFFIX
        self._known_types = frozenset(topics.event_types())
        self._partitions: dict[Any, _PartitionWork] = {}
        self._limit = asyncio.Semaphore(DISPATCH_KEYS_AT_ONCE)
        self._consumer: Any = None
        self._paused = False
        self.handled = 0
        self.joined = asyncio.Event()
        """Set once the consumer has had its first assignment (it is a member of its group)."""

    # --- the loop -------------------------------------------------------------

    async def run(self) -> None:
        """Consumes until cancelled; ends (for the supervisor to restart) if the broker stays out of reach."""
        from aiokafka import AIOKafkaConsumer
        from aiokafka.abc import ConsumerRebalanceListener

        consumer_self = self

        class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                await consumer_self._revoke(list(revoked))

            async def on_partitions_assigned(self, assigned: Any) -> None:
                for tp in assigned:
                    consumer_self._partitions.setdefault(tp, _PartitionWork())
                consumer_self.joined.set()

        settings = self.runtime.settings
        is_observer = self.app_id.startswith(OBSERVER_PREFIX)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap,
            client_id=self.runtime.client_id,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="latest" if is_observer else "earliest",
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_ms,
            max_poll_interval_ms=300_000,
            request_timeout_ms=max(15_000, settings.session_timeout_ms + 5_000),
        )
        consumer.subscribe([self.subscription.topic], listener=Rebalance())
        try:
            await consumer.start()
        except BaseException as exc:
            await asyncio.shield(self._leave(consumer))
            if isinstance(exc, asyncio.CancelledError) and not _cancelled_from_outside():
                # The client's own tasks were cancelled (no broker): a failure to restart, not a stop.
                raise BrokerUnavailable(f"{self.group_id} could not join its group") from None
            raise
        self._consumer = consumer
        loop = asyncio.get_running_loop()
        reachable_at = probed_at = loop.time()
        this_task = asyncio.current_task()
        try:
            while True:
                if this_task is not None and this_task.cancelling():
                    # A cancel that a call below swallowed (the client itself uses
                    # asyncio.wait_for) still stops the loop.
                    raise asyncio.CancelledError
                try:
                    # Bounded: while the group cannot be joined (no broker) getmany waits for an assignment.
                    batches = await within(2.0, consumer.getmany(timeout_ms=200, max_records=500))
                except TimeoutError:
                    batches = {}
                for tp, records in batches.items():
                    self._accept(tp, records)
                self._pause_or_resume()
                committed = await self._commit_finished()
                now = loop.time()
                if batches or committed:
                    reachable_at = now
                elif now - max(reachable_at, probed_at) >= BROKER_PROBE_INTERVAL:
                    probed_at = now
                    if await self._broker_answers():
                        reachable_at = loop.time()
                    elif now - reachable_at > settings.broker_down_seconds:
                        raise BrokerUnavailable(
                            f"the broker did not answer {self.group_id} for {settings.broker_down_seconds} s"
                        )
        finally:
            await asyncio.shield(self._leave(consumer))

    async def _leave(self, consumer: Any) -> None:
        """Stops taking records, lets the handlers in flight finish (bounded), commits, leaves the group."""
        try:
            await self._revoke(list(self._partitions))
        except Exception:
            log.warning("committing before leaving the group failed", extra={"group": self.group_id}, exc_info=True)
        self._consumer = None
        try:
            await within(15, consumer.stop())
        except asyncio.CancelledError:
            # Runs shielded, so this comes from the client: stopping without a
            # broker cancels its own background tasks and one of them leaks out.
            log.warning("leaving the group was cut short", extra={"group": self.group_id})
        except Exception:
            log.warning("leaving the group failed", extra={"group": self.group_id}, exc_info=True)

    async def _broker_answers(self) -> bool:
        """Whether a broker answers a metadata request now (asked through the consumer's own client)."""
        client = getattr(self._consumer, "_client", None)  # aiokafka has no public call for this
        if client is None:
            return True
        try:
            await within(BROKER_PROBE_INTERVAL * 2, client.fetch_all_metadata())
        except Exception:
            return False
        return True

    def _pause_or_resume(self) -> None:
        buffered = sum(len(p.pending) for p in self._partitions.values())
        assigned = [tp for tp, p in self._partitions.items() if not p.revoked]
        if not self._paused and buffered >= MAX_BUFFERED_RECORDS:
            self._consumer.pause(*assigned)
            self._paused = True
        elif self._paused and buffered < MAX_BUFFERED_RECORDS // 2:
            self._consumer.resume(*assigned)
            self._paused = False

    # --- records --------------------------------------------------------------

    def _accept(self, tp: Any, records: list[Any]) -> None:
        work = self._partitions.get(tp)
        if work is None or work.revoked:
            return  # fetched before a rebalance took the partition away: its new owner reads it
        for record in records:
            if (work.pending and record.offset <= work.pending[-1]) or (
                work.commit_to is not None and record.offset < work.commit_to
            ):
                continue  # fetched twice (a retried fetch): taken already
            work.pending.append(record.offset)
            key = record.key or b""
            waiting = work.keys.get(key)
            if waiting is not None:
                waiting.append(record)
                continue
            work.keys[key] = deque([record])
            task = asyncio.create_task(self._run_key(tp, work, key))
            work.tasks.add(task)
            task.add_done_callback(work.tasks.discard)

    async def _run_key(self, tp: Any, work: _PartitionWork, key: bytes) -> None:
        """Handles one key's records of a partition one after the other."""
        waiting = work.keys[key]
        try:
            while waiting and not work.revoked:
                record = waiting[0]
                async with self._limit:
                    if work.revoked:
                        return
                    await self._handle(tp, record)
                waiting.popleft()
                self._finished(work, record.offset)
        finally:
            if work.keys.get(key) is waiting:
                del work.keys[key]

    def _finished(self, work: _PartitionWork, offset: int) -> None:
        self.handled += 1
        work.done.add(offset)
        while work.pending and work.pending[0] in work.done:
            first = work.pending.popleft()
            work.done.discard(first)
            work.commit_to = first + 1

    async def _commit_finished(self, only: list[Any] | None = None) -> bool:
        """Commits each partition's offset up to its lowest unfinished record; True if a commit went through."""
        offsets = {
            tp: work.commit_to
            for tp, work in self._partitions.items()
            if (only is None or tp in only) and work.commit_to is not None and work.commit_to != work.committed
        }
        if not offsets or self._consumer is None:
            return False
        from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

        try:
            # Bounded: while the broker is away a commit waits for the coordinator for ever.
            await within(COMMIT_TIMEOUT_SECONDS, self._consumer.commit(offsets))
        except TimeoutError:
            log.warning("commit timed out; trying again", extra={"group": self.group_id})
            return False
        except (CommitFailedError, IllegalStateError) as exc:
            # The group rebalanced meanwhile: the partitions' new owners start
            # from the last commit and repeat what follows (the inbox absorbs it).
            log.info("commit refused by a rebalance", extra={"group": self.group_id, "error": str(exc)})
            return False
        except KafkaError as exc:
            log.warning("commit failed; trying again", extra={"group": self.group_id, "error": repr(exc)})
            return False
        for tp, offset in offsets.items():
            self._partitions[tp].committed = offset
        return True

    async def _revoke(self, revoked: list[Any]) -> None:
        """Stops taking the partitions' records, waits (bounded) for their handlers, commits what finished."""
        works = [(tp, self._partitions[tp]) for tp in revoked if tp in self._partitions]
        for _, work in works:
            work.revoked = True
        running = [task for _, work in works for task in work.tasks]
        if running:
            _, late = await asyncio.wait(running, timeout=self.runtime.revoke_wait)
            for task in late:
                task.cancel()  # its transaction rolls back; the next owner handles the record again
            if late:
                await asyncio.wait(late)
        await self._commit_finished([tp for tp, _ in works])
        for tp, _ in works:
            self._partitions.pop(tp, None)

    async def _handle(self, tp: Any, record: Any) -> None:
        """Hands one record to the unit until it succeeds, or dead-letters it."""
        outcome = await deliver(
            self.subscription,
            bytes(record.value or b""),
            consumer=self.group_id,
            retry_for=self.runtime.retry_for,
            max_retry_delay=self.runtime.max_retry_delay,
        )
        if outcome is not None:
            await self._dead_letter(tp, record, outcome.reason)

    async def _dead_letter(self, tp: Any, record: Any, reason: str) -> None:
        """Produces the record to the dead-letter topic; retried until the broker has it (nothing is lost)."""
        headers = [
            ("content-type", CONTENT_TYPE.encode()),
            ("original-topic", tp.topic.encode()),
            ("original-partition", str(tp.partition).encode()),
            ("original-offset", str(record.offset).encode()),
            ("consumer-group", self.group_id.encode()),
            ("error", reason[:2000].encode(errors="replace")),
        ]
        delay = FIRST_RETRY_DELAY
        while True:
            try:
                await self.runtime.produce([(self.dead_letter_topic, record.key or b"", record.value or b"", headers)])
                break
            except Exception as exc:
                log.warning("dead-lettering failed; trying again", extra={"group": self.group_id, "error": repr(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        log.error(
            "event dead-lettered",
            extra={"consumer": self.group_id, "topic": tp.topic, "partition": tp.partition, "offset": record.offset,
                   "reason": reason},
        )  # fmt: skip
