"""Fixtures of the cross-service flow tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from flow_client import Flow, running_flow

from todo_kit.config import Settings


@pytest.fixture
async def flow(kit_settings: Settings) -> AsyncIterator[Flow]:
    async with running_flow(kit_settings) as running:
        yield running
