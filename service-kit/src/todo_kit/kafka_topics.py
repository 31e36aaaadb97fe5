"""The Kafka topics of the topic registry, for operators and for the Kafka runtime's start.

    python -m todo_kit.kafka_topics --bootstrap HOST:PORT [--replication-factor N] create
    python -m todo_kit.kafka_topics --bootstrap HOST:PORT list
    python -m todo_kit.kafka_topics --bootstrap HOST:PORT dead-letters [--json]

`create` makes every registry topic (todo_contracts.topics) and its dead-letter
topic with the registry's partition count, skips the ones that exist, and
prints what it made; running it again makes nothing. `list` prints the
registry's topics with their partition counts on the broker ("missing" for a
topic the broker lacks). `dead-letters` prints every record on the dead-letter
topics (where it came from, the consumer group that gave up, the error, the
event's id and type; never its payload, which holds users' content); it reads
without a consumer group and changes nothing. The bootstrap address defaults
to TODO_KAFKA_BOOTSTRAP.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from todo_contracts import topics

TOPIC_ALREADY_EXISTS = 36
"""Kafka's error code for a topic that exists already."""


@dataclass(frozen=True)
class TopicSpec:
    """A topic to have on the broker."""

    name: str
    partitions: int


def registry_topics() -> list[TopicSpec]:
    """Every registry topic and its dead-letter topic, with its partition count."""
    found: list[TopicSpec] = []
    for topic in topics.ALL_TOPICS:
        found.append(TopicSpec(topic.name, topic.partitions))
        found.append(TopicSpec(topic.dead_letter, topic.partitions))
    return found


async def existing_topics(bootstrap: str) -> dict[str, int]:
    """Topic name -> partition count of every topic on the broker."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000)
    await admin.start()
    try:
        described = await admin.describe_topics()
    finally:
        await admin.close()
    return {t["topic"]: len(t["partitions"]) for t in described if not t["topic"].startswith("__")}


async def create_topics(bootstrap: str, replication_factor: int = 1, specs: list[TopicSpec] | None = None) -> list[str]:
    """Creates the missing topics of specs (default: the registry's); returns the names it made.

    Idempotent: a topic that exists (made meanwhile by another process too) is left as it is.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import for_code

    wanted = registry_topics() if specs is None else specs
    present = await existing_topics(bootstrap)
    missing = [spec for spec in wanted if spec.name not in present]
    if not missing:
        return []
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000)
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(spec.name, spec.partitions, replication_factor) for spec in missing], timeout_ms=15_000
        )
    finally:
        await admin.close()
    made: list[str] = []
    for error in response.topic_errors:
        name, code = error[0], error[1]
        if code == 0:
            made.append(name)
        elif code != TOPIC_ALREADY_EXISTS:
            message = error[2] if len(error) > 2 else ""
            raise RuntimeError(f"creating topic {name} failed: {for_code(code).__name__} {message or ''}".strip())
    return sorted(made)


async def dead_letters(bootstrap: str, names: list[str] | None = None) -> list[dict[str, Any]]:
    """Every record of the dead-letter topics (default: the registry's), oldest first per partition, no payloads."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    from todo_contracts import envelope

    present = await existing_topics(bootstrap)
    if names is None:
        names = [spec.name for spec in registry_topics() if spec.name.endswith(topics.DEAD_LETTER_SUFFIX)]
    partitions = [TopicPartition(name, p) for name in names if name in present for p in range(present[name])]
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            for tp, records in (await consumer.getmany(*remaining, timeout_ms=500)).items():
                for record in records:
                    headers = {k: v.decode(errors="replace") for k, v in record.headers}
                    try:
                        decoded = envelope.decode(record.value)
                        event_id, event_type = decoded.id, decoded.type
                    except envelope.EnvelopeError:
                        event_id, event_type = "", "(undecodable)"
                    found.append({
                        "topic": tp.topic, "partition": tp.partition, "offset": record.offset,
                        "original_topic": headers.get("original-topic", ""),
                        "original_partition": headers.get("original-partition", ""),
                        "original_offset": headers.get("original-offset", ""),
                        "consumer_group": headers.get("consumer-group", ""), "error": headers.get("error", ""),
                        "event_id": event_id, "event_type": event_type,
                    })  # fmt: skip
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return found


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m todo_kit.kafka_topics", description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", default=os.environ.get("TODO_KAFKA_BOOTSTRAP", ""), help="HOST:PORT[,...]")
    parser.add_argument(
        "--replication-factor",
        type=int,
        default=int(os.environ.get("TODO_KAFKA_REPLICATION_FACTOR", "1") or "1"),
        help="replicas of each new topic (default TODO_KAFKA_REPLICATION_FACTOR or 1)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("create", help="create the registry's missing topics and their dead-letter topics")
    commands.add_parser("list", help="show the registry's topics on the broker")
    letters = commands.add_parser("dead-letters", help="show the records of the dead-letter topics (no payloads)")
    letters.add_argument("--json", action="store_true", help="one JSON object a line")
    return parser


async def _run(args: argparse.Namespace) -> int:
    if args.command == "create":
        made = await create_topics(args.bootstrap, args.replication_factor)
        for name in made:
            print(f"created {name}")
        print(f"{len(made)} topic(s) created, {len(registry_topics()) - len(made)} already there")
        return 0
    if args.command == "dead-letters":
        found = await dead_letters(args.bootstrap)
        for item in found:
            if args.json:
                print(json.dumps(item))
            else:
                print(f"{item['topic']}/{item['partition']}@{item['offset']}  from {item['original_topic']}/"
                      f"{item['original_partition']}@{item['original_offset']}  {item['consumer_group']}  "
                      f"{item['event_type']}  {item['event_id']}\n    {item['error']}")  # fmt: skip
        if not found and not args.json:
            print("no dead letters")
        return 0
    present = await existing_topics(args.bootstrap)
    for spec in registry_topics():
        count = present.get(spec.name)
        print(f"{spec.name}\t{'missing' if count is None else f'{count} partitions'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: python -m todo_kit.kafka_topics."""
    args = _parser().parse_args(argv)
    if not args.bootstrap:
        print("give --bootstrap HOST:PORT or set TODO_KAFKA_BOOTSTRAP", file=sys.stderr)
        return 2
    if args.replication_factor < 1:
        print("--replication-factor must be at least 1", file=sys.stderr)
        return 2
    return asyncio.run(_run(args))


if __name__ == "__main__":
    sys.exit(main())
