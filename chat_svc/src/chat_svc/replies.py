"""What the assistant says: plain, short English, times in the user's zone. Pure functions of what was done."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from todo_contracts.audit.v1 import audit_pb2
from todo_contracts.chat.v1 import chat_pb2
from todo_contracts.common.v1 import common_pb2
from todo_contracts.notify.v1 import notify_pb2
from todo_contracts.reminder.v1 import reminder_pb2
from todo_contracts.task.v1 import task_pb2

TITLE_SHOWN = 80
"""Longer titles are cut in replies; the task keeps its whole title."""

HELP = (
    "You can say things like:\n"
    "- remind me to pay rent on the 1st of every month at 9am, high priority, tag finance\n"
    "- I paid the rent / reopen the rent task / drop the yoga class\n"
    "- move the dentist to friday at 10 / add the tag kids to soccer practice\n"
    "- what's due this week? / which tasks are late? / look for insurance\n"
    "- snooze it 10 minutes\n"
    "- email me my reminders at alice@example.com\n"
    "- what happened lately?"
)
NOT_UNDERSTOOD = "Sorry, I didn't understand that. Say 'help' to see what I can do."
WHICH_TASK = "Which task do you mean?"

_VERBS = {
    chat_pb2.INTENT_KIND_COMPLETE_TASK: ("complete", "Completed"),
    chat_pb2.INTENT_KIND_REOPEN_TASK: ("reopen", "Reopened"),
    chat_pb2.INTENT_KIND_DELETE_TASK: ("delete", "Deleted"),
    chat_pb2.INTENT_KIND_UPDATE_TASK: ("change", "Changed"),
    chat_pb2.INTENT_KIND_CREATE_TASK: ("add", "Added"),
    chat_pb2.INTENT_KIND_SNOOZE_REMINDER: ("snooze", "Snoozed"),
    chat_pb2.INTENT_KIND_LIST_TASKS: ("search for", "Listed"),
    chat_pb2.INTENT_KIND_UPDATE_CHANNELS: ("change", "Changed"),
    chat_pb2.INTENT_KIND_SHOW_ACTIVITY: ("show", "Showed"),
}
_PRIORITIES = {
    task_pb2.PRIORITY_NONE: "no priority",
    task_pb2.PRIORITY_LOW: "low priority",
    task_pb2.PRIORITY_MEDIUM: "medium priority",
    task_pb2.PRIORITY_HIGH: "high priority",
    task_pb2.PRIORITY_URGENT: "urgent",
}
_FREQUENCIES = {
    "DAILY": ("daily", "days"),
    "WEEKLY": ("weekly", "weeks"),
    "MONTHLY": ("monthly", "months"),
    "YEARLY": ("yearly", "years"),
    "HOURLY": ("hourly", "hours"),
    "MINUTELY": ("every minute", "minutes"),
}
_DAYS = {"MO": "Mon", "TU": "Tue", "WE": "Wed", "TH": "Thu", "FR": "Fri", "SA": "Sat", "SU": "Sun"}
_FIELD_WORDS = {
    "title": "the title",
    "description": "the description",
    "priority": "the priority",
    "tags": "a tag",
    "due": "the due time",
    "local_time": "the time",
    "time_zone": "the time zone",
    "reminders": "a reminder",
    "before_due": "the reminder time",
    "at": "the reminder time",
    "recurrence": "the repeat rule",
    "rrule": "the repeat rule",
    "query": "the search words",
    "snooze_for": "the snooze time",
    "snooze_until": "the snooze time",
    "update_mask": "what to change",
    "email": "the e-mail settings",
    "address": "the e-mail address",
    "webhook": "the webhook settings",
    "url": "the webhook address",
    "quiet_hours": "the quiet hours",
    "start": "the start time",
    "end": "the end time",
    "page_size": "the page size",
    "task_id": "the task",
}
_VERB_STARTS = ("must ", "is ", "are ", "cannot ", "can't ", "needs ", "has ", "may ")


def title(task: task_pb2.Task) -> str:
    """The task's title in quotes, on one line, cut to TITLE_SHOWN characters."""
    text = " ".join(task.title.split())
    if len(text) > TITLE_SHOWN:
        text = text[: TITLE_SHOWN - 3] + "..."
    return f"'{text}'"


