"""The fault rounds in short, in `make test`: three rounds of mixed load, kill -9, restart and every check.

The same code as the full run (`make faults ROUNDS=100`, see docs/reliability.md
and fault_rounds.py), with a fixed seed and shorter windows.
"""

from __future__ import annotations

from fault_rounds import FaultRounds, RoundsConfig, report
from host_process import HostProcess

SHORT = RoundsConfig(rounds=3, seed=3, workers=4, load_seconds=(1.0, 2.5), reminder_ahead_seconds=(1.0, 4.0))


async def test_kill_9_at_random_moments_under_load_loses_and_doubles_nothing(host_process: HostProcess) -> None:
    rounds = FaultRounds(host_process, SHORT, out=print)
    summary = await rounds.run()
    assert summary.ok, "\n".join(report(summary, rounds.ledger, SHORT))
    assert (summary.rounds, summary.kills) == (3, 3)
    assert (
        summary.findings.figures["reminders fired"] > 0
        and rounds.ledger.acknowledged["complete (recurring occurrence)"] > 0
    )
