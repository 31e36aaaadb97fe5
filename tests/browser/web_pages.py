"""The page through a real browser: one real embedded host with its real gateway serving frontend/dist, and
Debian's Chromium driven by Playwright. Screenshots of each step go to build/screenshots/<test>/ (test artifacts,
not committed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, Request, async_playwright

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from host_process import HostProcess, free_port  # noqa: E402

CHROMIUM = Path(os.environ.get("TODO_CHROMIUM", "/usr/bin/chromium"))
# Without the background-networking flags Chromium tries to reach its vendor's services at every start; the tests
# record every request, and the page itself must make none outside the gateway's origin.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WEB_DIST = ROOT / "frontend" / "dist"
SCREENSHOTS = ROOT / "build" / "screenshots"


class WebHost:
    """The embedded host as a child process with the gateway serving the page, and REST calls to it."""

    def __init__(self, host: HostProcess, base_url: str) -> None:
        self.host = host
        self.base_url = base_url

    def rest(self, method: str, path: str, token: str | None = None, body: object | None = None) -> tuple[int, Any]:
        """One REST call through the gateway; returns (HTTP status, parsed JSON body)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        if body is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            text = error.read()
            return error.code, json.loads(text) if text.strip().startswith(b"{") else text.decode()

    def token(self, user: str) -> str:
        """A token from the dev sign-in endpoint, as the page gets one."""
        status, body = self.rest("POST", "/v1/dev/token", body={"user_id": user})
        assert status == 200, body
        return str(body["token"])


def _wait_ready(base_url: str, host: HostProcess, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert host.running, host.log.read_text()[-4000:]
        try:
            with urllib.request.urlopen(base_url + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        assert time.monotonic() < deadline, "the gateway did not become ready:\n" + host.log.read_text()[-4000:]
        time.sleep(0.2)


@pytest.fixture(scope="session")
def web_host() -> Iterator[WebHost]:
    """One host for all browser tests (each test signs in users of its own)."""
    if not (WEB_DIST / "index.html").is_file():
        pytest.fail("frontend/dist is not built: run `make web`")
    folder = Path(tempfile.mkdtemp(prefix="todo-"))
    host = HostProcess(folder / "data", free_port(), folder / "host.log", gateway=True, web_dir=WEB_DIST)
    host.start()
    try:
        _wait_ready(host.web_url, host)
        yield WebHost(host, host.web_url)
    finally:
        host.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing; run `make browser`")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Steps:
    """Screenshots of a test's steps, numbered in order, and every request the test's pages made."""

    folder: Path
    requests: list[str] = field(default_factory=list)
    count: int = 0

    async def shot(self, page: Page, step: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{re.sub(r'[^a-z0-9]+', '-', step.lower()).strip('-')}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path

    def record(self, context: BrowserContext) -> None:
        def on_request(request: Request) -> None:
            self.requests.append(request.url)

        context.on("request", on_request)


@pytest.fixture
def steps(request: pytest.FixtureRequest) -> Steps:
    folder = SCREENSHOTS / re.sub(r"[^A-Za-z0-9_]+", "_", request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    return Steps(folder)


async def new_page(browser: Browser, steps: Steps, web_host: WebHost, **options: Any) -> Page:
    """A page in a new browser context (its own sessionStorage: another person, or another device of one)."""
    context = await browser.new_context(base_url=web_host.base_url, **options)
    steps.record(context)
    page = await context.new_page()
    await page.goto("/")
    return page


async def sign_in(page: Page, user: str) -> None:
    """Signs in by name with the mouse-free path a person takes: type the name, press Enter."""
    field_ = page.get_by_label("Sign in as a name")
    await field_.fill(user)
    await field_.press("Enter")
    await page.get_by_role("heading", name="Open tasks").wait_for()


async def send(page: Page, text: str) -> None:
    """Types a chat message and sends it with Enter; waits for the assistant's answer to it."""
    replies = page.locator(".message.assistant:not(.pending)")
    before = await replies.count()
    box = page.get_by_label("Message to the assistant")
    await box.fill(text)
    await box.press("Enter")
    await replies.nth(before).wait_for()


async def session_token(page: Page) -> str:
    """The bearer token the page keeps in sessionStorage."""
    stored = await page.evaluate("() => sessionStorage.getItem('todo.session')")
    assert stored, "the page keeps its session in sessionStorage"
    return str(json.loads(stored)["token"])