def when(instant: datetime, zone: object, now: datetime) -> str:
    """A moment as the user reads it in their zone: "Wed 1 Apr 09:00" (with the year when it is not this year's)."""
    local = instant.astimezone(zone)  # type: ignore[arg-type]
    year = f" {local.year}" if local.year != now.astimezone(zone).year else ""  # type: ignore[arg-type]
    return f"{local:%a} {local.day} {local:%b}{year} {local:%H:%M}"


def _instant(value: common_pb2.ZonedDateTime) -> datetime:
    return value.instant.ToDatetime(tzinfo=UTC)


def due(task: task_pb2.Task, zone: object, now: datetime) -> str:
    """When the task is due, in the user's zone ("" when it has no due time)."""
    if not task.HasField("due") or not task.due.HasField("instant"):
        return ""
    return when(_instant(task.due), zone, now)


def task_line(task: task_pb2.Task, zone: object, now: datetime) -> str:
    """One task in a list: "Pay rent (due Tue 1 Dec 09:00)"."""
    shown = title(task)[1:-1]
    details = []
    if task.status == task_pb2.TASK_STATUS_COMPLETED:
        details.append("done")
    when_due = due(task, zone, now)
    if when_due:
        details.append(f"due {when_due}")
    return f"{shown} ({', '.join(details)})" if details else shown


def repeats(rrule: str) -> str:
    """A recurrence rule in words: "repeats monthly", "repeats every 2 weeks on Tue and Fri"."""
    parts = dict(p.split("=", 1) for p in rrule.upper().split(";") if "=" in p)
    freq = parts.get("FREQ", "")
    single, plural = _FREQUENCIES.get(freq, ("", ""))
    if not single:
        return "repeats"
    interval = parts.get("INTERVAL", "1")
    text = f"repeats every {interval} {plural}" if interval.isdigit() and int(interval) > 1 else f"repeats {single}"
    days = [_DAYS.get(d[-2:], "") for d in parts.get("BYDAY", "").split(",") if d]
    if freq == "WEEKLY" and days and all(days):
        text += " on " + _and(days)
    return text


