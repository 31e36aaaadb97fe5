"""The issue's story in a real browser: alice chats a reminder, sees the task, gets the toast on time, snoozes it from
the toast, completes the task with one click; bob, in another browser context, sees none of it."""

from __future__ import annotations

from datetime import datetime

from playwright.async_api import Browser, expect
from web_pages import Steps, WebHost, new_page, send, session_token, sign_in

# The reminder toast is measured inside the page (when the toast entered the DOM) against the reminder's fire time
# from the API; the goal is within a second.
TOAST_LATENESS_LIMIT_S = 1.0


def _ms(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000


async def test_alice_gets_her_chatted_reminder_on_time_and_bob_sees_none_of_her_tasks(
    browser: Browser, web_host: WebHost, steps: Steps
) -> None:
    page = await new_page(browser, steps, web_host)
    await steps.shot(page, "sign-in page")
    await sign_in(page, "alice")
    await steps.shot(page, "alice signed in")

    await send(page, "remind me to call mom in 2 minutes")
    reply = page.locator(".message.assistant").last
    await expect(reply.locator(".actions")).to_contain_text("Created")
    task_item = page.locator("li.task", has_text="call mom")
    await expect(task_item).to_have_count(1)
    await steps.shot(page, "task in the task pane")
    task_id = await task_item.get_attribute("data-task-id")
    assert task_id

    token = await session_token(page)
    status, reminders = web_host.rest("GET", f"/v1/reminders?task_id={task_id}", token)
    assert status == 200, reminders
    scheduled = [r for r in reminders["reminders"] if r["state"] == "REMINDER_STATE_SCHEDULED"]
    assert len(scheduled) == 1, reminders
    reminder = scheduled[0]
    fire_ms = _ms(reminder["fire_time"])
    now_ms = await page.evaluate("() => Date.now()")
    assert 60_000 < fire_ms - now_ms <= 121_000, "the reminder is due in about two minutes"

    toast = page.locator(f".toast[data-reminder-id='{reminder['reminder_id']}']")
    await toast.wait_for(timeout=fire_ms - now_ms + 30_000)
    shown_ms = float(await toast.get_attribute("data-shown-at") or 0)
    lateness_s = (shown_ms - fire_ms) / 1000
    print(f"\nreminder toast shown {lateness_s:+.3f} s after the reminder's fire time")
    await steps.shot(page, "reminder toast")
    assert -0.05 <= lateness_s <= TOAST_LATENESS_LIMIT_S, f"toast {lateness_s:.3f} s after the fire time"
    await expect(toast).to_contain_text("call mom", ignore_case=True)
    notification_id = await toast.get_attribute("data-notification-id")
    assert notification_id
    listed = page.locator(f".notification-list li[data-notification-id='{notification_id}']")
    await expect(listed).to_have_class("unread")

    # Snooze from the toast: a new reminder planned ten minutes on, and the notification is read.
    await toast.get_by_role("button", name="Snooze 10 min").click()
    await expect(toast).to_have_count(0)
    await expect(listed).to_have_class("read")
    status, after = web_host.rest("GET", f"/v1/reminders?task_id={task_id}", token)
    snoozes = [r for r in after["reminders"] if r["snoozed_from_reminder_id"] == reminder["reminder_id"]]
    assert len(snoozes) == 1 and snoozes[0]["state"] == "REMINDER_STATE_SCHEDULED", after
    assert 9 * 60_000 < _ms(snoozes[0]["fire_time"]) - fire_ms < 12 * 60_000
    status, unread = web_host.rest("GET", "/v1/notifications?unread_only=true", token)
    assert notification_id not in [n["notification_id"] for n in unread["notifications"]]
    await steps.shot(page, "snoozed from the toast")

    # One click completes it: it leaves the open list, and the task service says it is completed.
    await task_item.get_by_role("button", name="Complete call mom").click()
    await expect(task_item).to_have_count(0)
    status, got = web_host.rest("GET", f"/v1/tasks/{task_id}", token)
    assert status == 200 and got["task"]["status"] == "TASK_STATUS_COMPLETED", got
    await steps.shot(page, "task completed")

    # bob, in a browser context of his own, sees none of alice's tasks, and cannot fetch hers.
    await send(page, "pay the plumber tomorrow")
    bob = await new_page(browser, steps, web_host)
    await sign_in(bob, "bob")
    await expect(bob.locator(".tasks .summary")).to_have_text("0 open")
    await expect(bob.locator("li.task")).to_have_count(0)
    await expect(page.locator("li.task", has_text="pay the plumber")).to_have_count(1)
    bob_token = await session_token(bob)
    status, body = web_host.rest("GET", f"/v1/tasks/{task_id}", bob_token)
    assert status == 404, body
    await steps.shot(bob, "bob sees no tasks of alice")
