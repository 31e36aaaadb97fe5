"""Fixtures of the chat service's tests: a running host with every service and the chat on a fake interpreter."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from chat_fixtures import Chat, running_chat

from todo_kit.config import Settings


@pytest.fixture
async def chat(kit_settings: Settings) -> AsyncIterator[Chat]:
    async with running_chat(kit_settings) as running:
        yield running
