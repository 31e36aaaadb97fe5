"""What a message asks for: the command grammar, from the words of the message to an Intent."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, time, timedelta

from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2

from chat_svc.interpret import attributes, dates, recurrence
from chat_svc.interpret import vocabulary as v
from chat_svc.interpret.text import Clock, Message
from todo_contracts.audit.v1 import audit_pb2
from todo_contracts.chat.v1 import chat_pb2
from todo_contracts.common.v1 import common_pb2
from todo_contracts.notify.v1 import notify_pb2
from todo_contracts.task.v1 import task_pb2, task_service_pb2

LAST_CHOICE = "<last>"
"""target_query of an ANSWER meaning the last item of the assistant's numbered list ("the last one")."""
MAX_TITLE_CHARS = 500

Kind = chat_pb2.IntentKind

_PUNCT_END = re.compile(r"[\s.!?,;:]+$")
_PUNCT_START = re.compile(r"^[\s.!?,;:\-]+")
_POLITE = re.compile(
    r"^(?:(?:ok(?:ay)?|hey|hi|so|and|also|oh|um+|please|pls|plz|kindly)\s*,?\s+)*(?:(?:can|could|would|will)\s+you\s+"
    r"(?:please\s+)?|i\s+(?:want|would\s+like|'d\s+like)\s+(?:you\s+)?to\s+|please\s+)?"
)
_TRAILING_POLITE = re.compile(r"(?:,?\s+(?:please|pls|plz|thanks|thank\s+you|for\s+me))+$")

# --- answers and help ------------------------------------------------------------------------------------------

_YES = frozenset(
    ["yes", "y", "yeah", "yea", "yep", "yup", "sure", "ok", "okay", "k", "confirm", "confirmed", "correct",
     "right", "absolutely", "definitely", "please do", "go ahead", "do it", "yes please", "sounds good",
     "of course", "proceed", "go for it", "affirmative", "yes do it", "that's right", "that is right", "exactly",
     "sure thing", "fine", "alright", "all right", "let's do it", "go on", "yes go ahead", "delete them",
     "yes delete them", "yes, delete them"]
)  # fmt: skip
_NO = frozenset(
    ["no", "n", "nope", "nah", "cancel", "never mind", "nevermind", "don't", "do not", "stop", "abort",
     "no thanks", "no thank you", "not now", "forget it", "don't do it", "no way", "negative", "leave it",
     "keep them", "no don't", "cancel that", "no, cancel", "hold on", "wait"]
)  # fmt: skip
_CHOICE = re.compile(
    r"^(?:(?:i\s+(?:mean|meant|want)|i'd\s+like|make\s+it|choose|pick|select|take|use)\s+)?(?:the\s+)?"
    r"(?:number\s+|no\.?\s*|option\s+|choice\s+|item\s+|#)?(\d{1,3}|"
    + v.ORDINAL_WORD_PATTERN
    + r"|\d{1,3}(?:st|nd|rd|th))(?:\s+(?:one|option|choice|task|item))?(?:\s+please)?$"
)
_LAST = re.compile(
    r"^(?:(?:i\s+mean|choose|pick|select|take)\s+)?(?:the\s+)?(?:last|final|bottom)(?:\s+(?:one|option|choice|task|item))?$"
)
_HELP = re.compile(
    r"^(?:help|help me|\?|what can you do|what can i (?:say|ask|do)|what do you do|how does (?:this|it) work|"
    r"how do i use (?:this|you)|commands|show commands|instructions|menu|options|hi|hello|hey|hi there|hello there|"
    r"hey there|good (?:morning|afternoon|evening)|what are you|who are you|how can you help(?: me)?|"
    r"what can you help (?:me )?with|usage|examples|start)$"
)


def _said(part: str) -> chat_pb2.Confirmation.ValueType | None:
    """Yes or no for a run of known answer phrases ("yeah go ahead"); None when any word is something else."""
    words = part.split()
    if not 1 <= len(words) <= 8:
        return None
    found: chat_pb2.Confirmation.ValueType | None = None
    position = 0
    while position < len(words):
        for size in (3, 2, 1):
            phrase = " ".join(words[position : position + size])
            if phrase in _YES or phrase in _NO:
                value = chat_pb2.CONFIRMATION_YES if phrase in _YES else chat_pb2.CONFIRMATION_NO
                if found is not None and found != value:
                    return None
                found = value
                position += size
                break
        else:
            return None
    return found


def _answer(text: str) -> chat_pb2.Intent | None:
    parts = [part.strip() for part in re.split(r"\s*[,;]\s*|\s+-\s+|\.\s+", text) if part.strip()]
    if not parts or len(parts) > 3:
        return None
    confirmation = chat_pb2.CONFIRMATION_UNSPECIFIED
    choice = 0
    last = False
    for part in parts:
        if part in _YES:
            confirmation = chat_pb2.CONFIRMATION_YES
            continue
        if part in _NO:
            confirmation = chat_pb2.CONFIRMATION_NO
            continue
        match = _CHOICE.match(part)
        if match:
            word = match.group(1)
            value = int(word) if word.isdigit() else dates.ordinal(word)
            if not 1 <= value <= 999:
                return None
            choice = value
            continue
        if _LAST.match(part):
            last = True
            continue
        said = _said(part)
        if said is None:
            return None
        confirmation = said
    if not (confirmation or choice or last):
        return None
    intent = chat_pb2.Intent(kind=Kind.INTENT_KIND_ANSWER, choice=choice, confirmation=confirmation, confidence=0.95)
    if last:
        intent.target_query = LAST_CHOICE
    return intent


# --- targets ---------------------------------------------------------------------------------------------------

_TARGET_LEAD = re.compile(
    r"^(?:(?:the|my|our|a|an|your)\s+)?(?:task|todo|to-do|item|reminder|one)s?\s+(?:about|called|named|titled|for|"
    r"to|regarding|on)\s+"
)
_QUOTES = "\"'\u201c\u201d\u2018\u2019"
_QUOTED = re.compile(f"[{_QUOTES}]([^{_QUOTES}]{{1,500}})[{_QUOTES}]")
_ALL = re.compile(
    r"^(?:all|every|each)\s+(?:of\s+)?(?:my|the|our)?\s*(?:tasks?|todos?|to-dos?|items?|things?|of\s+them)?$|"
    r"^(?:everything|all|all of them|all of it|my whole list|my list|my entire list|the whole list|the list|"
    r"my tasks|all tasks|every single task|my todo list|the entire list|my whole todo list)$"
)


def _strip_articles(words: list[str]) -> list[str]:
    while words and words[0] in v.ARTICLES:
        words = words[1:]
    return words


