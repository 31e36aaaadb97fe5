"""The distributed fault rounds in short, in `make test`: three rounds of mixed load on the stack, each with kill -9
of what the seed picks, restart and every check.

The same code as the full run (`make faults-distributed ROUNDS=20`, see docs/reliability.md and
tests/e2e/fault_rounds_distributed.py), with a seed whose three rounds kill the task service with a notification
replica, then the Kafka broker, then the recurrence engine with a reminder replica, and shorter windows.
"""

from __future__ import annotations

from fault_rounds_common import RoundsConfig, report
from fault_rounds_distributed import DistributedRounds
from stack import Stack

SHORT = RoundsConfig(rounds=3, seed=22, workers=4, load_seconds=(1.0, 2.5), reminder_ahead_seconds=(1.0, 4.0))


async def test_kill_9_of_services_broker_and_replicas_under_load_loses_and_doubles_nothing(stack: Stack) -> None:
    rounds = DistributedRounds(stack, SHORT, out=print)
    summary = await rounds.run()
    assert summary.ok, "\n".join(report(summary, rounds.ledger, SHORT))
    assert summary.rounds == 3
    assert summary.kills_by_target == {"task_svc": 1, "notify_svc#1": 1, "kafka": 1, "recurrence_svc": 1,
                                       "reminder_svc#1": 1}  # fmt: skip
    figures = summary.findings.figures
    assert figures["reminders fired"] > 0 and figures["notifications"] > 0
    assert figures["deliveries to audit_svc"] == figures["events"] and figures["consumer groups at the end"] >= 8
