"""Fixtures of the gateway tests: a real embedded host with the real gateway (built by `make gateway`)."""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))

from host_process import HostProcess, free_port

INDEX_HTML = "<!doctype html><title>Todo</title><p>the page</p>\n"


@pytest.fixture(scope="module")
def gateway_host() -> Iterator[HostProcess]:
    """One host with the gateway for a test module, serving a one-file web page."""
    folder = Path(tempfile.mkdtemp(prefix="todo-"))
    web = folder / "web"
    web.mkdir()
    (web / "index.html").write_text(INDEX_HTML)
    host = HostProcess(folder / "data", free_port(), folder / "host.log", gateway=True, web_dir=web)
    host.start()
    try:
        asyncio.run(host.wait_web_ready())
        yield host
    finally:
        host.stop()
        shutil.rmtree(folder, ignore_errors=True)