def target_of(text: str) -> tuple[str, bool, bool]:
    """The words naming a task: (target_query, refers_to_previous, all_tasks).

    target_query is lower case, without the command's words, leading articles and possessives ("the", "my"),
    and without words such as "task" or "one" at either end: the words ListTasks' search (every word must
    match, stemmed) needs to find the task by its title.
    """
    text = _PUNCT_END.sub("", _PUNCT_START.sub("", text.strip().lower()))
    quoted = _QUOTED.search(text)
    if quoted:
        return quoted.group(1).strip(), False, False
    if text in v.PREVIOUS_WORDS or text in (
        "it again",
        "that again",
        "this task",
        "that task",
        "the task",
        "the last task",
    ):
        return "", True, False
    if _ALL.match(text):
        return "", False, True
    text = _TARGET_LEAD.sub("", text)
    words = [word.strip(".,;:!?\"'") for word in text.split()]
    words = [word for word in words if word]
    while words and (words[-1] in v.FILLER_WORDS or words[-1] in v.TARGET_TRAILERS or words[-1] in ("off", "as")):
        words = words[:-1]
    words = _strip_articles(words)
    while words and (words[0] in v.TARGET_TRAILERS or words[0] in v.FILLER_WORDS):
        words = _strip_articles(words[1:])
    if len(words) >= 2 and words[-2] in ("about", "for", "called", "named") and words[0] in v.TARGET_TRAILERS:
        words = words[-1:]
    target = " ".join(words)
    if target in v.PREVIOUS_WORDS:
        return "", True, False
    return target[:MAX_TITLE_CHARS], False, False


def _with_target(intent: chat_pb2.Intent, text: str) -> bool:
    """Sets the intent's target from text; False when text names nothing."""
    target, previous, every = target_of(text)
    if previous:
        intent.refers_to_previous = True
    elif every:
        intent.all_tasks = True
    elif target:
        intent.target_query = target
    else:
        return False
    return True


# --- complete, reopen, delete ----------------------------------------------------------------------------------

_COMPLETE_PATTERNS = (
    re.compile(r"^(?:mark|set|flag|check)\s+(.+?)\s+(?:as\s+)?(?:done|complete|completed|finished|checked)$"),
    re.compile(r"^(?:complete|finish|check\s+off|tick\s+off|cross\s+off|close|resolve|mark\s+off)\s+(.+)$"),
    re.compile(r"^(.+?)\s+(?:is|are|was|'s|has\s+been|have\s+been)\s+(?:now\s+)?(?:all\s+)?(?:done|complete|completed|finished|taken\s+care\s+of|sorted)(?:\s+now)?$"),
    re.compile(r"^(.+?)\s+(?:done|completed|finished|checked\s+off|ticked\s+off)$"),
    re.compile(r"^(?:i(?:'m|\s+am)\s+)?(?:done|finished|through)\s+with\s+(.+)$"),
    re.compile(r"^(?:i\s+)?(?:have\s+|'ve\s+)?(?:just\s+|already\s+|finally\s+)?(?:completed|finished)\s+(.+)$"),
    re.compile(r"^(?:check|tick|cross)\s+(.+?)\s+off$"),
)  # fmt: skip
_COMPLETE_PREVIOUS = re.compile(
    r"^(?:(?:it'?s|it\s+is|that'?s|that\s+is|this\s+is)\s+)?(?:all\s+)?(?:done|finished|completed|complete|"
    r"done\s+now|finished\s+now)$|^(?:i\s+)?(?:did|finished|completed)\s+it$|^mark\s+(?:it|that|this)\s+"
    r"(?:as\s+)?(?:done|complete|completed)$|^(?:complete|finish)\s+(?:it|that|this|this\s+one|that\s+one)$"
)
_PAST_REPORT = re.compile(
    r"^(?:i\s+have\s+|we\s+have\s+|i've\s+|we've\s+|i\s+|we\s+)?(?:just\s+|already\s+|finally\s+|also\s+)?([a-z]+)\s+(.+)$"
)
_REOPEN_PATTERNS = (
    re.compile(r"^(?:reopen|re-open|un-?complete|uncheck|untick|undo|restore|reactivate|unfinish)\s+(.+)$"),
    re.compile(r"^(?:mark|set)\s+(.+?)\s+(?:as\s+)?(?:not\s+done|undone|incomplete|not\s+complete(?:d)?|"
               r"not\s+finished|open|unfinished|to\s+do|todo|pending)(?:\s+again)?$"),
    re.compile(r"^(?:open)\s+(.+?)\s+again$"),
    re.compile(r"^(.+?)\s+(?:is\s+not|isn't|is\s+no\s+longer|wasn't|was\s+not|isnt|aren't|are\s+not)\s+"
               r"(?:actually\s+|really\s+)?(?:done|finished|complete|completed)(?:\s+yet)?(?:\s+after\s+all)?$"),
    re.compile(r"^i\s+(?:didn't|did\s+not|haven't|have\s+not|didnt)\s+(?:actually\s+|really\s+)?"
               r"(?:finish|complete|do|done|finished|completed)\s+(.+?)(?:\s+(?:yet|after\s+all))?$"),
    re.compile(r"^(?:bring\s+back|put\s+back)\s+(.+)$"),
)  # fmt: skip
_DELETE_PATTERNS = (
    re.compile(r"^(?:delete|remove|drop|erase|trash|scrap|bin|discard|ditch|kill|cancel|nuke|purge|axe|"
               r"get\s+rid\s+of|forget\s+about|forget|throw\s+away|throw\s+out|take\s+off|cross\s+out)\s+(.+?)"
               r"(?:\s+(?:from|off)\s+(?:my|the)\s+(?:todo\s+|to-do\s+)?list)?$"),
    re.compile(r"^(?:clear|empty|wipe|reset)\s+(?:out\s+)?(my\s+(?:whole\s+|entire\s+)?(?:todo\s+|to-do\s+)?list|"
               r"(?:all\s+)?(?:my\s+)?tasks|everything|the\s+(?:whole\s+|entire\s+)?list)$"),
    re.compile(r"^i\s+(?:don't|do\s+not|no\s+longer)\s+need\s+(?:to\s+)?(.+?)(?:\s+anymore|\s+any\s+more)?$"),
)  # fmt: skip
_BARE = {
    "delete": (Kind.INTENT_KIND_DELETE_TASK, "Which task should I delete?"),
    "remove": (Kind.INTENT_KIND_DELETE_TASK, "Which task should I delete?"),
    "drop": (Kind.INTENT_KIND_DELETE_TASK, "Which task should I delete?"),
    "delete a task": (Kind.INTENT_KIND_DELETE_TASK, "Which task should I delete?"),
    "complete": (Kind.INTENT_KIND_COMPLETE_TASK, "Which task did you finish?"),
    "mark as done": (Kind.INTENT_KIND_COMPLETE_TASK, "Which task did you finish?"),
    "mark done": (Kind.INTENT_KIND_COMPLETE_TASK, "Which task did you finish?"),
    "complete a task": (Kind.INTENT_KIND_COMPLETE_TASK, "Which task did you finish?"),
    "reopen": (Kind.INTENT_KIND_REOPEN_TASK, "Which task should I reopen?"),
    "reopen a task": (Kind.INTENT_KIND_REOPEN_TASK, "Which task should I reopen?"),
    "undo": (Kind.INTENT_KIND_REOPEN_TASK, "Which task should I reopen?"),
    "add": (Kind.INTENT_KIND_CREATE_TASK, "What should I add?"),
    "create": (Kind.INTENT_KIND_CREATE_TASK, "What should I add?"),
    "snooze": (Kind.INTENT_KIND_SNOOZE_REMINDER, "For how long should I snooze it? For example: snooze 10 minutes."),
    "move": (Kind.INTENT_KIND_UPDATE_TASK, "Which task should I move, and to when?"),
    "change": (Kind.INTENT_KIND_UPDATE_TASK, "Which task should I change, and how?"),
    "update": (Kind.INTENT_KIND_UPDATE_TASK, "Which task should I change, and how?"),
    "edit": (Kind.INTENT_KIND_UPDATE_TASK, "Which task should I change, and how?"),
    "rename": (Kind.INTENT_KIND_UPDATE_TASK, "Which task should I rename, and to what?"),
}


