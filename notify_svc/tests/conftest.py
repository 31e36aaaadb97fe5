"""Fixtures of the notification service's tests: a running host with the notification unit, and stubs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from notify_fixtures import Notify, running_notify

from todo_kit.config import Settings


@pytest.fixture
async def notify(kit_settings: Settings) -> AsyncIterator[Notify]:
    async with running_notify(kit_settings) as running:
        yield running
