"""Randomized fault rounds: mixed load on the real embedded default, kill -9 at a random moment, restart, check.

    .venv/bin/python tests/e2e/fault_rounds.py --rounds 100 [--seed N] [--data-dir DIR] [--keep]
    make faults ROUNDS=100 SEED=1
    make faults-distributed ROUNDS=20 SEED=1     # --mode distributed: fault_rounds_distributed.py

The load, the resolution of unknown outcomes, the checks that do not depend on
the runtime and the round loop are in fault_rounds_common.py, shared with the
distributed variant; this file holds what is specific to the embedded default.

Runs `python -m todo_kit.embedded_host` (what `make up` runs) as a child
process on one data folder for the whole run, so state accumulates as in real
life. Each round:

1. load: a few concurrent clients (two users) send CreateTask (plain; with
   reminders a few seconds ahead, absolute or before the due time; recurring,
   minutely or daily, with due times in the past, some repeating from
   completion), UpdateTask (a new title; a due time moved, which re-plans
   reminders) and CompleteTask of the open occurrence of a recurring series;
2. at a random moment of the round's load window (1-4 s) the host gets SIGKILL
   (by the pid of the process this script started); the clients stop at their
   first failed call;
3. the host starts again on the same data folder and every command whose
   outcome is unknown is resolved (see below);
4. once quiet (every outbox published, every consumer at the end of its topic,
   no reminder past its time still waiting), the checks run over everything
   the run ever did.

What "acknowledged" means: a command is acknowledged when its call returned
OK. A call that failed because the host died may or may not have taken
effect; the client resolves it after the restart the way a real client
would, with a command that cannot take effect twice:
- CreateTask: sent again with the same client_request_id; the task service
  returns the task of the first attempt if it had committed;
- CompleteTask: sent again; completing a completed task changes nothing;
- UpdateTask (sent with expected_version): not idempotent by itself, so the
  client reads the task first; at the version it was sent against, it sends
  the update again with the same expected_version; one version further with
  the update's values, the update had taken effect.
Every command ends acknowledged, so each must have taken effect exactly once.

The checks (lost, doubled, wrong):
- every acknowledged create: exactly one task per client request id, its
  final title, due time, version and status as the last acknowledged command
  left it, one task event per task version (none missing, none twice);
- every acknowledged completion of a recurring occurrence: exactly one next
  occurrence (one task per (series, index), indices without gaps, one
  OccurrenceRequested per index), only the newest one open;
- every task event reached every consumer that acts on it (its id is in the
  consumer's inbox, processed_events) and every consumer's position is at
  the end of the topic; nothing in the dead letters;
- every task with reminder rules has its reminders planned for its current
  version, at the times its rules give; every reminder whose time has passed
  fired exactly once (one ReminderDue per reminder id, one firing per task,
  rule and time), never before its time, flagged late exactly when it fired
  more than TODO_REMINDER_LATE_AFTER_SECONDS after it.

The checks read the services' and the runtime's databases directly (tasks,
plans, reminders, inboxes, event log, positions, dead letters): they are
specific to the embedded runtime by nature. The seed fixes every choice the
clients make (what to send, when to kill); timings vary from run to run.
Exit status 1 on any finding (the data folder is kept to look at), 0 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import signal
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from fault_rounds_common import (
    LATE_AFTER_SECONDS,
    SETTLE_GRACE,
    TASK_TOPIC,
    USERS,
    FaultRoundsBase,
    Findings,
    Ledger,
    LoggedEvent,
    RoundsConfig,
    RunSummary,
    check_service_state,
    consumers_of,
    distinct_events,
    logged_event,
    read_service_rows,
    report,
)
from host_process import HostProcess, free_port

from todo_contracts import envelope

DATABASES = ("todo_task", "todo_reminder", "todo_recurrence", "todo_runtime")
INBOX_OF = {"task_svc": "todo_task", "reminder_svc": "todo_reminder", "recurrence_svc": "todo_recurrence"}


class StateReader:
    """Reads the host's databases on its embedded PostgreSQL (which a killed host leaves running)."""

    def __init__(self, host: HostProcess) -> None:
        self.host = host
        self.conns: dict[str, asyncpg.Connection] = {}
        self.events: dict[int, tuple[str, LoggedEvent]] = {}  # seq -> (topic, event); the log is never pruned here
        self.cut = datetime.min.replace(tzinfo=UTC)
        """Reminders due before it had fired, with their events published, when the host was last seen quiet."""
        self._last_seq = 0

    async def open(self) -> None:
        for name in DATABASES:
            self.conns[name] = await asyncpg.connect(self.host.database_url(name))

    async def close(self) -> None:
        for conn in self.conns.values():
            await conn.close()
        self.conns.clear()

    async def read_new_events(self) -> None:
        rows = await self.conns["todo_runtime"].fetch(
            "SELECT seq, topic, payload FROM event_log WHERE seq > $1 ORDER BY seq", self._last_seq
        )
        for row in rows:
            self._last_seq = row["seq"]
            if row["topic"] not in ("task-events", "reminder-events"):
                continue  # the rounds check tasks and reminders; other services' events are not theirs
            self.events[row["seq"]] = (row["topic"], logged_event(envelope.decode(bytes(row["payload"]))))

    async def quiet(self) -> str:
        """What is still moving ("" when nothing is): reminders past their time, events, outboxes.

        Once quiet, every reminder due before `cut` has fired and its ReminderDue is in the event log;
        reminders due later may fire while the checks read, so the checks leave their firing to a later round.
        """
        moment = datetime.now(UTC) - SETTLE_GRACE
        # Reminders first: one that fires before this query committed its ReminderDue to the outbox,
        # which the outbox check below then sees published.
        waiting = await self.conns["todo_reminder"].fetchval(
            "SELECT count(*) FROM reminders WHERE state = 1 AND fire_time < $1", moment
        )
        if waiting:
            return f"{waiting} reminders past their time not fired yet"
        runtime = self.conns["todo_runtime"]
        last = await runtime.fetchval("SELECT coalesce(max(seq), 0) FROM event_log")
        last_task = await runtime.fetchval("SELECT coalesce(max(seq), 0) FROM event_log WHERE topic = $1", TASK_TOPIC)
        behind = await runtime.fetch(
            "SELECT consumer, position FROM consumer_positions WHERE topic = $1 AND position < $2", TASK_TOPIC,
            last_task,
        )  # fmt: skip
        if behind:
            return "consumers behind: " + ", ".join(f"{r['consumer']} at {r['position']}/{last_task}" for r in behind)
        for name in ("todo_task", "todo_reminder", "todo_recurrence"):
            unpublished = await self.conns[name].fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            if unpublished:
                return f"{unpublished} events in the outbox of {name}"
        if await runtime.fetchval("SELECT coalesce(max(seq), 0) FROM event_log") != last:
            return "events still being published"
        self.cut = moment
        return ""

    async def last_scheduled_fire_time(self) -> datetime | None:
        return await self.conns["todo_reminder"].fetchval(  # type: ignore[no-any-return]
            "SELECT max(fire_time) FROM reminders WHERE state = 1"
        )