def _is_past_verb(word: str, with_subject: bool) -> bool:
    if word in v.IRREGULAR_PAST:
        return True
    if word in v.AMBIGUOUS_PAST:
        return with_subject
    return len(word) > 4 and word.endswith("ed") and not word.endswith("eed") and word not in v.NOT_PAST


def _task_command(text: str) -> chat_pb2.Intent | None:
    """Complete, reopen or delete, with the words naming the task."""
    if _COMPLETE_PREVIOUS.match(text):
        return chat_pb2.Intent(kind=Kind.INTENT_KIND_COMPLETE_TASK, refers_to_previous=True, confidence=0.85)
    for kind, patterns in (
        (Kind.INTENT_KIND_REOPEN_TASK, _REOPEN_PATTERNS),
        (Kind.INTENT_KIND_DELETE_TASK, _DELETE_PATTERNS),
        (Kind.INTENT_KIND_COMPLETE_TASK, _COMPLETE_PATTERNS),
    ):
        for pattern in patterns:
            match = pattern.match(text)
            if match:
                intent = chat_pb2.Intent(kind=kind, confidence=0.9)
                if _with_target(intent, match.group(1)):
                    return intent
    return None


_PARTICLE = re.compile(r"^(?:out|up|off|down|back|away|over|in|on)\s+(?=\S)")


def _past_report(text: str, has_details: bool) -> chat_pb2.Intent | None:
    """ "I called the plumber" / "watered the roses": a report that a task is done; the target drops the verb."""
    if has_details:
        return None
    match = _PAST_REPORT.match(text)
    if not match:
        return None
    with_subject = text.startswith(("i ", "i've ", "we ", "we've "))
    if not _is_past_verb(match.group(1), with_subject):
        return None
    intent = chat_pb2.Intent(kind=Kind.INTENT_KIND_COMPLETE_TASK, confidence=0.8)
    rest = _PARTICLE.sub("", match.group(2))
    if not _with_target(intent, rest):
        return None
    return intent


# --- update ----------------------------------------------------------------------------------------------------

_MOVE = re.compile(r"^(?:move|shift|reschedule|postpone|push(?:\s+back)?|delay|bump|defer|put\s+off)\s+(.+)$")
_CHANGE_DUE = re.compile(r"^(?:change|set|update|make)\s+(?!up\b)(.+?)\s+(?:to|for|until)\s+(.+)$")
_DUE_OF = re.compile(r"^(?:the\s+)?(?:due\s+(?:date|time)|deadline|date|time)\s+(?:of|for|on)\s+(.+)$")
_RENAME = re.compile(r"^(?:rename|retitle)\s+(.+?)\s+(?:to|as|into)\s+(.+)$")
_CHANGE_TITLE = re.compile(
    r"^(?:change|update|edit|set)\s+(?:the\s+)?(?:title|name|text|wording)\s+(?:of|for)\s+(.+?)\s+to\s+(.+)$"
)
_CHANGE_TO = re.compile(r"^(?:change|update|edit|set|make)\s+(.+?)\s+(?:to|into)\s+(.+)$")
_SET_PRIORITY_OF = re.compile(
    r"^(?:set|change|update|make)\s+(?:the\s+)?priority\s+(?:of|for|on)\s+(.+?)\s+(?:to|as)\s+(.+)$"
)
_PRIORITY_PHRASE = (
    r"(?:an?\s+)?(?:(?:urgent|critical|high|top|medium|normal|low|no|none)(?:\s+(?:priority|prio|importance))?|"
    r"(?:priority|prio)\s+(?:urgent|high|medium|low|none|[1-4])|p[1-4]|important|asap)"
)
_MARK_PRIORITY = re.compile(r"^(?:mark|set|make|flag)\s+(.+?)\s+(?:as\s+|to\s+)?(" + _PRIORITY_PHRASE + r")$")
_ADD_TAG = re.compile(r"^(?:add|put|attach|apply)\s+(?:the\s+|a\s+)?(?:tags?|labels?)\s+(.+?)\s+(?:to|on)\s+(.+)$")
_ADD_HASH = re.compile(r"^(?:add|put|attach|apply)\s+(#\S+(?:\s+#\S+){0,9})\s+(?:to|on)\s+(.+)$")
_TAG_WITH = re.compile(r"^(?:tag|label)\s+(.+?)\s+(?:with|as)\s+(.+)$")
_REMOVE_TAG = re.compile(
    r"^(?:remove|delete|drop|take\s+off|take)\s+(?:the\s+)?(?:tags?|labels?)\s+(.+?)\s+(?:from|off|of)\s+(.+)$"
)
_UNTAG = re.compile(r"^(?:untag|unlabel)\s+(.+?)\s+(?:from)\s+(.+)$")
_REMIND_ABOUT = re.compile(r"^(?:remind\s+me|add\s+(?:a\s+)?reminder)\s+(?:about|of|for)\s+(.+)$")
_REPEAT = re.compile(r"^(?:make|set|have|let)\s+(.+?)\s+(?:repeat|recur|happen|be\s+due|come\s+up|occur)\s+(.+)$")
_STOP_REPEAT = re.compile(
    r"^(?:stop\s+repeating|don't\s+repeat|do\s+not\s+repeat|end\s+the\s+series\s+(?:of|for)|make\s+(.+?)\s+"
    r"(?:not\s+repeat|a\s+one-?off|one\s+time)|stop\s+the\s+repetition\s+of|remove\s+the\s+(?:recurrence|repetition)"
    r"\s+(?:from|of))\s*(.*)$"
)
_NO_DUE = re.compile(
    r"^(?:remove|clear|delete|drop|unset)\s+(?:the\s+)?(?:due\s+date|due\s+time|deadline|date)\s+(?:from|of|on|for)\s+(.+)$"
)
_PRIORITY_ONLY = re.compile(
    r"^(?:an?\s+)?(?:(urgent|critical|high|top|medium|normal|low|no|none)(?:\s+(?:priority|prio|importance))?|"
    r"(?:priority|prio)\s+(urgent|high|medium|low|none|[1-4])|p([1-4])|(important|asap))$"
)