def _and(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def reminder_times(task: task_pb2.Task, zone: object, now: datetime) -> list[str]:
    """When each reminder rule of the task fires next, in the user's zone."""
    times = []
    for rule in task.reminders:
        if rule.HasField("at") and rule.at.HasField("instant"):
            times.append(_instant(rule.at))
        elif rule.HasField("before_due") and task.HasField("due") and task.due.HasField("instant"):
            times.append(_instant(task.due) - rule.before_due.ToTimedelta())
    times.sort()
    due_day = _instant(task.due).astimezone(zone).date() if task.HasField("due") else None  # type: ignore[arg-type]
    shown = []
    for moment in times:
        local = moment.astimezone(zone)  # type: ignore[arg-type]
        shown.append(f"{local:%H:%M}" if local.date() == due_day else when(moment, zone, now))
    return shown


def created(task: task_pb2.Task, zone: object, now: datetime) -> str:
    """ "Added 'Pay rent', due Wed 1 Apr 09:00, repeats monthly; I'll remind you at 08:30." """
    parts = [f"Added {title(task)}"]
    when_due = due(task, zone, now)
    if when_due:
        parts.append(f"due {when_due}")
    if task.priority in (task_pb2.PRIORITY_HIGH, task_pb2.PRIORITY_URGENT, task_pb2.PRIORITY_LOW,
                         task_pb2.PRIORITY_MEDIUM):  # fmt: skip
        parts.append(_PRIORITIES[task.priority])
    if task.tags:
        parts.append("tagged " + ", ".join(task.tags))
    if task.HasField("recurrence"):
        parts.append(repeats(task.recurrence.rrule))
    text = ", ".join(parts)
    reminders = reminder_times(task, zone, now)
    if reminders:
        text += f"; I'll remind you at {_and(reminders)}"
    return text + "."


def done(kind: int, task: task_pb2.Task) -> str:
    """ "Completed 'Pay rent'." and the like, for complete, reopen and delete."""
    verb = _VERBS[kind][1]  # type: ignore[index]
    text = f"{verb} {title(task)}"
    if task.HasField("recurrence"):
        if kind == chat_pb2.INTENT_KIND_COMPLETE_TASK:
            text += f"; it {repeats(task.recurrence.rrule)}, so the next one will appear shortly"
        elif kind == chat_pb2.INTENT_KIND_DELETE_TASK:
            text += " and its repeats"
    return text + "."


def already(kind: int, task: task_pb2.Task) -> str:
    """The task was already as the command wants it."""
    state = "done" if kind == chat_pb2.INTENT_KIND_COMPLETE_TASK else "open"
    return f"{title(task)} was already {state}."


def updated(task: task_pb2.Task, paths: Sequence[str], zone: object, now: datetime) -> str:
    """ "Changed 'Vet appointment': due Mon 7 Dec 10:00." """
    changes: list[str] = []
    for path in paths:
        top = path.split(".", 1)[0]
        if top == "title":
            changes.append(f"renamed to {title(task)}")
        elif top == "due":
            when_due = due(task, zone, now)
            changes.append(f"due {when_due}" if when_due else "no due time")
        elif top == "priority":
            changes.append(_PRIORITIES.get(task.priority, "no priority"))
        elif top == "tags":
            changes.append("tags " + ", ".join(task.tags) if task.tags else "no tags")
        elif top == "reminders":
            times = reminder_times(task, zone, now)
            changes.append(f"reminders at {_and(times)}" if times else "no reminders")
        elif top == "recurrence":
            changes.append(repeats(task.recurrence.rrule) if task.HasField("recurrence") else "no longer repeats")
        elif top == "description":
            changes.append("notes changed")
    name = title(task)
    if not changes:
        return f"{name} is unchanged."
    return f"Changed {name}: {', '.join(dict.fromkeys(changes))}."


def which_one(tasks: Sequence[task_pb2.Task], total: int, zone: object, now: datetime) -> str:
    """A numbered question: "Which one?\n1. Pay rent (due Tue 1 Dec 09:00)\n2. Pay rent deposit"."""
    lines = ["Which one?"] + [f"{i}. {task_line(t, zone, now)}" for i, t in enumerate(tasks, 1)]
    more = total - len(tasks)
    if more > 0:
        lines.append(f"(and {more} more: say more of the name to narrow it down)")
    return "\n".join(lines)


def none_found(query: str) -> str:
    """ "I couldn't find a task matching 'plumber'." """
    words = " ".join(query.split())[:TITLE_SHOWN]
    return f"I couldn't find a task matching '{words}'." if words else "I couldn't find that task."


def confirm_all(kind: int, count: int, total: int) -> str:
    """ "Delete all 12 open tasks? (yes/no)" """
    verb = _VERBS[kind][0].capitalize()  # type: ignore[index]
    noun = "task" if count == 1 else "tasks"
    if total > count:
        return f"{verb} the first {count} of your {total} open tasks? (yes/no)"
    if count == 1:
        return f"{verb} your 1 open task? (yes/no)"
    return f"{verb} all {count} open {noun}? (yes/no)"


def all_done(kind: int, count: int, missing: int) -> str:
    """ "Deleted 12 tasks." """
    verb = _VERBS[kind][1]  # type: ignore[index]
    text = f"{verb} {count} task{'' if count == 1 else 's'}."
    if missing:
        text += f" {missing} had already changed or gone, so I left {'it' if missing == 1 else 'them'}."
    return text


def declined() -> str:
    """The answer to a "no"."""
    return "OK, I left everything as it was."


def pick_again(count: int) -> str:
    """An answer that is not one of the choices."""
    return f"Please answer with a number from 1 to {count}, or say what else to do."


def nothing_to_answer() -> str:
    """An answer when no question is pending."""
    return "I wasn't asking anything. Say 'help' to see what I can do."


def no_previous() -> str:
    """ "it" with nothing before to refer to."""
    return "I'm not sure which task you mean. Please name it."


def out_of_range(count: int) -> str:
    """ "the fourth one" after a list of three."""
    if not count:
        return no_previous()
    return f"There {'was' if count == 1 else 'were'} only {count} in the last list."


def gone() -> str:
    """The chosen task no longer exists."""
    return "That task isn't there any more."


def listing(tasks: Sequence[task_pb2.Task], total: int, zone: object, now: datetime, searched: bool) -> str:
    """A numbered listing, with "and N more" when the page is not all."""
    if not tasks:
        return "Nothing matches that." if searched else "You have no open tasks."
    noun = "task" if total == 1 else "tasks"
    lines = [f"{'Found' if searched else 'You have'} {total} {noun}:"]
    lines += [f"{i}. {task_line(t, zone, now)}" for i, t in enumerate(tasks, 1)]
    more = total - len(tasks)
    if more > 0:
        lines.append(f"and {more} more.")
    return "\n".join(lines)


def snoozed(reminder: reminder_pb2.Reminder, zone: object, now: datetime) -> str:
    """ "Snoozed 'Pay rent' until Wed 1 Apr 09:10." """
    name = f"'{' '.join(reminder.task_title.split())[:TITLE_SHOWN]}'" if reminder.task_title else "the reminder"
    return f"Snoozed {name} until {when(reminder.fire_time.ToDatetime(tzinfo=UTC), zone, now)}."


def nothing_to_snooze(task: task_pb2.Task | None) -> str:
    """No fired reminder to snooze."""
    if task is not None:
        return f"{title(task)} has no reminder that has gone off yet."
    return "No reminder has gone off lately, so there is nothing to snooze."


def channels(settings: notify_pb2.ChannelSettings, paths: Sequence[str], generated_secret: bool) -> str:
    """What the channel settings are now, for the parts that changed; never a secret or a URL's path."""
    tops = list(dict.fromkeys(p.split(".", 1)[0] for p in paths))
    parts: list[str] = []
    for top in tops:
        if top == "in_app_enabled":
            parts.append(f"in-app notifications {_on(settings.in_app_enabled)}")
        elif top == "email":
            email = settings.email
            target = f" to {email.address}" if email.enabled and email.address else ""
            parts.append(f"e-mail {_on(email.enabled)}{target}")
        elif top == "webhook":
            hook = settings.webhook
            host = urlsplit(hook.url).hostname if hook.url else ""
            parts.append(f"webhook {_on(hook.enabled)}{f' to {host}' if hook.enabled and host else ''}")
        elif top == "quiet_hours":
            quiet = settings.quiet_hours
            if quiet.enabled:
                parts.append(f"quiet hours {quiet.start}-{quiet.end} ({quiet.time_zone})")
            else:
                parts.append("quiet hours off")
    text = "Done: " + "; ".join(parts) + "." if parts else "Your notification settings are unchanged."
    if generated_secret:
        text += " I made a signing secret for the webhook; I don't show secrets in chat, so set your own with UpdateChannelSettings."  # noqa: E501
    return text


def _on(enabled: bool) -> str:
    return "on" if enabled else "off"


def activity(entries: Sequence[audit_pb2.ActivityEntry], zone: object, now: datetime, more: bool) -> str:
    """The latest entries of the activity log, newest first."""
    if not entries:
        return "Nothing has happened yet."
    lines = ["Lately:"]
    for entry in entries:
        lines.append(f"- {when(entry.occur_time.ToDatetime(tzinfo=UTC), zone, now)} {entry.summary}")
    if more:
        lines.append("and more before that.")
    return "\n".join(lines)


def cannot(kind: int, problems: Sequence[tuple[str, str]], message: str) -> str:
    """ "I couldn't add that: the title must not be empty." from a service's field violations."""
    verb = _VERBS.get(kind, ("do", ""))[0]  # type: ignore[call-overload]
    words = [_problem(field, description) for field, description in problems[:3]]
    reason = "; ".join(words) if words else _sentence(message)
    return f"I couldn't {verb} that: {reason}."


def _problem(field: str, description: str) -> str:
    names = [part.split("[", 1)[0] for part in field.split(".")]
    name = next((_FIELD_WORDS[n] for n in reversed(names) if n in _FIELD_WORDS), "")
    if not name:
        name = "the " + names[-1].replace("_", " ") if names and names[-1] else "the request"
    description = _sentence(description)
    return f"{name} {description}" if description.startswith(_VERB_STARTS) else f"{name}: {description}"


def _sentence(text: str) -> str:
    text = " ".join(text.split())[:300].rstrip(".")
    return text or "something was wrong"


def changed_meanwhile(task: task_pb2.Task | None) -> str:
    """The task changed between finding it and acting on it."""
    name = title(task) if task is not None else "That task"
    return f"{name} was changed meanwhile, so I left it. Please try again."


def snooze_default(duration: timedelta) -> str:
    """Said when a snooze gave no time."""
    return f"(for {int(duration.total_seconds() // 60)} minutes)"