async def check(ledger: Ledger, reader: StateReader) -> Findings:
    """Every check described at the top, over everything the run did so far."""
    found = Findings()
    await reader.read_new_events()
    db = reader.conns
    rows = await read_service_rows(db["todo_task"], db["todo_reminder"])
    inbox = {
        consumer: {r["event_id"] for r in await db[name].fetch(
            "SELECT event_id FROM processed_events WHERE consumer = $1", consumer)}
        for consumer, name in INBOX_OF.items()
    }  # fmt: skip
    dead = await db["todo_runtime"].fetch("SELECT consumer, event_id, event_type, error FROM dead_letters")
    positions = await db["todo_runtime"].fetch("SELECT consumer, topic, position FROM consumer_positions")

    # Events, once per id (the relay may append an event again after a kill: its consumers' inboxes absorb it).
    distinct, appended_again = distinct_events(reader.events.values())
    check_service_state(ledger, rows, distinct, reader.cut, found)

    # Every task event reached every consumer that acts on it; every consumer is at the end of its topic.
    delivered: Counter[str] = Counter()
    for topic, event in distinct.values():
        if topic != TASK_TOPIC:
            continue
        for consumer in consumers_of(event):
            if event.event_id in inbox[consumer]:
                delivered[consumer] += 1
            else:
                found.lost.append(f"{event.type} {event.event_id} (task {event.task_id or event.series_id}) "
                                  f"never reached {consumer}")  # fmt: skip
    last_task_seq = max((seq for seq, (t, _) in reader.events.items() if t == TASK_TOPIC), default=0)
    for row in positions:
        if row["topic"] == TASK_TOPIC and row["position"] < last_task_seq:
            found.lost.append(f"{row['consumer']} stopped at {row['position']} of {last_task_seq} in {TASK_TOPIC}")
    found.wrong += [f"dead letter: {r['consumer']} {r['event_type']} {r['event_id']}: {r['error']}" for r in dead]
    found.figures.update(
        {
            "events appended twice (absorbed)": appended_again,
            **{f"deliveries to {name}": delivered[name] for name in INBOX_OF},
            "dead letters": len(dead),
        }
    )
    return found