def _priority_of(text: str) -> task_pb2.Priority.ValueType:
    match = _PRIORITY_ONLY.match(text.strip())
    if not match:
        return task_pb2.PRIORITY_UNSPECIFIED
    word = next(group for group in match.groups() if group)
    return attributes.level_of(word)


def _update(text: str, clock: Clock) -> chat_pb2.Intent | None:
    intent = chat_pb2.Intent(kind=Kind.INTENT_KIND_UPDATE_TASK, confidence=0.85)
    match = _ADD_TAG.match(text) or _ADD_HASH.match(text) or _TAG_WITH.match(text)
    if match:
        tags_text, target_text = match.group(1), match.group(2)
        if match.re is _TAG_WITH:
            tags_text, target_text = target_text, tags_text
        tags = _tags_in(tags_text)
        if tags and _with_target(intent, target_text):
            intent.task.tags.extend(tags)
            intent.changed_fields.append("tags+")
            return intent
    match = _REMOVE_TAG.match(text) or _UNTAG.match(text)
    if match:
        tags = _tags_in(match.group(1))
        if tags and _with_target(intent, match.group(2)):
            intent.task.tags.extend(tags)
            intent.changed_fields.append("tags-")
            return intent
    match = _NO_DUE.match(text)
    if match and _with_target(intent, match.group(1)):
        intent.changed_fields.append("due")
        return intent
    match = _STOP_REPEAT.match(text)
    if match and _with_target(intent, match.group(1) or match.group(2) or ""):
        intent.changed_fields.append("recurrence")
        return intent
    match = _REMIND_ABOUT.match(text)
    if match:
        message = Message(match.group(1))
        offsets = attributes.take_offsets(message)
        if offsets and _with_target(intent, _connector_stripped(message.rest_lower())):
            intent.task.reminders.extend(task_pb2.ReminderRule(before_due=_duration(s)) for s in offsets)
            intent.changed_fields.append("reminders+")
            return intent
        return None
    match = _REPEAT.match(text)
    if match:
        message = Message(match.group(2))
        repeat = recurrence.take_repeat(message, clock)
        if repeat.freq and _with_target(intent, match.group(1)):
            intent.task.recurrence.rrule = repeat.rule()
            intent.changed_fields.append("recurrence")
            return intent
    match = _SET_PRIORITY_OF.match(text)
    if match:
        priority = _priority_of(match.group(2))
        if priority and _with_target(intent, match.group(1)):
            intent.task.priority = priority
            intent.changed_fields.append("priority")
            return intent
    match = _RENAME.match(text) or _CHANGE_TITLE.match(text)
    if match:
        title = _title(match.group(2))
        if title and _with_target(intent, match.group(1)):
            intent.task.title = title
            intent.changed_fields.append("title")
            return intent
    match = _MARK_PRIORITY.match(text)
    if match:
        priority = _priority_of(match.group(2))
        if priority and _with_target(intent, match.group(1)):
            intent.task.priority = priority
            intent.changed_fields.append("priority")
            return intent
    match = _CHANGE_TO.match(text)
    if match and not _has_date(match.group(2), clock):
        priority = _priority_of(match.group(2))
        target = _DUE_OF.sub(r"\1", match.group(1))
        if priority:
            if _with_target(intent, target):
                intent.task.priority = priority
                intent.changed_fields.append("priority")
                return intent
        elif match.group(1) not in ("it", "that") or True:
            title = _title(match.group(2))
            if title and not text.startswith(("set ", "make ")) and _with_target(intent, match.group(1)):
                intent.task.title = title
                intent.changed_fields.append("title")
                return intent
    match = _MOVE.match(text) or _CHANGE_DUE.match(text)
    if match and (match.re is _MOVE or _has_date(match.group(2), clock)):
        message = Message(match.group(1) if match.re is _MOVE else match.group(1) + " to " + match.group(2))
        when = dates.take_when(message, clock)
        rest = _connector_stripped(message.rest_lower())
        rest = _DUE_OF.sub(r"\1", rest)
        if when.found:
            local = dates.resolve(when, clock)
            if local is not None and _with_target(intent, rest):
                intent.task.due.CopyFrom(_zoned(local, clock))
                intent.changed_fields.append("due")
                if local <= clock.local_now:
                    intent.clarifying_question = "That time has already passed. When should it be due instead?"
                return intent
        if text.startswith(("move ", "shift ", "reschedule ", "postpone ", "push ", "delay ", "defer ", "bump ")):
            intent.clarifying_question = "To when should I move it?"
            if not _with_target(intent, rest):
                intent.clarifying_question = "Which task should I move, and to when?"
            intent.confidence = 0.5
            return intent
    match = re.match(r"^(?:rename|retitle)\s+(.+)$", text)
    if match:
        _with_target(intent, match.group(1))
        intent.clarifying_question = "What should the new title be? For example: rename the report to quarterly report."
        intent.confidence = 0.5
        return intent
    return None


_CONNECTOR_END = re.compile(r"(?:\s+(?:to|until|till|for|on|at|by|back\s+to|forward\s+to|over\s+to|from|in))+$")


def _connector_stripped(text: str) -> str:
    text = _PUNCT_END.sub("", text.strip())
    return _CONNECTOR_END.sub("", text).strip()


def _has_date(text: str, clock: Clock) -> bool:
    message = Message(text)
    when = dates.take_when(message, clock)
    return when.found and not message.rest_lower().strip(" ,.")


def _tags_in(text: str) -> list[str]:
    words = [w.strip().lstrip("#@").lower() for w in re.split(r"\s*(?:,|\band\b|&|\s)\s*", text) if w.strip()]
    words = [w for w in words if w not in ("the", "a", "tag", "tags", "label", "labels", "with")]
    if not words or len(words) > 10 or not all(re.fullmatch(r"[a-z0-9][a-z0-9_\-:/]{0,63}", w) for w in words):
        return []
    return words


def _duration(seconds: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=seconds)


def _zoned(local: datetime, clock: Clock) -> common_pb2.ZonedDateTime:
    return common_pb2.ZonedDateTime(local_time=local.strftime("%Y-%m-%dT%H:%M:%S"), time_zone=clock.zone_name)


