"""Kafka client choice: aiokafka vs confluent-kafka against the local Kafka 4.4 broker.

Each client produces N CloudEvent-sized records (a real TaskCreated CloudEvent,
key = a user id out of 200, header content-type) with an idempotent producer
and acks=all, then consumes them in a consumer group with manual commits
(one commit per fetched batch). Prints produce throughput, produce-ack latency
p50/p99 (from the send call to the broker's acknowledgement, with the records
of one outbox batch of 500 in flight together, as the relay publishes them) and
consume throughput. --record appends the figures to docs/benchmarks.md.

    .venv/bin/python bench/bench_kafka_clients.py [-n 20000] [--record]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from todo_contracts import envelope
from todo_contracts.task.v1 import events_pb2, task_pb2
from todo_kit.kafka_broker import LocalKafka

CONTENT_TYPE = ("content-type", b"application/cloudevents+protobuf")
BATCH = 500
PARTITIONS = 6


def records(n: int) -> list[tuple[bytes, bytes]]:
    """n (key, value) pairs: TaskCreated CloudEvents of 200 users."""
    made = []
    for i in range(n):
        user = f"user-{i % 200}"
        title = f"Pay the rent number {i}"
        task = task_pb2.Task(task_id=str(uuid.uuid4()), user_id=user, title=title, tags=["finance"])
        event = events_pb2.TaskCreated(user_id=user, task=task)
        ce = envelope.wrap(event, source="/todo/task_svc", subject=task.task_id)
        made.append((user.encode(), ce.SerializeToString(deterministic=True)))
    return made


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def create_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        future.result(30)
    # Leaders are elected just after creation; a client arriving earlier pays metadata retries.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        partitions = admin.list_topics(topic, timeout=5).topics[topic].partitions
        if len(partitions) == PARTITIONS and all(p.leader >= 0 for p in partitions.values()):
            break
        time.sleep(0.1)
    time.sleep(0.5)


async def bench_aiokafka(bootstrap: str, topic: str, data: list[tuple[bytes, bytes]]) -> dict[str, float]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.structs import TopicPartition

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=5)
    await producer.start()
    latencies: list[float] = []
    started = time.perf_counter()
    for first in range(0, len(data), BATCH):
        sent_at = time.perf_counter()
        futures = [
            await producer.send(topic, value=value, key=key, headers=[CONTENT_TYPE])
            for key, value in data[first : first + BATCH]
        ]
        for future in futures:
            await future
            latencies.append(time.perf_counter() - sent_at)
    produce_s = time.perf_counter() - started
    await producer.stop()

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"bench-{uuid.uuid4().hex}", enable_auto_commit=False,
        auto_offset_reset="earliest",
    )  # fmt: skip
    await consumer.start()
    got = 0
    started = time.perf_counter()
    while got < len(data):
        batches = await consumer.getmany(timeout_ms=500, max_records=BATCH)
        offsets = {}
        for tp, batch in batches.items():
            got += len(batch)
            offsets[TopicPartition(tp.topic, tp.partition)] = batch[-1].offset + 1
        if offsets:
            await consumer.commit(offsets)
    consume_s = time.perf_counter() - started
    await consumer.stop()
    return figures(len(data), produce_s, consume_s, latencies)


def bench_confluent(bootstrap: str, topic: str, data: list[tuple[bytes, bytes]]) -> dict[str, float]:
    """The plain (threaded) client: AIOProducer.produce with headers is not implemented in every release."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5})
    latencies: list[float] = []
    done = threading.Event()
    stop_polling = threading.Event()

    def poll() -> None:
        while not stop_polling.is_set():
            producer.poll(0.05)

    lock = threading.Lock()
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    started = time.perf_counter()
    for first in range(0, len(data), BATCH):
        batch = data[first : first + BATCH]
        remaining = [len(batch)]
        done.clear()
        sent_at = time.perf_counter()

        def acked(err: Any, msg: Any, sent_at: float = sent_at, remaining: list[int] = remaining) -> None:
            if err is not None:
                raise RuntimeError(err)
            with lock:
                latencies.append(time.perf_counter() - sent_at)
                remaining[0] -= 1
                if remaining[0] == 0:
                    done.set()

        for key, value in batch:
            producer.produce(topic, value=value, key=key, headers=[CONTENT_TYPE], on_delivery=acked)
        done.wait(60)
    produce_s = time.perf_counter() - started
    stop_polling.set()
    poller.join()
    producer.flush(10)

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}", "enable.auto.commit": False,
         "auto.offset.reset": "earliest"}
    )  # fmt: skip
    consumer.subscribe([topic])
    got = 0
    started = time.perf_counter()
    while got < len(data):
        messages = consumer.consume(num_messages=BATCH, timeout=0.5)
        last: dict[int, int] = {}
        for message in messages:
            if message.error() is None:
                got += 1
                last[message.partition()] = message.offset() + 1
        if last:
            consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in last.items()], asynchronous=False)
    consume_s = time.perf_counter() - started
    consumer.close()
    return figures(len(data), produce_s, consume_s, latencies)


