"""Chat benchmark on the embedded default: Interpret and SendMessage latency.

1. Interpret: every phrase of the chat's evaluation set (in its own zone and
   reference time), --rounds times, one call at a time, timed at the client.
2. SendMessage: --conversations conversations, each adding a task with a due
   time, a reminder and a rule ("remind me to ... tomorrow at 7pm"), listing,
   and completing it by its words ("watered the ..."), one message at a time
   per conversation and --clients conversations at once. Each call goes through
   the interpreter and the task, reminder and recurrence services.

Starts its own embedded default on a scratch data folder. --record appends the
figures to docs/benchmarks.md with the machine and the date.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import grpc
from bench_tasks import Host, percentiles, record_section, token
from google.protobuf import timestamp_pb2

from todo_contracts.chat.v1 import chat_pb2, chat_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
PHRASES = ROOT / "chat_svc" / "tests" / "eval" / "phrases.jsonl"
PLANTS = ["roses", "tulips", "ferns", "orchids", "basil", "mint", "cactus", "lilies", "ivy", "daisies"]


def phrases() -> list[chat_pb2.InterpretRequest]:
    requests = []
    for line in PHRASES.read_text().splitlines():
        if not line.strip():
            continue
        case = json.loads(line)
        reference = timestamp_pb2.Timestamp()
        reference.FromJsonString(case["reference_time"])
        requests.append(
            chat_pb2.InterpretRequest(text=case["text"], time_zone=case["time_zone"], reference_time=reference)
        )
    return requests


async def bench_interpret(host: Host, data_dir: Path, rounds: int) -> list[str]:
    md = token(data_dir, "interpreter")
    requests = phrases()
    latencies: list[float] = []
    understood = 0
    async with grpc.aio.insecure_channel(host.address) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        for request in requests[:20]:  # warm-up
            await stub.Interpret(request, metadata=md)
        for _ in range(rounds):
            for request in requests:
                started = time.perf_counter()
                reply = await stub.Interpret(request, metadata=md)
                latencies.append(time.perf_counter() - started)
                understood += reply.intent.kind != chat_pb2.INTENT_KIND_UNSPECIFIED
    p50, p99, worst = percentiles(latencies)
    return [
        f"| Interpret (gRPC round trip), {len(requests)} evaluation phrases x {rounds}, one at a time "
        f"| {p50:.1f} ms | {p99:.1f} ms | {worst:.1f} ms | {understood / len(latencies):.0%} with a command kind |"
    ]


async def bench_send(host: Host, data_dir: Path, conversations: int, clients: int) -> list[str]:
    latencies: dict[str, list[float]] = {"create": [], "list": [], "complete": []}
    failures: list[str] = []
    queue = list(range(conversations))
    async with grpc.aio.insecure_channel(host.address) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)

        async def converse(n: int) -> None:
            md = token(data_dir, f"chatter-{n}")
            plant = f"{PLANTS[n % len(PLANTS)]} {n}"
            conversation_id = ""
            for step, text in (
                ("create", f"remind me to water the {plant} tomorrow at 7pm"),
                ("list", "what's due tomorrow?"),
                ("complete", f"watered the {plant}"),
            ):
                request = chat_pb2.SendMessageRequest(
                    conversation_id=conversation_id, text=text, time_zone="Europe/Berlin",
                    client_request_id=f"bench-{n}-{step}",
                )  # fmt: skip
                started = time.perf_counter()
                reply = await stub.SendMessage(request, metadata=md)
                latencies[step].append(time.perf_counter() - started)
                conversation_id = reply.conversation_id
                if step != "list" and (reply.needs_clarification or not reply.actions):
                    failures.append(f"{step} {plant}: {reply.reply}")

        async def client() -> None:
            while queue:
                await converse(queue.pop())

        await asyncio.gather(*(client() for _ in range(clients)))
    lines = []
    for step, values in latencies.items():
        p50, p99, worst = percentiles(values)
        lines.append(
            f"| SendMessage, {step} ({conversations} conversations, {clients} at a time) "
            f"| {p50:.1f} ms | {p99:.1f} ms | {worst:.1f} ms | {len(failures)} not carried out |"
        )
    if failures:
        print("not carried out:", *failures[:5], sep="\n  ")
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--conversations", type=int, default=300)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="todo-bench-") as scratch:
        data_dir = Path(scratch) / "data"
        host = Host(data_dir)
        try:
            await host.wait_serving()
            lines += await bench_interpret(host, data_dir, args.rounds)
            print(lines[-1], flush=True)
            lines += await bench_send(host, data_dir, args.conversations, args.clients)
            print("\n".join(lines[-3:]), flush=True)
        finally:
            host.stop()
    if args.record:
        record_section(
            "Chat, embedded default",
            "Command: `make bench-chat`.",
            ["measure", "p50", "p99", "max", "notes"],
            lines,
        )


if __name__ == "__main__":
    asyncio.run(main())
