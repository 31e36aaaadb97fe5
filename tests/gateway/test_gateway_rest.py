"""Every service's happy path through the REST gateway, and its errors (real host, real gateway).

JSON uses the proto field names and carries every field; errors are
grpc-gateway's {"code", "message", "details"} with the HTTP status of the gRPC
code and the google.rpc details (field violations) as JSON.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import aiohttp
from gateway_client import Reply, call
from host_process import HostProcess

from todo_kit.auth import issue_token, signing_key_for
from todo_kit.config import Settings

BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"


class Rest:
    """REST calls as one user."""

    def __init__(self, session: aiohttp.ClientSession, host: HostProcess, user: str) -> None:
        self.session, self.base, self.headers = session, host.web_url, host.auth_header(user)

    async def __call__(self, method: str, path: str, body: Any = None, *, expect: int = 200) -> Any:
        reply = await call(self.session, method, self.base + path, headers=self.headers, body=body)
        assert reply.status == expect, f"{method} {path}: {reply.status} {reply.text}"
        return reply.body


def due_in(delta: timedelta) -> dict[str, str]:
    moment = datetime.now(UTC) + delta
    return {"local_time": moment.strftime("%Y-%m-%dT%H:%M:%S"), "time_zone": "UTC"}


def violations(reply: Reply) -> list[str]:
    """The fields named by the BadRequest details of an error body."""
    fields: list[str] = []
    for detail in reply.body["details"]:
        if detail["@type"] == BAD_REQUEST_TYPE:
            fields += [v["field"] for v in detail["field_violations"]]
    return fields


async def test_task_lifecycle_through_rest(gateway_host: HostProcess) -> None:
    async with aiohttp.ClientSession() as session:
        rest = Rest(session, gateway_host, "rest-tasks")
        task = {"title": "Pay rent", "priority": "PRIORITY_HIGH", "tags": ["finance"], "due": due_in(timedelta(days=2))}
        created = (await rest("POST", "/v1/tasks", {"task": task}))["task"]
        task_id = created["task_id"]
        assert created["status"] == "TASK_STATUS_OPEN" and created["version"] == "1"
        assert created["complete_time"] is None  # every field is present, unset ones as null

        listed = await rest("GET", "/v1/tasks?query=rent")
        assert [t["task_id"] for t in listed["tasks"]] == [task_id]

        updated = (await rest("PATCH", f"/v1/tasks/{task_id}", {"title": "Pay the rent"}))["task"]
        assert updated["title"] == "Pay the rent" and updated["priority"] == "PRIORITY_HIGH"
        assert (await rest("GET", f"/v1/tasks/{task_id}"))["task"]["title"] == "Pay the rent"

        completed = (await rest("POST", f"/v1/tasks/{task_id}:complete", {}))["task"]
        assert completed["status"] == "TASK_STATUS_COMPLETED" and completed["complete_time"]
        await rest("POST", f"/v1/tasks/{task_id}:reopen", {})

        await rest("DELETE", f"/v1/tasks/{task_id}")
        await rest("GET", f"/v1/tasks/{task_id}", expect=404)


async def test_input_accepts_json_names_too(gateway_host: HostProcess) -> None:
    async with aiohttp.ClientSession() as session:
        rest = Rest(session, gateway_host, "rest-names")
        await rest("POST", "/v1/tasks", {"task": {"title": "Camel case", "clientRequestId": "x"}}, expect=400)
        created = await rest("POST", "/v1/tasks", {"clientRequestId": "req-1", "task": {"title": "Camel case"}})
        again = await rest("POST", "/v1/tasks", {"client_request_id": "req-1", "task": {"title": "Camel case"}})
        assert again["task"]["task_id"] == created["task"]["task_id"]  # the same request, named either way


async def test_reminders_list_and_snooze_through_rest(gateway_host: HostProcess) -> None:
    async with aiohttp.ClientSession() as session:
        rest = Rest(session, gateway_host, "rest-reminders")
        task = {"title": "Dentist", "due": due_in(timedelta(seconds=61)), "reminders": [{"before_due": "60s"}]}
        task_id = (await rest("POST", "/v1/tasks", {"task": task}))["task"]["task_id"]
        fired: list[dict[str, Any]] = []
        for _ in range(300):  # planned from the task's event, fired about a second later
            fired = (await rest("GET", f"/v1/reminders?task_id={task_id}&states=REMINDER_STATE_FIRED"))["reminders"]
            if fired:
                break
            await asyncio.sleep(0.1)
        assert len(fired) == 1 and fired[0]["task_title"] == "Dentist"
        reminder_id = fired[0]["reminder_id"]
        assert "/" in reminder_id  # "<task>/<rule>/<n>": in a path it is one segment, percent-encoded
        path = f"/v1/reminders/{quote(reminder_id, safe='')}:snooze"
        snoozed = (await rest("POST", path, {"snooze_for": "600s"}))["reminder"]
        assert snoozed["state"] == "REMINDER_STATE_SCHEDULED"
        assert snoozed["snoozed_from_reminder_id"] == reminder_id
        scheduled = await rest("GET", f"/v1/reminders?task_id={task_id}&states=REMINDER_STATE_SCHEDULED")
        assert [r["reminder_id"] for r in scheduled["reminders"]] == [snoozed["reminder_id"]]


async def test_recurrence_preview_and_validate_through_rest(gateway_host: HostProcess) -> None:
    async with aiohttp.ClientSession() as session:
        rest = Rest(session, gateway_host, "rest-recurrence")
        start = {"local_time": "2026-01-05T07:00:00", "time_zone": "Europe/Berlin"}
        preview = await rest(
            "POST", "/v1/recurrence:preview", {"rrule": "FREQ=DAILY;COUNT=3", "start": start, "count": 5}
        )
        assert len(preview["occurrences"]) == 3 and preview["rule_ended"] is True
        valid = await rest("POST", "/v1/recurrence:validate", {"rrule": "FREQ=WEEKLY;BYDAY=MO"})
        assert valid["valid"] is True and valid["description"]
        invalid = await rest("POST", "/v1/recurrence:validate", {"rrule": "FREQ=SOMETIMES"})
        assert invalid["valid"] is False and invalid["problems"]


async def test_notifications_list_mark_read_and_channel_settings_through_rest(gateway_host: HostProcess) -> None:
    async with aiohttp.ClientSession() as session:
        rest = Rest(session, gateway_host, "rest-notify")
        task = {"title": "Stretch", "due": due_in(timedelta(seconds=61)), "reminders": [{"before_due": "60s"}]}
        await rest("POST", "/v1/tasks", {"task": task})
        listed: dict[str, Any] = {}
        for _ in range(300):
            listed = await rest("GET", "/v1/notifications?unread_only=true")
            if listed["notifications"]:
                break
            await asyncio.sleep(0.1)
        assert listed["unread_count"] == "1"
        marked = await rest("POST", "/v1/notifications:markRead", {"all": True})
        assert marked["marked_count"] == "1"
        assert (await rest("GET", "/v1/notifications?unread_only=true"))["notifications"] == []

        settings = (await rest("GET", "/v1/channel-settings"))["settings"]
        assert settings["in_app_enabled"] is True
        quiet = {"enabled": True, "start": "22:00", "end": "07:00", "time_zone": "Europe/Berlin"}
        changed = await rest("PATCH", "/v1/channel-settings?update_mask=quiet_hours", {"quiet_hours": quiet})
        assert changed["settings"]["quiet_hours"]["start"] == "22:00"
        assert (await rest("GET", "/v1/channel-settings"))["settings"]["quiet_hours"] == changed["settings"][
            "quiet_hours"
        ]
        # No SMTP server on this host: e-mail delivery is refused, not INTERNAL.
        email = {"email": {"enabled": True, "address": "alice@example.test"}}
        refused = await rest("PATCH", "/v1/channel-settings?update_mask=email", email, expect=400)
        assert refused["code"] == 9


async def test_activity_list_and_verify_through_rest(gateway_host: HostProcess) -> None:
    async with aiohttp.ClientSession() as session:
        rest = Rest(session, gateway_host, "rest-audit")
        task_id = (await rest("POST", "/v1/tasks", {"task": {"title": "Audit me"}}))["task"]["task_id"]
        entries: list[dict[str, Any]] = []
        for _ in range(300):
            entries = (await rest("GET", f"/v1/activity?task_id={task_id}"))["entries"]
            if entries:
                break
            await asyncio.sleep(0.1)
        assert entries and all(e["task_id"] == task_id for e in entries)
        verified = await rest("POST", "/v1/activity:verify", {})
        assert verified["intact"] is True and int(verified["entries_checked"]) >= 1


async def test_chat_send_interpret_and_conversation_through_rest(gateway_host: HostProcess) -> None:
    async with aiohttp.ClientSession() as session:
        rest = Rest(session, gateway_host, "rest-chat")
        text = "add buy oat milk tomorrow at 9am"
        interpreted = await rest("POST", "/v1/chat:interpret", {"text": text, "time_zone": "Europe/Berlin"})
        assert interpreted["intent"]["kind"] == "INTENT_KIND_CREATE_TASK"
        sent = await rest("POST", "/v1/chat:send", {"text": text, "time_zone": "Europe/Berlin"})
        assert sent["reply"] and sent["actions"][0]["task"]["title"].lower().startswith("buy oat milk")
        conversation = (await rest("GET", f"/v1/conversations/{sent['conversation_id']}"))["conversation"]
        assert [m["role"] for m in conversation["messages"]] == ["CHAT_ROLE_USER", "CHAT_ROLE_ASSISTANT"]
        tasks = (await rest("GET", "/v1/tasks?query=oat"))["tasks"]
        assert [t["task_id"] for t in tasks] == [sent["actions"][0]["task"]["task_id"]]


async def test_bad_input_is_400_with_field_violations(gateway_host: HostProcess) -> None:
    async with aiohttp.ClientSession() as session:
        url = f"{gateway_host.web_url}/v1/tasks"
        headers = gateway_host.auth_header("rest-errors")
        reply = await call(session, "POST", url, headers=headers, body={"task": {"title": ""}})
        assert reply.status == 400 and reply.body["code"] == 3
        assert "task.title" in violations(reply)
        malformed = await call(session, "POST", url, headers=headers, data=b'{"task": ')
        assert malformed.status == 400 and malformed.body["code"] == 3
        wrong_type = await call(session, "GET", f"{url}?page_size=many", headers=headers)
        assert wrong_type.status == 400


async def test_missing_bad_or_expired_token_is_401(gateway_host: HostProcess) -> None:
    key = signing_key_for(Settings.from_env({"TODO_DATA_DIR": str(gateway_host.data_dir)}))
    expired = issue_token(key, "rest-401", ttl=timedelta(hours=1), now=datetime.now(UTC) - timedelta(hours=2))
    forged = issue_token("x" * 40, "rest-401")
    url = f"{gateway_host.web_url}/v1/tasks"
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {"Authorization": "Bearer not-a-jwt"}, {"Authorization": f"Bearer {expired}"},
                        {"Authorization": f"Bearer {forged}"}, {"Authorization": "Basic YWxpY2U6cHc="}):  # fmt: skip
            reply = await call(session, "GET", url, headers=headers)
            assert reply.status == 401, (headers, reply.text)
            assert reply.body["code"] == 16 and reply.body["message"]


async def test_another_users_task_is_404(gateway_host: HostProcess) -> None:
    async with aiohttp.ClientSession() as session:
        alice, bob = Rest(session, gateway_host, "rest-alice"), Rest(session, gateway_host, "rest-bob")
        task_id = (await alice("POST", "/v1/tasks", {"task": {"title": "Alice's secret"}}))["task"]["task_id"]
        for method, path in (("GET", f"/v1/tasks/{task_id}"), ("POST", f"/v1/tasks/{task_id}:complete"),
                             ("DELETE", f"/v1/tasks/{task_id}")):  # fmt: skip
            reply = await bob(method, path, {} if method == "POST" else None, expect=404)
            assert reply["code"] == 5
        assert (await alice("GET", f"/v1/tasks/{task_id}"))["task"]["status"] == "TASK_STATUS_OPEN"


async def test_body_over_the_limit_is_413_and_changes_nothing(gateway_host: HostProcess) -> None:
    async with aiohttp.ClientSession() as session:
        rest = Rest(session, gateway_host, "rest-413")
        huge = {"task": {"title": "big", "description": "x" * (1024 * 1024)}}
        body = await rest("POST", "/v1/tasks", huge, expect=413)
        assert body["code"] == 8
        assert (await rest("GET", "/v1/tasks"))["tasks"] == []


async def test_unknown_path_is_404_in_the_error_shape(gateway_host: HostProcess) -> None:
    async with aiohttp.ClientSession() as session:
        reply = await call(session, "GET", f"{gateway_host.web_url}/v1/nothing-here")
    assert reply.status == 404 and reply.body["code"] == 5
