"""The Kafka topics of the topic registry, for operators and for the Kafka runtime's start.

    python -m todo_kit.kafka_topics --bootstrap HOST:PORT [--replication-factor N] create
    python -m todo_kit.kafka_topics --bootstrap HOST:PORT list

`create` makes every registry topic (todo_contracts.topics) and its dead-letter
topic with the registry's partition count, skips the ones that exist, and
prints what it made; running it again makes nothing. `list` prints the
registry's topics with their partition counts on the broker ("missing" for a
topic the broker lacks). The bootstrap address defaults to TODO_KAFKA_BOOTSTRAP.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass

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
    return parser


async def _run(args: argparse.Namespace) -> int:
    if args.command == "create":
        made = await create_topics(args.bootstrap, args.replication_factor)
        for name in made:
            print(f"created {name}")
        print(f"{len(made)} topic(s) created, {len(registry_topics()) - len(made)} already there")
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
