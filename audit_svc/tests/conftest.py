"""Fixtures of the audit service's tests: a running host with the audit unit alone, or with the task services."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from audit_fixtures import AuditClient, running_audit

from recurrence_svc.unit import unit as recurrence_unit
from reminder_svc.unit import unit as reminder_unit
from task_svc.unit import unit as task_unit
from todo_kit.config import Settings


@pytest.fixture
async def audit(kit_settings: Settings) -> AsyncIterator[AuditClient]:
    async with running_audit(kit_settings) as client:
        yield client


@pytest.fixture
async def audit_flow(kit_settings: Settings) -> AsyncIterator[AuditClient]:
    async with running_audit(kit_settings, [task_unit, reminder_unit, recurrence_unit]) as client:
        yield client
