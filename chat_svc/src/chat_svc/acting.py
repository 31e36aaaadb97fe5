"""Carrying out what a message asks, through the other services' gRPC APIs, as the user who sent it.

Every call goes through the runtime's command channel, which forwards the
caller's authorization: the task, reminder, notification and audit services
act as that same user, so the chat can never touch another user's data, and
never reads any service's database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from chat_svc import domain, replies
from chat_svc.domain import AnswerOutcome, Memory, PendingQuestion, QuestionKind
from todo_contracts.audit.v1 import audit_pb2, audit_pb2_grpc
from todo_contracts.chat.v1 import chat_pb2
from todo_contracts.notify.v1 import notify_pb2, notify_pb2_grpc
from todo_contracts.reminder.v1 import reminder_pb2, reminder_pb2_grpc
from todo_contracts.task.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc
from todo_kit.runtime.port import Runtime

TASK_APP = "task_svc"
REMINDER_APP = "reminder_svc"
NOTIFY_APP = "notify_svc"
AUDIT_APP = "audit_svc"
CALL_TIMEOUT_SECONDS = 10.0
SNOOZE_DEFAULT = timedelta(minutes=10)
FIRED_WINDOWS = (timedelta(days=1), timedelta(days=30))
"""Where the user's last fired reminder is looked for: the last day first, then the last month."""
REMINDER_PAGES_MAX = 3
REMINDER_PAGE_SIZE = 1000

# Errors a user can do something about become plain replies; any other error of a called service is raised
# (and the kit makes it INTERNAL with a reference to quote).
_PLAIN_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


@dataclass
class Situation:
    """Where a message is handled: the user's zone, now, the conversation's memory, the create request id."""

    zone: ZoneInfo
    now: datetime
    memory: Memory
    create_request_id: str


@dataclass
class Turn:
    """The assistant's answer to one message."""

    reply: str
    actions: list[chat_pb2.ChatAction] = field(default_factory=list)
    needs_clarification: bool = False