def figures(n: int, produce_s: float, consume_s: float, latencies: list[float]) -> dict[str, float]:
    return {
        "produce_per_s": n / produce_s,
        "ack_p50_ms": 1000 * percentile(latencies, 0.5),
        "ack_p99_ms": 1000 * percentile(latencies, 0.99),
        "consume_per_s": n / consume_s,
        "mean_ack_ms": 1000 * statistics.fmean(latencies),
    }


def run(n: int) -> dict[str, dict[str, float]]:
    data = records(n)
    print(f"record value size: {len(data[0][1])} bytes, {n} records, batches of {BATCH}", file=sys.stderr)
    broker = LocalKafka()
    broker.start()
    try:
        results: dict[str, dict[str, float]] = {}
        clients: list[tuple[str, Callable[[str, str], dict[str, float]]]] = [
            ("aiokafka", lambda b, t: asyncio.run(bench_aiokafka(b, t, data))),
            ("confluent-kafka", lambda b, t: bench_confluent(b, t, data)),
        ]
        for name, bench in clients:
            # A warm-up run first: connections, the group coordinator and the
            # offsets topic are made once, not charged to the first client.
            warm_up = f"warm-up-{name}"
            create_topic(broker.bootstrap, warm_up)
            original, data[:] = list(data), data[:1000]
            bench(broker.bootstrap, warm_up)
            data[:] = original
            topic = f"bench-{name}"
            create_topic(broker.bootstrap, topic)
            results[name] = bench(broker.bootstrap, topic)
            print(name, {k: round(v, 1) for k, v in results[name].items()}, file=sys.stderr)
        return results
    finally:
        broker.remove()


def record(results: dict[str, dict[str, float]], n: int) -> None:
    import aiokafka
    import confluent_kafka

    versions = {"aiokafka": aiokafka.__version__, "confluent-kafka": confluent_kafka.__version__}
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "",
        f"### Kafka clients, local Kafka 4.4 broker — {now}",
        "",
        f"Machine: {platform.machine()}, {platform.processor() or 'cpu'} x{__import__('os').cpu_count()}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}. "
        f"{n} TaskCreated CloudEvents ({PARTITIONS} partitions, 200 keys), idempotent producer, acks=all, "
        f"linger 5 ms, batches of {BATCH} in flight; consumer group with one manual commit per fetched batch.",
        "",
        "| client | produce records/s | ack p50 ms | ack p99 ms | consume records/s |",
        "|---|---|---|---|---|",
    ]
    for name, got in results.items():
        lines.append(
            f"| {name} {versions[name]} | {got['produce_per_s']:.0f} | {got['ack_p50_ms']:.1f} | "
            f"{got['ack_p99_ms']:.1f} | {got['consume_per_s']:.0f} |"
        )
    path = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
    with path.open("a") as out:
        out.write("\n".join(lines) + "\n")
    print(f"appended to {path}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=20_000, help="records per client")
    parser.add_argument("--record", action="store_true", help="append the figures to docs/benchmarks.md")
    args = parser.parse_args()
    results = run(args.n)
    if args.record:
        record(results, args.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