# --- the run -----------------------------------------------------------------------


class FaultRounds(FaultRoundsBase):
    """The rounds against one embedded host process: each round kills it with SIGKILL and starts it again."""

    def __init__(self, host: HostProcess, config: RoundsConfig, out: Callable[[str], None] = print) -> None:
        super().__init__(config, out)
        self.host = host
        self.reader = StateReader(host)

    @property
    def address(self) -> str:
        return self.host.address

    async def start(self) -> None:
        self.host.env["TODO_REMINDER_LATE_AFTER_SECONDS"] = str(LATE_AFTER_SECONDS)
        self.host.start()
        await self.host.wait_serving()
        self.tokens = {user: self.host.bearer(user) for user in USERS}
        await self.reader.open()

    async def close(self) -> None:
        await self.reader.close()

    async def finish(self) -> None:
        self.host.kill(signal.SIGTERM)
        assert self.host.process is not None
        if self.host.process.returncode != 0:
            self.summary.failure = f"the host did not stop cleanly (exit status {self.host.process.returncode})"

    async def inject(self, rng: random.Random) -> str:
        self.host.kill()  # SIGKILL, by the pid of the process this run started
        self.summary.kills += 1
        self.summary.kills_by_target["host"] += 1
        return "kill -9"

    async def recover(self) -> None:
        self.host.start()
        await self.host.wait_serving()

    async def quiet(self) -> str:
        return await self.reader.quiet()

    async def check(self) -> Findings:
        return await check(self.ledger, self.reader)

    async def last_scheduled_fire_time(self) -> datetime | None:
        return await self.reader.last_scheduled_fire_time()


def main(argv: list[str] | None = None) -> int:
    """Runs the rounds; exit status 1 on any finding."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, help="where the run's data goes (default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the data folder after a successful run")
    parser.add_argument(
        "--mode", choices=("embedded", "distributed"), default="embedded",
        help="the embedded default (one host process) or the distributed stack (fault_rounds_distributed.py)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    config = RoundsConfig(rounds=args.rounds, seed=args.seed)
    if args.mode == "distributed":
        import fault_rounds_distributed

        return fault_rounds_distributed.main(config, args.data_dir, args.keep)
    # Short: PostgreSQL's socket lives in the data folder and its path has a length limit.
    folder = args.data_dir or Path(tempfile.mkdtemp(prefix="todo-faults-"))
    folder.mkdir(parents=True, exist_ok=True)
    host = HostProcess(folder / "data", free_port(), folder / "host.log")
    rounds = FaultRounds(host, config, out=lambda line: print(line, flush=True))

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)  # stop what this run started on SIGTERM too, not only on Ctrl-C
    summary: RunSummary | None = None
    try:
        summary = asyncio.run(rounds.run())
    except KeyboardInterrupt:
        rounds.summary.failure = f"interrupted while {rounds.phase}"
        summary = rounds.summary
    except Exception as exc:
        rounds.summary.failure = f"{type(exc).__name__}: {exc} (while {rounds.phase})"
        summary = rounds.summary
    finally:
        host.stop()  # the host this run started (by pid), and the PostgreSQL it leaves when killed
    for line in report(summary, rounds.ledger, config):
        print(line)
    if summary.ok and not args.keep and not args.data_dir:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        print(f"data and host log kept in {folder}")
    return 0 if summary.ok else 130 if summary.failure.startswith("interrupted") else 1


if __name__ == "__main__":
    sys.exit(main())