class Plain(Exception):
    """A called service refused in a way the user can fix: the reply says so."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


def _violations(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    status = rpc_status.from_call(error)
    found: list[tuple[str, str]] = []
    if status is None:
        return found
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            found += [(v.field, v.description) for v in bad.field_violations]
    return found


def plain_reply(kind: int, error: grpc.aio.AioRpcError, task: task_pb2.Task | None = None) -> str | None:
    """The reply for a refusal the user can fix, or None for an error that is not theirs."""
    code = error.code()
    if code not in _PLAIN_CODES:
        return None
    if code == grpc.StatusCode.ABORTED:
        return replies.changed_meanwhile(task)
    if code == grpc.StatusCode.NOT_FOUND:
        if kind == chat_pb2.INTENT_KIND_CREATE_TASK:
            return "I added that earlier, and it has since been deleted."
        return replies.gone()
    return replies.cannot(kind, _violations(error), error.details() or "")


class Assistant:
    """Carries out intents as the calling user and says what it did."""

    def __init__(self, runtime: Runtime, *, call_timeout: float = CALL_TIMEOUT_SECONDS) -> None:
        self.runtime = runtime
        self.call_timeout = call_timeout

    # --- calls -----------------------------------------------------------------

    @property
    def _tasks(self) -> task_service_pb2_grpc.TaskServiceStub:
        return task_service_pb2_grpc.TaskServiceStub(self.runtime.channel(TASK_APP))

    @property
    def _reminders(self) -> reminder_pb2_grpc.ReminderServiceStub:
        return reminder_pb2_grpc.ReminderServiceStub(self.runtime.channel(REMINDER_APP))

    async def _call(self, kind: int, method: Any, request: Any, task: task_pb2.Task | None = None) -> Any:
        """One command; a refusal the user can fix becomes Plain."""
        try:
            return await method(request, timeout=self.call_timeout)
        except grpc.aio.AioRpcError as error:
            reply = plain_reply(kind, error, task)
            if reply is None:
                raise
            raise Plain(reply) from None

    async def _get(self, task_id: str) -> task_pb2.Task | None:
        try:
            response = await self._tasks.GetTask(
                task_service_pb2.GetTaskRequest(task_id=task_id), timeout=self.call_timeout
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise
        task: task_pb2.Task = response.task
        return task

    # --- a message ---------------------------------------------------------------

    async def respond(self, intent: chat_pb2.Intent, text: str, situation: Situation) -> Turn:
        """Carries out intent (or the answer it gives to the pending question) and says what was done."""
        try:
            return await self._respond(intent, text, situation)
        except Plain as refusal:
            return Turn(refusal.reply)

    async def _respond(self, intent: chat_pb2.Intent, text: str, situation: Situation) -> Turn:
        memory = situation.memory
        pending, memory.pending = memory.pending, None
        if pending is not None:
            answer = domain.read_answer(intent, text, pending)
            if answer.outcome is AnswerOutcome.PICKED:
                task = await self._get(answer.task_id)
                if task is None:
                    return Turn(replies.gone())
                return await self._act_on(pending.intent, task, situation)
            if answer.outcome is AnswerOutcome.CONFIRMED:
                return await self._act_on_all(pending.intent, pending.task_ids, situation)
            if answer.outcome is AnswerOutcome.DECLINED:
                return Turn(replies.declined())
            if answer.outcome is AnswerOutcome.INVALID:
                memory.pending = pending
                return Turn(replies.pick_again(len(pending.task_ids)), needs_clarification=True)
        kind = intent.kind
        if intent.clarifying_question or kind == chat_pb2.INTENT_KIND_UNSPECIFIED:
            return Turn(intent.clarifying_question or replies.NOT_UNDERSTOOD, needs_clarification=True)
        if kind == chat_pb2.INTENT_KIND_ANSWER:
            return Turn(replies.nothing_to_answer())
        if kind == chat_pb2.INTENT_KIND_HELP:
            return Turn(replies.HELP)
        if kind == chat_pb2.INTENT_KIND_CREATE_TASK:
            return await self._create(intent, situation)
        if kind == chat_pb2.INTENT_KIND_LIST_TASKS:
            return await self._list(intent, situation)
        if kind == chat_pb2.INTENT_KIND_UPDATE_CHANNELS:
            return await self._channels(intent)
        if kind in domain.TASK_COMMANDS and intent.all_tasks:
            if kind in domain.CONFIRMED_FOR_ALL:
                return await self._ask_all(intent, situation)
            return Turn("I can do that for one task at a time. " + replies.WHICH_TASK, needs_clarification=True)
        if kind in domain.TASK_COMMANDS or _names_a_task(intent):
            found = await self._resolve(intent, situation)
            if isinstance(found, Turn):
                return found
            return await self._act_on(intent, found, situation)
        if kind == chat_pb2.INTENT_KIND_SNOOZE_REMINDER:
            return await self._snooze(intent, None, situation)
        if kind == chat_pb2.INTENT_KIND_SHOW_ACTIVITY:
            return await self._activity(intent, None, situation)
        return Turn(replies.NOT_UNDERSTOOD, needs_clarification=True)

    # --- finding the task a command names ---------------------------------------------

    async def _resolve(self, intent: chat_pb2.Intent, situation: Situation) -> task_pb2.Task | Turn:
        """The one task intent names, or the turn that asks which one (or says there is none)."""
        memory = situation.memory
        if intent.target_task_id:
            task = await self._get(intent.target_task_id)
            return task if task is not None else Turn(replies.gone())
        if intent.refers_to_previous:
            reference = domain.resolve_reference(intent, memory.last_task_ids)
            if reference.task_id:
                task = await self._get(reference.task_id)
                return task if task is not None else Turn(replies.gone())
            if reference.out_of_range:
                return Turn(replies.out_of_range(len(memory.last_task_ids)), needs_clarification=True)
            if not reference.choose_from:
                return Turn(replies.no_previous(), needs_clarification=True)
            candidates = [t for t in [await self._get(i) for i in reference.choose_from] if t is not None]
            if len(candidates) == 1:
                return candidates[0]  # only one of the remembered tasks is still there: no need to ask
            return self._ask_which(intent, candidates, len(candidates), situation)
        query = intent.target_query.strip()
        if not query:
            return Turn(replies.WHICH_TASK, needs_clarification=True)
        for statuses in domain.search_statuses(intent.kind):
            request = domain.search_request(query, statuses, domain.CHOICES_SHOWN)
            found = await self._call(intent.kind, self._tasks.ListTasks, request)
            if len(found.tasks) == 1 and found.total_size <= 1:
                only: task_pb2.Task = found.tasks[0]
                return only
            if found.tasks:
                return self._ask_which(intent, list(found.tasks), int(found.total_size), situation)
        return Turn(replies.none_found(query))

    def _ask_which(
        self, intent: chat_pb2.Intent, candidates: Sequence[task_pb2.Task], total: int, situation: Situation
    ) -> Turn:
        if not candidates:
            return Turn(replies.gone())
        ids = [t.task_id for t in candidates]
        situation.memory.pending = PendingQuestion(QuestionKind.CHOICE, intent, ids)
        situation.memory.remember(ids)
        question = replies.which_one(candidates, total, situation.zone, situation.now)
        return Turn(question, needs_clarification=True)

    # --- acting on one task ---------------------------------------------------------------

    async def _act_on(self, intent: chat_pb2.Intent, task: task_pb2.Task, situation: Situation) -> Turn:
        kind = intent.kind
        tasks = self._tasks
        after: task_pb2.Task
        if kind == chat_pb2.INTENT_KIND_SNOOZE_REMINDER:
            return await self._snooze(intent, task, situation)
        if kind == chat_pb2.INTENT_KIND_SHOW_ACTIVITY:
            return await self._activity(intent, task, situation)
        situation.memory.remember([task.task_id])
        if kind == chat_pb2.INTENT_KIND_COMPLETE_TASK:
            if task.status == task_pb2.TASK_STATUS_COMPLETED:
                return Turn(replies.already(kind, task))
            request = task_service_pb2.CompleteTaskRequest(task_id=task.task_id, expected_version=task.version)
            after = (await self._call(kind, tasks.CompleteTask, request, task)).task
            reply = replies.done(kind, after)
        elif kind == chat_pb2.INTENT_KIND_REOPEN_TASK:
            if task.status == task_pb2.TASK_STATUS_OPEN:
                return Turn(replies.already(kind, task))
            reopen = task_service_pb2.ReopenTaskRequest(task_id=task.task_id, expected_version=task.version)
            after = (await self._call(kind, tasks.ReopenTask, reopen, task)).task
            reply = replies.done(kind, after)
        elif kind == chat_pb2.INTENT_KIND_DELETE_TASK:
            # Deleting from the chat removes the task and its repeats: "drop the yoga class" means all of it.
            delete = task_service_pb2.DeleteTaskRequest(
                task_id=task.task_id, expected_version=task.version, end_series=task.HasField("recurrence")
            )
            after = (await self._call(kind, tasks.DeleteTask, delete, task)).task
            reply = replies.done(kind, after)
        elif kind == chat_pb2.INTENT_KIND_UPDATE_TASK:
            update = domain.update_request(intent, task)
            if not update.update_mask.paths:
                return Turn(f"What should I change about {replies.title(task)}?", needs_clarification=True)
            after = (await self._call(kind, tasks.UpdateTask, update, task)).task
            reply = replies.updated(after, list(update.update_mask.paths), situation.zone, situation.now)
        else:
            return Turn(replies.NOT_UNDERSTOOD, needs_clarification=True)
        return Turn(reply, [chat_pb2.ChatAction(kind=kind, task=after, summary=reply)])

    # --- every task, after a yes ---------------------------------------------------------

    async def _ask_all(self, intent: chat_pb2.Intent, situation: Situation) -> Turn:
        request = domain.all_tasks_request(intent)
        found = await self._call(intent.kind, self._tasks.ListTasks, request)
        if not found.tasks:
            return Turn(replies.none_found(request.query) if request.query else "You have no open tasks.")
        ids = [t.task_id for t in found.tasks]
        situation.memory.pending = PendingQuestion(QuestionKind.CONFIRM, intent, ids)
        return Turn(replies.confirm_all(intent.kind, len(ids), int(found.total_size)), needs_clarification=True)

    async def _act_on_all(self, intent: chat_pb2.Intent, task_ids: Sequence[str], situation: Situation) -> Turn:
        kind = intent.kind
        tasks = self._tasks
        actions: list[chat_pb2.ChatAction] = []
        missing = 0
        for task_id in task_ids[: domain.ALL_TASKS_MAX]:
            try:
                if kind == chat_pb2.INTENT_KIND_DELETE_TASK:
                    after = (
                        await tasks.DeleteTask(
                            task_service_pb2.DeleteTaskRequest(task_id=task_id), timeout=self.call_timeout
                        )
                    ).task
                else:
                    after = (
                        await tasks.CompleteTask(
                            task_service_pb2.CompleteTaskRequest(task_id=task_id), timeout=self.call_timeout
                        )
                    ).task
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                missing += 1  # deleted since the question: nothing to do
                continue
            actions.append(chat_pb2.ChatAction(kind=kind, task=after, summary=replies.done(kind, after)))
        if kind != chat_pb2.INTENT_KIND_DELETE_TASK:
            situation.memory.remember([a.task.task_id for a in actions])
        return Turn(replies.all_done(kind, len(actions), missing), actions)

    # --- the other commands -----------------------------------------------------------------

    async def _create(self, intent: chat_pb2.Intent, situation: Situation) -> Turn:
        kind = intent.kind
        if not intent.task.title.strip():
            return Turn("What should I add?", needs_clarification=True)
        request = task_service_pb2.CreateTaskRequest(task=intent.task, client_request_id=situation.create_request_id)
        task: task_pb2.Task = (await self._call(kind, self._tasks.CreateTask, request)).task
        situation.memory.remember([task.task_id])
        reply = replies.created(task, situation.zone, situation.now)
        return Turn(reply, [chat_pb2.ChatAction(kind=kind, task=task, summary=reply)])

    async def _list(self, intent: chat_pb2.Intent, situation: Situation) -> Turn:
        kind = intent.kind
        request = domain.listing_request(intent)
        found = await self._call(kind, self._tasks.ListTasks, request)
        shown = list(found.tasks)
        filters = task_service_pb2.ListTasksRequest()
        filters.CopyFrom(request)
        filters.page_size = 0
        searched = filters.ByteSize() > 0
        situation.memory.remember([t.task_id for t in shown])
        total = max(int(found.total_size), len(shown))
        reply = replies.listing(shown, total, situation.zone, situation.now, searched)
        summary = f"Listed {len(shown)} of {total} task{'' if total == 1 else 's'}"
        return Turn(reply, [chat_pb2.ChatAction(kind=kind, tasks=shown, summary=summary)])

    async def _snooze(self, intent: chat_pb2.Intent, task: task_pb2.Task | None, situation: Situation) -> Turn:
        kind = intent.kind
        reminder = await self._last_fired(task, situation.now)
        if reminder is None:
            return Turn(replies.nothing_to_snooze(task))
        request = reminder_pb2.SnoozeReminderRequest()
        request.CopyFrom(intent.snooze_request)
        request.reminder_id = reminder.reminder_id
        if request.WhichOneof("until") is None:
            request.snooze_for.FromTimedelta(SNOOZE_DEFAULT)
        snoozed = (await self._call(kind, self._reminders.SnoozeReminder, request, task)).reminder
        if task is None:
            task = await self._get(snoozed.task_id)
        if task is not None:
            situation.memory.remember([task.task_id])
        reply = replies.snoozed(snoozed, situation.zone, situation.now)
        action = chat_pb2.ChatAction(kind=kind, summary=reply)
        if task is not None:
            action.task.CopyFrom(task)
        return Turn(reply, [action])

    async def _last_fired(self, task: task_pb2.Task | None, now: datetime) -> reminder_pb2.Reminder | None:
        """The task's latest fired reminder, or (without a task) the user's, looked for in bounded pages."""
        reminders = self._reminders
        fired = [reminder_pb2.REMINDER_STATE_FIRED]
        if task is not None:
            requests = [
                reminder_pb2.ListRemindersRequest(task_id=task.task_id, states=fired, page_size=REMINDER_PAGE_SIZE)
            ]
        else:
            requests = []
            for window in FIRED_WINDOWS:
                request = reminder_pb2.ListRemindersRequest(states=fired, page_size=REMINDER_PAGE_SIZE)
                request.fire_range.start_time.FromDatetime(now - window)
                request.fire_range.end_time.FromDatetime(now + timedelta(minutes=1))
                requests.append(request)
        for request in requests:
            seen: list[reminder_pb2.Reminder] = []
            for _ in range(REMINDER_PAGES_MAX):
                page = await reminders.ListReminders(request, timeout=self.call_timeout)
                seen.extend(page.reminders)
                if not page.next_page_token:
                    break
                request.page_token = page.next_page_token
            newest = domain.newest_fired(seen)
            if newest is not None:
                return newest
        return None

    async def _activity(self, intent: chat_pb2.Intent, task: task_pb2.Task | None, situation: Situation) -> Turn:
        kind = intent.kind
        request = audit_pb2.ListActivityRequest()
        request.CopyFrom(intent.activity_request)
        request.page_size = domain.ACTIVITY_PAGE_SIZE
        request.page_token = ""
        if task is not None:
            request.task_id = task.task_id
            situation.memory.remember([task.task_id])
        audit = audit_pb2_grpc.AuditServiceStub(self.runtime.channel(AUDIT_APP))
        found = await self._call(kind, audit.ListActivity, request, task)
        entries = list(found.entries)
        reply = replies.activity(entries, situation.zone, situation.now, bool(found.next_page_token))
        summary = f"Showed {len(entries)} activity entr{'y' if len(entries) == 1 else 'ies'}"
        return Turn(reply, [chat_pb2.ChatAction(kind=kind, summary=summary)])

    async def _channels(self, intent: chat_pb2.Intent) -> Turn:
        kind = intent.kind
        request = notify_pb2.UpdateChannelSettingsRequest()
        request.CopyFrom(intent.channels_request)
        if not request.update_mask.paths:
            return Turn("What should I change about your notifications?", needs_clarification=True)
        notify = notify_pb2_grpc.NotificationServiceStub(self.runtime.channel(NOTIFY_APP))
        response = await self._call(kind, notify.UpdateChannelSettings, request)
        reply = replies.channels(
            response.settings, list(request.update_mask.paths), bool(response.generated_signing_secret)
        )
        return Turn(reply, [chat_pb2.ChatAction(kind=kind, summary=reply)])


def _names_a_task(intent: chat_pb2.Intent) -> bool:
    """A snooze or activity request that names a task ("snooze the rent reminder", "what happened to it")."""
    return intent.kind in domain.OPTIONAL_TARGET and bool(
        intent.target_task_id or intent.refers_to_previous or intent.target_query.strip()
    )
