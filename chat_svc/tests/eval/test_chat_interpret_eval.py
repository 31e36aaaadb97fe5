"""The interpreter's accuracy on the evaluation phrases (tuned set and held-out set), per intent kind and overall.

Each phrase gives its text, zone, reference time and the intent fields that matter; a phrase counts as right
when every one of them matches. The floors are what the grammar reaches honestly, a little below the measured
figures (docs/chat.md), so a change that makes understanding worse fails here.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from google.protobuf import timestamp_pb2

from chat_svc.interpret import RulesInterpreter
from todo_contracts.chat.v1 import chat_pb2
from todo_contracts.task.v1 import task_pb2

HERE = Path(__file__).parent
TUNED_FLOOR = 0.95
HELD_OUT_FLOOR = 0.90


def load(name: str) -> list[dict[str, Any]]:
    with (HERE / name).open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _local(stamp: timestamp_pb2.Timestamp, zone: str, present: bool) -> str | None:
    if not present:
        return None
    return stamp.ToDatetime(tzinfo=UTC).astimezone(ZoneInfo(zone)).strftime("%Y-%m-%dT%H:%M:%S")


def _rule(text: str) -> frozenset[str]:
    return frozenset(part for part in text.split(";") if part)


def _reminders(task: task_pb2.Task) -> list[str]:
    out = []
    for rule in task.reminders:
        if rule.HasField("at"):
            out.append("at:" + rule.at.local_time)
        else:
            out.append(f"before:{rule.before_due.seconds}")
    return out


def _priority(value: task_pb2.Priority.ValueType) -> str:
    return task_pb2.Priority.Name(value).removeprefix("PRIORITY_")


def project(intent: chat_pb2.Intent, expect: dict[str, Any], zone: str) -> dict[str, Any]:
    """The intent's values for the keys the expectation names, in the expectation's form."""
    task = intent.task
    got: dict[str, Any] = {
        "kind": chat_pb2.IntentKind.Name(intent.kind).removeprefix("INTENT_KIND_"),
        "clarify": bool(intent.clarifying_question),
        "title": task.title,
        "due": task.due.local_time if task.HasField("due") else None,
        "priority": _priority(task.priority),
        "tags": sorted(task.tags),
        "rrule": _rule(task.recurrence.rrule),
        "reminders": sorted(_reminders(task)),
        "target_query": intent.target_query,
        "refers_to_previous": intent.refers_to_previous,
        "all_tasks": intent.all_tasks,
        "changed_fields": sorted(intent.changed_fields),
        "choice": intent.choice,
        "confirmation": chat_pb2.Confirmation.Name(intent.confirmation).removeprefix("CONFIRMATION_"),
    }
    lst = intent.list_request
    got["list"] = {
        "query": lst.query,
        "statuses": sorted(task_pb2.TaskStatus.Name(s).removeprefix("TASK_STATUS_") for s in lst.statuses),
        "overdue": lst.overdue,
        "priorities": sorted(_priority(p) for p in lst.priorities),
        "tags_any": sorted(lst.tags_any),
        "due_start": _local(lst.due_range.start_time, zone, lst.due_range.HasField("start_time")),
        "due_end": _local(lst.due_range.end_time, zone, lst.due_range.HasField("end_time")),
    }
    snooze = intent.snooze_request
    got["snooze_for"] = snooze.snooze_for.seconds if snooze.HasField("snooze_for") else None
    got["snooze_until"] = _local(snooze.snooze_until, zone, snooze.HasField("snooze_until"))
    settings = intent.channels_request.settings
    got["channels"] = {
        "mask": sorted(intent.channels_request.update_mask.paths),
        "email_enabled": settings.email.enabled,
        "email_address": settings.email.address,
        "webhook_enabled": settings.webhook.enabled,
        "in_app_enabled": settings.in_app_enabled,
        "quiet_enabled": settings.quiet_hours.enabled,
        "quiet_start": settings.quiet_hours.start,
        "quiet_end": settings.quiet_hours.end,
    }
    occur = intent.activity_request.occur_range
    got["activity"] = {
        "start": _local(occur.start_time, zone, occur.HasField("start_time")),
        "end": _local(occur.end_time, zone, occur.HasField("end_time")),
        "target_query": intent.target_query,
    }
    return got


def expected(expect: dict[str, Any]) -> dict[str, Any]:
    """The expectation in comparable form, with the defaults every phrase implies."""
    out = dict(expect)
    out.setdefault("clarify", False)
    if "tags" in out:
        out["tags"] = sorted(out["tags"])
    if "rrule" in out:
        out["rrule"] = _rule(out["rrule"] or "")
    if "reminders" in out:
        out["reminders"] = sorted(out["reminders"])
    if "changed_fields" in out:
        out["changed_fields"] = sorted(out["changed_fields"])
    if "list" in out:
        defaults: dict[str, Any] = {"query": "", "statuses": [], "overdue": False, "priorities": [], "tags_any": [],
                                    "due_start": None, "due_end": None}  # fmt: skip
        defaults.update(out["list"])
        defaults["statuses"] = sorted(defaults["statuses"])
        out["list"] = defaults
    if out.get("kind") == "SNOOZE_REMINDER":
        out.setdefault("snooze_for", None)
        out.setdefault("snooze_until", None)
    if "channels" in out:
        defaults = {"email_enabled": False, "email_address": "", "webhook_enabled": False, "in_app_enabled": False,
                    "quiet_enabled": False, "quiet_start": "", "quiet_end": ""}  # fmt: skip
        defaults.update(out["channels"])
        defaults["mask"] = sorted(defaults["mask"])
        out["channels"] = defaults
    if "activity" in out:
        defaults = {"start": None, "end": None, "target_query": ""}
        defaults.update(out["activity"])
        out["activity"] = defaults
    return out


def evaluate(rows: list[dict[str, Any]]) -> tuple[float, dict[str, tuple[int, int]], list[str]]:
    """Overall accuracy, (right, total) per expected kind, and what went wrong."""
    interpreter = RulesInterpreter()
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    failures = []
    for row in rows:
        reference = datetime.fromisoformat(row["reference_time"].replace("Z", "+00:00"))
        intent = interpreter.interpret(row["text"], row["time_zone"], reference)
        want = expected(row["expect"])
        if want.get("clarify"):
            want = {"kind": want["kind"], "clarify": True}
        got = project(intent, want, row["time_zone"])
        wrong = {key: (got[key], value) for key, value in want.items() if got[key] != value}
        kind = want["kind"]
        total[kind] += 1
        if wrong:
            failures.append(
                f"{row['text']!r} [{row['time_zone']}]: "
                + "; ".join(f"{key}: got {g!r}, want {w!r}" for key, (g, w) in wrong.items())
            )
        else:
            right[kind] += 1
    per_kind = {kind: (right[kind], total[kind]) for kind in sorted(total)}
    return sum(right.values()) / max(1, len(rows)), per_kind, failures


def report(name: str, rows: list[dict[str, Any]]) -> float:
    accuracy, per_kind, failures = evaluate(rows)
    print(f"\n{name}: {len(rows)} phrases, accuracy {accuracy:.1%}")
    for kind, (ok, count) in per_kind.items():
        print(f"  {kind:<18} {ok:>3}/{count:<3} {ok / count:.0%}")
    for failure in failures:
        print("  MISS", failure)
    return accuracy


def test_evaluation_sets_are_large_varied_and_cover_every_kind() -> None:
    tuned, held_out = load("phrases.jsonl"), load("heldout.jsonl")
    assert len(tuned) >= 300 and len(held_out) >= 60

    def phrase(row: dict[str, Any]) -> tuple[str, str, str]:
        return row["text"], row["time_zone"], row["reference_time"]

    assert not {phrase(row) for row in tuned} & {phrase(row) for row in held_out}
    kinds = {row["expect"]["kind"] for row in tuned}
    assert kinds == {chat_pb2.IntentKind.Name(k).removeprefix("INTENT_KIND_") for k in chat_pb2.IntentKind.values()}
    assert {"Pacific/Auckland", "Europe/Berlin", "America/New_York"} <= {row["time_zone"] for row in tuned}


def test_tuned_set_accuracy_stays_above_its_floor() -> None:
    assert report("tuned set", load("phrases.jsonl")) >= TUNED_FLOOR


def test_held_out_set_accuracy_stays_above_its_floor() -> None:
    assert report("held-out set", load("heldout.jsonl")) >= HELD_OUT_FLOOR
