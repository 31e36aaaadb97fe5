"""The page as people use it: questions answered by clicking, the keyboard alone, a phone's width, no request to
any other origin, a refused token, and the README's picture."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from playwright.async_api import Browser, Page, expect
from web_pages import ROOT, Steps, WebHost, new_page, send, session_token, sign_in

from todo_kit.auth import issue_token, signing_key_for
from todo_kit.config import Settings


async def test_a_clarifying_question_is_answered_by_clicking_a_choice(
    browser: Browser, web_host: WebHost, steps: Steps
) -> None:
    page = await new_page(browser, steps, web_host)
    await sign_in(page, "dave")
    await send(page, "pay rent on friday")
    await send(page, "pay rent deposit on saturday")
    await expect(page.locator("li.task")).to_have_count(2)

    await send(page, "complete rent")
    question = page.locator(".message.assistant").last
    choices = question.get_by_role("group", name="Answer the question").get_by_role("button")
    await expect(choices).to_have_count(2)
    await steps.shot(page, "the assistant asks which one")
    second = choices.nth(1)
    label = (await second.inner_text()).strip()
    assert label.startswith("2. ")
    chosen = "pay rent deposit" if "deposit" in label.lower() else "pay rent"
    other = "pay rent" if chosen == "pay rent deposit" else "pay rent deposit"

    await second.click()
    answer = page.locator(".message.assistant").nth(3)
    await expect(answer.locator(".actions")).to_contain_text("Completed")
    await expect(page.locator("li.task")).to_have_count(1)
    remaining = (await page.locator("li.task .title").inner_text()).strip().lower()
    assert remaining == other, f"clicking {label!r} completed {chosen!r} and left {other!r}, not {remaining!r}"
    await expect(question.get_by_role("button")).to_have_count(0)  # answered: its buttons are gone
    await expect(page.locator(".message.user .text").last).to_have_text("2")
    await steps.shot(page, "the chosen task completed")


async def test_sign_in_and_sending_work_with_the_keyboard_alone(
    browser: Browser, web_host: WebHost, steps: Steps
) -> None:
    page = await new_page(browser, steps, web_host)
    name = page.get_by_label("Sign in as a name")
    await expect(name).to_be_focused()
    await page.keyboard.type("erin")
    await page.keyboard.press("Enter")
    box = page.get_by_label("Message to the assistant")
    await expect(box).to_be_focused()
    await page.keyboard.type("buy stamps tomorrow at 10am")
    await steps.shot(page, "typed with the keyboard")
    await page.keyboard.press("Enter")
    await expect(page.locator("li.task", has_text="buy stamps")).to_have_count(1)
    await expect(box).to_be_focused()  # ready for the next message

    # Tab reaches the task's complete button in order after the chat, and Space presses it.
    for _ in range(40):
        await page.keyboard.press("Tab")
        if await page.evaluate("() => document.activeElement?.classList.contains('complete')"):
            break
    else:
        raise AssertionError("Tab never reached the task's complete button")
    assert await page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle") != "none"
    await steps.shot(page, "focus on the complete button")
    await page.keyboard.press("Space")
    await expect(page.locator("li.task", has_text="buy stamps")).to_have_count(0)


async def _no_horizontal_scroll(page: Page) -> None:
    overflow = await page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow} px"


async def test_at_phone_width_the_page_is_one_column_without_horizontal_scroll(
    browser: Browser, web_host: WebHost, steps: Steps
) -> None:
    page = await new_page(browser, steps, web_host, viewport={"width": 390, "height": 844}, is_mobile=True)
    await _no_horizontal_scroll(page)
    await sign_in(page, "frank")
    await send(page, "remind me to submit the quarterly expense report to accounting on friday at 4pm, high priority")
    await send(page, "help")
    await expect(page.locator("li.task")).to_have_count(1)
    await _no_horizontal_scroll(page)
    chat = await page.get_by_role("region", name="Chat").bounding_box()
    tasks = await page.get_by_role("region", name="Open tasks").bounding_box()
    assert chat and tasks
    assert abs(chat["x"] - tasks["x"]) < 2 and tasks["y"] > chat["y"] + chat["height"] - 1, "one column"
    assert chat["width"] <= 390
    await steps.shot(page, "phone width")


async def test_the_page_and_the_api_reference_make_no_request_outside_the_gateways_origin(
    browser: Browser, web_host: WebHost, steps: Steps
) -> None:
    page = await new_page(browser, steps, web_host)
    await sign_in(page, "grace")
    await send(page, "call the bank tomorrow at 9 #money")
    await page.locator(".suggestion").first.click()
    await page.get_by_label("Search tasks").fill("bank")
    await expect(page.locator(".tasks .summary")).to_have_text("1 open matching")
    await page.goto("/docs/")
    await expect(page.locator(".swagger-ui .info .title")).to_be_visible(timeout=30_000)
    await expect(page.get_by_text("/v1/chat:send").first).to_be_visible()
    await steps.shot(page, "API reference")

    origin = urlsplit(web_host.base_url)
    assert steps.requests, "requests are recorded"
    outside = [
        url
        for url in steps.requests
        if not url.startswith("data:") and urlsplit(url)[:2] != (origin.scheme, origin.netloc)
    ]
    assert outside == [], outside
    paths = {urlsplit(url).path for url in steps.requests}
    assert {"/", "/app.js", "/app.css", "/ui-config.json", "/v1/dev/token", "/v1/chat:send", "/openapi.json"} <= paths


async def test_a_refused_token_returns_to_sign_in_with_a_message(
    browser: Browser, web_host: WebHost, steps: Steps
) -> None:
    page = await new_page(browser, steps, web_host)
    await sign_in(page, "heidi")
    assert await session_token(page)
    # A token the page believes is valid (its own record says nothing of expiry) but that expired yesterday.
    settings = Settings.from_env({"TODO_DATA_DIR": web_host.host.env["TODO_DATA_DIR"]})
    key = signing_key_for(settings, create=False)
    expired = issue_token(key, "heidi", ttl=timedelta(hours=1), now=datetime.now(UTC) - timedelta(days=1))
    await page.evaluate(
        "(token) => sessionStorage.setItem('todo.session', JSON.stringify({token, userId: 'heidi', expiresAt: ''}))",
        expired,
    )
    await page.reload()
    await expect(page.get_by_role("alert")).to_contain_text("expired or was refused")
    await expect(page.get_by_label("Sign in as a name")).to_be_visible()
    assert await page.evaluate("() => sessionStorage.getItem('todo.session')") is None
    await steps.shot(page, "back at sign-in")


async def test_chat_screenshot_shows_a_conversation_with_its_tasks(
    browser: Browser, web_host: WebHost, steps: Steps
) -> None:
    """Makes the README's picture; `make screenshot` copies it to docs/images/web-chat.png."""
    page = await new_page(browser, steps, web_host, viewport={"width": 1100, "height": 720})
    await sign_in(page, "robin")
    for text in (
        "remind me to feed the cat every day at 7am",
        "pay rent on the 1st of every month at 9am, high priority, tag finance",
        "call mom tomorrow evening",
    ):
        await send(page, text)
    await expect(page.locator("li.task")).to_have_count(3)
    await page.get_by_label("Message to the assistant").fill("what's due this week?")
    picture = await steps.shot(page, "chat")
    target = os.environ.get("TODO_WEB_SCREENSHOT")
    if target:
        path = Path(target) if Path(target).is_absolute() else ROOT / target
        path.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(path))
        shutil.copyfile(path, picture.with_name("web-chat.png"))
    assert picture.stat().st_size > 10_000