def _timestamp(instant: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(instant)
    return stamp


# --- create ----------------------------------------------------------------------------------------------------

_CREATE_LEAD = re.compile(
    r"^(?:(?:please\s+)?(?:(?:add|create|make|put|new|schedule|set\s+up|set)\s+(?:a\s+|an\s+|me\s+a\s+|the\s+)?"
    r"(?:new\s+)?(?:task|todo|to-do|to\s+do|item|reminder|entry|note)s?(?:\s+(?:for\s+me|called|named|titled))?"
    r"\s*(?::|-|to\b|that\s+says|saying|for\b)?\s*|(?:add|create)\s*:?\s+(?!the\s+tag)|new\s*:\s*|todo\s*:\s*|"
    r"task\s*:\s*|to-?do\s*:\s*|reminder\s*:\s*|remind\s+me\s+(?:to|that\s+i\s+(?:need|have)\s+to|that\s+i\s+should|"
    r"i\s+need\s+to|i\s+have\s+to|about|of)\s+|(?:i\s+)?(?:need|have|got|gotta|must|should|want)\s+to\s+|"
    r"(?:i\s+)?(?:need|must|should)\s+|don'?t\s+(?:let\s+me\s+)?forget\s+(?:to\s+)?|do\s+not\s+forget\s+(?:to\s+)?|"
    r"remember\s+to\s+|(?:please\s+)?note\s+(?:down\s+)?(?:to\s+)?|i\s+gotta\s+|gotta\s+))+"
)
_REMIND_LEAD = re.compile(r"^remind\s+me\b")
_LIST_TAIL = re.compile(
    r"(?:\s+(?:to|on|in|onto)\s+(?:my|the)\s+(?:todo\s+|to-do\s+|task\s+|shopping\s+|grocery\s+)?(?:list|tasks|todos))$"
)
_REMIND_AT = re.compile(r"(?:,?\s*(?:and\s+)?remind\s+me)\s+(?=(?:at|@|around|on|in|tomorrow|today|tonight|\d))")
_EMPTY_TITLE = re.compile(r"^[\s\W_]*$")
_LEADING_EDGE = frozenset(
    [
        "and",
        "at",
        "on",
        "by",
        "for",
        "to",
        "due",
        "with",
        "from",
        "starting",
        "then",
        "also",
        "every",
        "in",
        "it",
        "me",
        "please",
    ]
)
_TRAILING_EDGE = _LEADING_EDGE | frozenset(
    ["of", "the", "a", "reminder", "priority", "is", "repeat", "repeats", "repeating", "recurring"]
)
_EDGE_PUNCTUATION = " \t,;:-\u2013\u2014.!?\"'\u201c\u201d\u2018\u2019"


def _title(text: str) -> str:
    # Word by word, not with a pattern anchored at the end: that would be quadratic on long text.
    words = text.split(" ")
    start, end = 0, len(words)
    while start < end and words[start].strip(_EDGE_PUNCTUATION).lower() in _LEADING_EDGE | {""}:
        start += 1
    while end > start and (
        words[end - 1].strip(_EDGE_PUNCTUATION).lower() in _TRAILING_EDGE | {""}
        or (end - start >= 2 and " ".join(words[end - 2 : end]).strip(_EDGE_PUNCTUATION).lower() == "remind me")
    ):
        end -= 1
    text = " ".join(words[start:end]).strip(_EDGE_PUNCTUATION)
    text = re.sub(r"\s+([,;:.!?])", r"\1", text)
    text = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", text).strip(" ,;:")
    if not text or _EMPTY_TITLE.match(text):
        return ""
    return (text[0].upper() + text[1:])[:MAX_TITLE_CHARS]


def _create(text: str, original: str, clock: Clock) -> chat_pb2.Intent:
    intent = chat_pb2.Intent(kind=Kind.INTENT_KIND_CREATE_TASK, confidence=0.9)
    lead = _CREATE_LEAD.match(text)
    reminder_phrase = bool(_REMIND_LEAD.match(text))
    explicit = bool(lead) or reminder_phrase
    message = Message(original)
    if lead:
        message.take(0, lead.end())
    elif reminder_phrase:
        bare = _REMIND_LEAD.match(text)
        assert bare is not None
        message.take(0, bare.end())
    tail = message.search(_LIST_TAIL)
    if tail:
        message.take_match(tail)
    offsets = attributes.take_offsets(message)
    remind_at_time: dates.When | None = None
    remind_at = message.search(_REMIND_AT)
    if remind_at and remind_at.start() > 0:
        message.take_match(remind_at)
        after = message.tail(remind_at.end())
        remind_at_time = dates.take_when(after, clock)
        taken = len(after.lower) - len(after.lower.lstrip("\x00 "))
        if remind_at_time.found and taken:
            message.take(remind_at.end(), remind_at.end() + taken)
        else:
            remind_at_time = None
        reminder_phrase = True
    repeat = recurrence.take_repeat(message, clock)
    priority = attributes.take_priority(message)
    tags = attributes.take_tags(message)
    when = dates.take_when(message, clock)
    title = _title(message.rest())
    if not title:
        intent.confidence = 0.5
        intent.clarifying_question = (
            "What should I remind you about?"
            if reminder_phrase
            else "What should I add? For example: buy milk tomorrow."
        )
        return intent
    intent.task.title = title
    if priority:
        intent.task.priority = priority
    intent.task.tags.extend(tags)
    if repeat.question:
        intent.clarifying_question = repeat.question
        intent.confidence = 0.5
        return intent
    due: datetime | None
    if remind_at_time is not None and not when.has_time and when.exact is None:
        # "call the insurer tomorrow, remind me at 8am": the reminder's time is the task's time.
        when = dates.When(day=when.day, at=remind_at_time.at, part=remind_at_time.part or when.part,
                          exact=remind_at_time.exact, roll=when.roll)  # fmt: skip
        remind_at_time = None
    if repeat.freq:
        due, question = recurrence.first_due(repeat, when, clock)
        if question:
            intent.clarifying_question = question
            intent.confidence = 0.5
            return intent
        intent.task.recurrence.rrule = repeat.rule()
    else:
        due = dates.resolve(when, clock)
    if due is None and (offsets or remind_at_time is not None or (reminder_phrase and not explicit)):
        intent.clarifying_question = "When should I remind you?"
        intent.confidence = 0.5
        return intent
    if due is not None:
        intent.task.due.CopyFrom(_zoned(due, clock))
        if due <= clock.local_now:
            intent.clarifying_question = "That time has already passed. When should it be due?"
            intent.confidence = 0.5
    if offsets:
        intent.task.reminders.extend(task_pb2.ReminderRule(before_due=_duration(s)) for s in offsets)
    elif remind_at_time is not None:
        local = dates.resolve(dates.When(day=due.date() if due else None, at=remind_at_time.at,
                                         part=remind_at_time.part, exact=remind_at_time.exact), clock)  # fmt: skip
        if local is not None:
            intent.task.reminders.append(task_pb2.ReminderRule(at=_zoned(local, clock)))
    elif reminder_phrase and due is not None:
        intent.task.reminders.append(task_pb2.ReminderRule(before_due=_duration(0)))
    elif reminder_phrase:
        intent.clarifying_question = "When should I remind you?"
        intent.confidence = 0.5
    if not explicit and due is None and not (priority or tags or repeat.freq):
        intent.confidence = 0.6  # a bare phrase: most likely a task to add (quick-add style)
    return intent


# --- list --------------------------------------------------------------------------------------------------------

_LIST_START = re.compile(
    r"^(?:show|list|display|give|tell|what|what's|whats|which|anything|any|search|find|look|do\s+i|have\s+i|"
    r"is\s+there|are\s+there|see|view|open\s+my|my\s+tasks|my\s+list|todo|tasks|how\s+many|where)\b"
)
_SEARCH = re.compile(
    r"\b(?:search(?:\s+for)?|find|look\s+(?:for|up)|lookup|anything\s+(?:about|with|for|on|regarding|mentioning)|"
    r"tasks?\s+(?:about|with|for|regarding|mentioning|containing|called|named)|about|regarding|mentioning|"
    r"containing)\s+(.+)$"
)
_OVERDUE = re.compile(r"\b(?:overdue|late|past\s+due|missed|behind|expired|slipped)\b")
_COMPLETED = re.compile(
    r"\b(?:completed|complete|done|finished|closed|checked\s+off|did\s+i\s+(?:complete|finish|do))\b"
)
_INCLUDING = re.compile(
    r"\b(?:including|incl\.?|with|and|plus|even)\s+(?:the\s+)?(?:completed|done|finished|closed)\b|"
    r"\b(?:open\s+and\s+(?:completed|done)|(?:completed|done)\s+and\s+open|all\s+statuses)\b"
)
_LIST_FILLER = re.compile(
    r"\b(?:show|list|display|give|tell|what|what's|whats|which|anything|any|do|i|have|is|are|there|get|see|view|"
    r"open|my|me|all|the|tasks?|todos?|to-dos?|items?|things?|stuff|list|everything|due|coming|up|on|of|in|for|"
    r"to|need|needs|should|a|an|s|it|left|remaining|pending|still|else|please|search|find|look|lookup|that|due|"
    r"are|is|was|were|be|how|many|where|check|agenda|schedule|plan|planned|scheduled|got|with|and|at|by)\b"
)


_LISTISH = re.compile(
    r"\b(?:due|tasks?|todos?|to-dos?|list|overdue|late|agenda|plan|planned|have|coming\s+up|left|completed?|done|"
    r"finished|urgent|priority|tagged|everything|search|find|look|lookup|show|display|need\s+to\s+do|scheduled|"
    r"anything|items|pending|open)\b|#"
)


_QUERY_LEAD = re.compile(
    r"^(?:(?:my|the|all|all\s+my|any)\s+)?(?:tasks?|todos?|to-dos?|items?|things?|reminders?)?\s*(?:about|with|for|"
    r"regarding|called|named|mentioning|containing|on)\s+"
)


_SEARCH_VERBS = ("show", "list", "find", "search", "look")


def _list(text: str, original: str, clock: Clock) -> chat_pb2.Intent | None:
    if not (_LIST_START.match(text) or (text.endswith("?") and re.search(r"\b(?:due|tasks?|overdue|late)\b", text))):
        return None
    if not _LISTISH.search(text):
        return None
    request = task_service_pb2.ListTasksRequest()
    intent = chat_pb2.Intent(kind=Kind.INTENT_KIND_LIST_TASKS, confidence=0.85)
    message = Message(text.rstrip("?. !"))
    search = message.search(_SEARCH)
    query_words = ""
    if search:
        query_words = search.group(1)
        message.take_match(search)
    if message.search(_INCLUDING):
        request.statuses.extend([task_pb2.TASK_STATUS_OPEN, task_pb2.TASK_STATUS_COMPLETED])
        match = message.search(_INCLUDING)
        assert match is not None
        message.take_match(match)
    elif message.search(_COMPLETED):
        request.statuses.append(task_pb2.TASK_STATUS_COMPLETED)
        match = message.search(_COMPLETED)
        assert match is not None
        message.take_match(match)
    overdue = message.search(_OVERDUE)
    if overdue:
        request.overdue = True
        message.take_match(overdue)
    priority = attributes.take_priority(message)
    if priority:
        request.priorities.append(priority)
    request.tags_any.extend(attributes.take_tags(message))
    _due_range(message, clock, request)
    unread = re.sub(r"[^\w\s'-]", " ", _LIST_FILLER.sub(" ", message.rest_lower()))
    leftover = [word for word in unread.split() if re.search(r"\w", word)]
    if query_words:
        query = " ".join(_strip_articles(_QUERY_LEAD.sub("", query_words).split()))
        query_words_list = [w for w in re.sub(r"[^\w\s'-]", " ", query).split() if w not in ("tasks", "task", "my")]
        request.query = " ".join(_strip_articles(query_words_list))
    elif leftover and not request.tags_any and len(leftover) <= 6 and text.startswith(_SEARCH_VERBS):
        request.query = " ".join(leftover)
    intent.list_request.CopyFrom(request)
    intent.query = request.query
    return intent


_RANGE = re.compile(
    r"\b(?:for\s+|on\s+|due\s+)?(today|tonight|tomorrow|this\s+week|next\s+week|this\s+month|next\s+month|"
    r"this\s+weekend|next\s+weekend|(?:on\s+)?(?:" + v.WEEKDAY_PATTERN + r")|yesterday|the\s+next\s+(\d{1,3})\s+days)\b"
)


def _due_range(message: Message, clock: Clock, request: task_service_pb2.ListTasksRequest) -> None:
    match = message.search(_RANGE)
    if not match:
        return
    message.take_match(match)
    word = match.group(1)
    today = clock.today
    monday = today - timedelta(days=today.weekday())
    start = end = None
    if word in ("today", "tonight"):
        start, end = today, today + timedelta(days=1)
    elif word == "tomorrow":
        start, end = today + timedelta(days=1), today + timedelta(days=2)
    elif word == "yesterday":
        start, end = today - timedelta(days=1), today
    elif word.startswith("this") and word.endswith("weekend"):
        start, end = max(today, monday + timedelta(days=5)), monday + timedelta(days=7)
    elif word.startswith("next") and word.endswith("weekend"):
        start, end = monday + timedelta(days=12), monday + timedelta(days=14)
    elif word.startswith("this") and word.endswith("week"):
        start, end = today, monday + timedelta(days=7)
    elif word.startswith("next") and word.endswith("week"):
        start, end = monday + timedelta(days=7), monday + timedelta(days=14)
    elif word.endswith("month"):
        first_next = (today.replace(day=1) + timedelta(days=32)).replace(day=1)
        if word.startswith("this"):
            start, end = today, first_next
        else:
            start, end = first_next, (first_next + timedelta(days=32)).replace(day=1)
    elif match.group(2):
        start, end = today, today + timedelta(days=int(match.group(2)) + 1)
    else:
        name = word.split()[-1]
        day = today + timedelta(days=(v.WEEKDAYS[name] - today.weekday()) % 7)
        start, end = day, day + timedelta(days=1)
    request.due_range.start_time.CopyFrom(_timestamp(clock.start_of(start)))
    request.due_range.end_time.CopyFrom(_timestamp(clock.start_of(end)))


# --- snooze ------------------------------------------------------------------------------------------------------

_SNOOZE = re.compile(
    r"^(?:snooze|delay\s+the\s+reminder|remind\s+me\s+again|remind\s+me\s+later|later|not\s+now,?\s+remind\s+me)\b(.*)$"
)
_SNOOZE_REST = re.compile(r"^(?:(?:it|that|this|this\s+one|that\s+one|them)\b)")


_SNOOZE_FILLER = re.compile(
    r"\b(?:for|until|till|til|to|again|please|later|reminder|reminders|the\s+reminder\s+(?:for|of|about))\b"
)


def _snooze(text: str, clock: Clock) -> chat_pb2.Intent | None:
    match = _SNOOZE.match(text)
    if not match:
        return None
    intent = chat_pb2.Intent(kind=Kind.INTENT_KIND_SNOOZE_REMINDER, confidence=0.9)
    message = Message(match.group(1))
    seconds = dates.take_duration(message) if not re.search(r"\b(?:until|till|til|to)\b", message.lower) else None
    if seconds is not None:
        if not 60 <= seconds <= 365 * 86400:
            intent.clarifying_question = "I can snooze a reminder for 1 minute to 365 days. For how long?"
            intent.confidence = 0.5
            return intent
        intent.snooze_request.snooze_for.CopyFrom(_duration(seconds))
    else:
        when = dates.take_when(message, clock)
        local = dates.resolve(when, clock)
        if local is None:
            intent.clarifying_question = "For how long should I snooze it? For example: snooze 10 minutes."
            intent.confidence = 0.5
        else:
            intent.snooze_request.snooze_until.CopyFrom(_timestamp(clock.instant_of(local)))
    rest = _SNOOZE_FILLER.sub(" ", message.rest_lower())
    rest = _connector_stripped(rest).strip(" ,.")
    if rest:
        _with_target(intent, rest)
    return intent


# --- channels ----------------------------------------------------------------------------------------------------

_CHANNEL_WORDS = re.compile(
    r"\b(?:e-?mail(?:s|ing)?|mail\s+me|webhooks?|quiet\s+hours|do\s+not\s+disturb|don'?t\s+disturb|"
    r"in-?app|notifications?|notify|alerts?)\b"
)
_OFF = re.compile(
    r"\b(?:stop|off|disable|disabled|deactivate|no\s+more|don'?t|do\s+not|never|unsubscribe|mute|pause|"
    r"without|remove|cancel|no\s+longer|quit)\b"
)
_QUIET = re.compile(r"\b(?:quiet\s+hours|do\s+not\s+disturb|don'?t\s+disturb(?:\s+me)?|dnd|silence|mute)\b")
_ABOUT_REMINDERS = re.compile(r"\b(?:reminders?|notifications?|alerts?|notify|notified)\b")
_EMAIL_ME = re.compile(r"\b(?:e-?mail\s+me|e-?mailing\s+me|e-?mails?\s+(?:me\s+)?(?:reminders?|notifications?|alerts?)|"
                       r"by\s+e-?mail|via\s+e-?mail|over\s+e-?mail|e-?mail\s+(?:reminders?|notifications?|alerts?)|"
                       r"e-?mail\s+(?:delivery|channel)|send\s+(?:my\s+|the\s+)?(?:reminders?|notifications?)\s+to|"
                       r"for\s+e-?mail|e-?mail\s+(?:on|off))\b")  # fmt: skip
_WEBHOOK = re.compile(r"\bwebhooks?\b")
_IN_APP = re.compile(r"\bin-?\s?app\b")


def _email_address(text: str) -> str:
    at = text.find("@")
    while at != -1:
        start = at
        while start > 0 and (text[start - 1].isalnum() or text[start - 1] in "._%+-") and at - start < 64:
            start -= 1
        end = at + 1
        while end < len(text) and (text[end].isalnum() or text[end] in ".-") and end - at < 255:
            end += 1
        address = text[start:end].strip(".")
        local, _, domain = address.partition("@")
        if local and "." in domain and not domain.startswith("."):
            return address
        at = text.find("@", at + 1)
    return ""


def _channels(text: str, clock: Clock) -> chat_pb2.Intent | None:
    address = _email_address(text) if "@" in text else ""
    if not (_CHANNEL_WORDS.search(text) or (address and _ABOUT_REMINDERS.search(text))):
        return None
    quiet = _QUIET.search(text)
    email = bool(_EMAIL_ME.search(text)) or (bool(address) and bool(_ABOUT_REMINDERS.search(text) or "email" in text))
    webhook = bool(_WEBHOOK.search(text))
    in_app = bool(_IN_APP.search(text))
    if not (quiet or email or webhook or in_app or (address and text.startswith(("email me", "e-mail me")))):
        return None
    off = bool(_OFF.search(text))
    settings = notify_pb2.ChannelSettings()
    paths: list[str] = []
    intent = chat_pb2.Intent(kind=Kind.INTENT_KIND_UPDATE_CHANNELS, confidence=0.9)
    if quiet:
        times = _two_times(text)
        if times is not None and not (off and "off" in text.split()):
            settings.quiet_hours.CopyFrom(notify_pb2.QuietHours(enabled=True, start=times[0], end=times[1],
                                                                time_zone=clock.zone_name))  # fmt: skip
            paths.append("quiet_hours")
        elif off or re.search(r"\b(?:end|no)\s+quiet\s+hours\b", text):
            settings.quiet_hours.enabled = False
            paths.append("quiet_hours.enabled")
        else:
            intent.kind = Kind.INTENT_KIND_UPDATE_CHANNELS
            intent.clarifying_question = "From when to when should the quiet hours be? For example: 22:00 to 07:00."
            intent.confidence = 0.5
            return intent
    elif email or address:
        if address and not off:
            settings.email.address = address
            paths.append("email.address")
        settings.email.enabled = not off
        paths.append("email.enabled")
    elif webhook:
        settings.webhook.enabled = not off
        paths.append("webhook.enabled")
    elif in_app:
        settings.in_app_enabled = not off
        paths.append("in_app_enabled")
    request = notify_pb2.UpdateChannelSettingsRequest(
        settings=settings, update_mask=field_mask_pb2.FieldMask(paths=paths)
    )
    intent.channels_request.CopyFrom(request)
    return intent


def _two_times(text: str) -> tuple[str, str] | None:
    found: list[time] = []
    message = Message(text)
    for _ in range(2):
        when = dates.take_time(message)
        if when.at is None:
            break
        found.append(when.at)
    if len(found) != 2:
        return None
    return found[0].strftime("%H:%M"), found[1].strftime("%H:%M")


# --- activity ----------------------------------------------------------------------------------------------------

_ACTIVITY = re.compile(
    r"^(?:what\s+(?:has\s+)?happened|what(?:'s|\s+has)?\s+(?:been\s+)?(?:changed|happening|going\s+on)|"
    r"what\s+changed|what\s+did\s+i\s+do|what\s+have\s+i\s+(?:done|been\s+doing)|(?:show|list|display|give)\s+"
    r"(?:me\s+)?(?:my\s+|the\s+)?(?:recent\s+|latest\s+)?(?:activity|history|changes|log|audit)|"
    r"(?:recent\s+|latest\s+)?(?:activity|history|changes|log|audit\s+log)|what\s+was\s+done|what\s+got\s+done)\b(.*)$"
)
_LATELY = re.compile(r"\b(?:lately|recently|recent|latest|last\s+few\s+days|past\s+few\s+days)\b")
_HISTORY_OF = re.compile(r"\b(?:of|for|on|to|with|about)\s+(.+)$")


def _activity(text: str, clock: Clock) -> chat_pb2.Intent | None:
    match = _ACTIVITY.match(text)
    if not match:
        return None
    intent = chat_pb2.Intent(kind=Kind.INTENT_KIND_SHOW_ACTIVITY, confidence=0.85)
    request = audit_pb2.ListActivityRequest()
    today = clock.today
    start: datetime | None = None
    end: datetime | None = None
    rest = match.group(1).strip(" ?.!")
    if _LATELY.search(text):
        start = clock.now - timedelta(days=7)
    elif re.search(r"\btoday\b", text):
        start = clock.start_of(today)
    elif re.search(r"\byesterday\b", text):
        start, end = clock.start_of(today - timedelta(days=1)), clock.start_of(today)
    elif re.search(r"\bthis\s+week\b", text):
        start = clock.start_of(today - timedelta(days=today.weekday()))
    elif re.search(r"\blast\s+week\b", text):
        monday = today - timedelta(days=today.weekday())
        start, end = clock.start_of(monday - timedelta(days=7)), clock.start_of(monday)
    elif re.search(r"\bthis\s+month\b", text):
        start = clock.start_of(today.replace(day=1))
    if start is not None:
        request.occur_range.start_time.CopyFrom(_timestamp(start))
    if end is not None:
        request.occur_range.end_time.CopyFrom(_timestamp(end))
    target = _HISTORY_OF.search(rest)
    if target:
        words = re.sub(
            r"\b(?:lately|recently|today|yesterday|this\s+week|last\s+week|this\s+month)\b", " ", target.group(1)
        )
        _with_target(intent, words.strip())
    intent.activity_request.CopyFrom(request)
    return intent


# --- the whole message -------------------------------------------------------------------------------------------


def _normalized(text: str) -> tuple[str, str]:
    """The message without politeness around it: (lower case, user's spelling), same length."""
    original = " ".join(text.split())
    lower = original.lower()
    if len(lower) != len(original):
        original = lower
    match = _POLITE.match(lower)
    start = match.end() if match else 0
    tail = _TRAILING_POLITE.search(lower)
    end = tail.start() if tail and tail.start() >= start else len(lower)
    return lower[start:end].strip(), original[start:end].strip()


def _unclear(question: str | None = None) -> chat_pb2.Intent:
    return chat_pb2.Intent(
        kind=Kind.INTENT_KIND_UNSPECIFIED,
        confidence=0.0,
        clarifying_question=question
        or "Sorry, I didn't understand that. You can say things like 'buy milk tomorrow at 5pm', "
        "'I paid the rent', 'what's due this week?' or 'help'.",
    )


_QUESTION_START = re.compile(r"^(?:what|who|why|how|where|when|is|are|can|could|would|will|do|does|did)\b")
_NOT_A_TASK = re.compile(
    r"^(?:thanks|thank\s+you|thx|ty|cool|great|nice|awesome|lol|haha|hmm+|ok\s+thanks|bye|goodbye)$"
)


def understand(text: str, clock: Clock) -> chat_pb2.Intent:
    """The intent of a message (never raises for any text; unknown -> UNSPECIFIED with a question)."""
    lower, original = _normalized(text)
    bare = _PUNCT_END.sub("", lower)
    if lower.strip() in ("?", "??"):
        return chat_pb2.Intent(kind=Kind.INTENT_KIND_HELP, confidence=0.9)
    if not re.search(r"[a-z0-9]", bare):
        return _unclear()
    if _HELP.match(bare):
        return chat_pb2.Intent(kind=Kind.INTENT_KIND_HELP, confidence=0.95)
    answer = _answer(bare)
    if answer is not None:
        return answer
    if _NOT_A_TASK.match(bare):
        return _unclear("You're welcome! Tell me what to add, change or look up, or say 'help'.")
    if bare in _BARE:
        kind, question = _BARE[bare]
        return chat_pb2.Intent(kind=kind, clarifying_question=question, confidence=0.5)
    if re.fullmatch(r"(?:add|create|make|new)\s+(?:a\s+|an\s+)?(?:new\s+)?(?:task|todo|to-do|reminder|item)", bare):
        return chat_pb2.Intent(
            kind=Kind.INTENT_KIND_CREATE_TASK, clarifying_question="What should I add?", confidence=0.5
        )
    steps: tuple[Callable[[], chat_pb2.Intent | None], ...] = (
        lambda: _snooze(bare, clock),
        lambda: _channels(bare, clock),
        lambda: _activity(bare, clock),
        lambda: _list(lower, original, clock),
        lambda: _update(bare, clock),
        lambda: _task_command(bare),
    )
    for step in steps:
        intent = step()
        if intent is not None:
            return intent
    create_text = lower.rstrip(" .")
    has_details = _has_details(create_text, clock)
    report = _past_report(bare, has_details)
    if report is not None:
        return report
    if _QUESTION_START.match(bare) and lower.endswith("?") and not has_details:
        return _unclear()
    if lower.endswith("?") and not has_details and len(bare.split()) <= 2:
        return _unclear()
    intent = _create(create_text, original.rstrip(" .")[: len(create_text)], clock)
    return intent


def _has_details(text: str, clock: Clock) -> bool:
    message = Message(text)
    if recurrence.take_repeat(message, clock).found:
        return True
    if attributes.take_priority(message) or attributes.take_tags(message):
        return True
    return dates.take_when(message, clock).found
