"""Understanding a chat message: English in, a todo.chat.v1.Intent out (offline, deterministic).

The Intent conventions the acting side relies on (docs/chat.md has the grammar and the figures):

CREATE_TASK
    task.title holds only the task's words, first letter capitalised ("Renew the car insurance").
    task.due is set when a date or time is written: local_time "YYYY-MM-DDTHH:MM:SS" in the user's zone (a time
    skipped by a daylight-saving change already moved forward by the gap, as the task service does). A date
    without a time is due at 09:00; a time without a date is today if still ahead, else tomorrow.
    task.reminders: "remind me to X at 5pm" -> one rule before_due 0s (at the due time); "15 minutes before"
    -> before_due 900s; "..., remind me at 9:30" with a due time of its own -> an `at` rule.
    task.recurrence.rrule: RFC 5545 without DTSTART, checked with todo_kit.rrules; task.due is its first
    occurrence after the reference time. task.priority, task.tags as written; description unset.
UPDATE_TASK
    target_query (or refers_to_previous) names the task; task holds the new values; changed_fields holds Task
    field paths as UpdateTask's update_mask takes them: "title", "due", "priority", "recurrence", "reminders",
    "tags". A path ending in "+" ADDS the values in task to the task's current ones instead of replacing them
    ("tags+": add task.tags; "reminders+": add task.reminders); a path ending in "-" REMOVES them ("tags-").
    "due" with task.due unset removes the due time; "recurrence" with task.recurrence unset stops repeating.
COMPLETE_TASK / REOPEN_TASK / DELETE_TASK
    target_query: the words naming the task in lower case, without the command's words, leading articles and
    possessives, and without a reported past-tense verb: "I called the plumber" -> "plumber", "I paid the rent"
    -> "rent", "complete call mom" -> "call mom" (ListTasks' search needs every word to match, so fewer, surer
    words find the task). refers_to_previous for "it", "that", "this one", "done"; all_tasks for "all my tasks",
    "everything" (the assistant confirms first).
LIST_TASKS
    list_request: query, statuses (empty = open; "completed" -> COMPLETED; "including completed" -> both),
    priorities, tags_any, overdue, due_range in instants from the user's local days: "today" = the local day;
    "this week" = from the start of today to the end of Sunday; "next week" = Monday to Sunday of next week;
    "this month" = from the start of today to the end of the month; "friday" = that day. Intent.query mirrors
    list_request.query.
SNOOZE_REMINDER
    snooze_request.snooze_for (a duration) or snooze_until (an instant); reminder_id empty; target_query when a
    task is named ("snooze the dentist reminder"), refers_to_previous for "it"/"that"; neither means the last
    reminder that fired.
UPDATE_CHANNELS
    channels_request.settings + update_mask paths: "email.enabled", "email.address" (an address in the message),
    "webhook.enabled", "in_app_enabled", "quiet_hours" (enabled, start, end "HH:MM", time_zone = the user's
    zone) or "quiet_hours.enabled" to switch them off.
SHOW_ACTIVITY
    activity_request.occur_range: "lately"/"recently" = the last 7 days, "today", "yesterday", "this week"
    (from Monday), "last week"; a named task goes to target_query (activity_request.task_id stays empty).
HELP
ANSWER
    choice: the number picked from the assistant's numbered list, from 1 ("the second one", "2", "number 3");
    confirmation YES/NO ("yes", "go ahead" / "no", "cancel"); both may be set ("yes, the second one").
    "the last one": choice 0 with target_query == LAST_CHOICE ("<last>").
Anything else, or anything missing an essential part, carries clarifying_question (kind UNSPECIFIED when not
understood at all, else the kind understood, e.g. CREATE_TASK for "add"): the assistant asks it and acts on nothing.
confidence is 0..1: 0.9 and above for a full match of the grammar, 0.6 for a bare phrase taken as a task,
0.5 with a clarifying question, 0 for not understood.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from chat_svc.interpret.commands import LAST_CHOICE, understand
from chat_svc.interpret.text import Clock
from todo_contracts.chat.v1 import chat_pb2

__all__ = ["LAST_CHOICE", "MAX_TEXT_CHARS", "Interpreter", "RulesInterpreter"]

MAX_TEXT_CHARS = 4000
"""The longest message the interpreter reads (the caller refuses longer ones)."""


class Interpreter(Protocol):
    """Turns a user's message into an Intent."""

    name: str
    """"rules" or the language model's name; copied into Intent.interpreter."""

    def interpret(self, text: str, time_zone: str, reference_time: datetime) -> chat_pb2.Intent:
        """The intent of text written by a user in time_zone (an IANA name) at reference_time (aware, UTC)."""
        ...


class RulesInterpreter:
    """The hand-written English grammar: deterministic, no network, no state between calls."""

    name = "rules"

    def interpret(self, text: str, time_zone: str, reference_time: datetime) -> chat_pb2.Intent:
        """The intent of text; never raises for any text (what it cannot read is UNSPECIFIED with a question).

        time_zone must be a valid IANA zone and reference_time an instant (both checked by the caller; a bad
        zone raises ValueError).
        """
        clock = Clock.of(time_zone, reference_time)
        try:
            intent = understand(text[:MAX_TEXT_CHARS], clock)
        except (ValueError, OverflowError, ArithmeticError, RecursionError):
            # A phrase whose date falls outside the calendar (year 9999 and beyond) and the like.
            intent = chat_pb2.Intent(
                kind=chat_pb2.INTENT_KIND_UNSPECIFIED,
                clarifying_question="Sorry, I couldn't read a date or time in that. Could you say it another way?",
            )
        intent.interpreter = self.name
        return intent
