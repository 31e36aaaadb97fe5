"""Fixtures of the image tests: the images' install recipe (deploy/images) run outside a container.

The six services' wheels are built once per session by the recipe itself; the third-party wheels it resolves are
kept in the user's cache folder (todo-chatbot/image-wheels) and handed to the next session's recipe, so a repeat run
downloads nothing. Each session builds the project's own wheels afresh in a temp folder.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from image_recipe import CACHE, SERVICES, recipe

from todo_kit.embedded_host import installed_units
from todo_kit.kafka_broker import free_port
from todo_kit.pg_server import PostgresServer, ServiceRole


@pytest.fixture(scope="session")
def image_wheels() -> Iterator[Path]:
    """A folder with every wheel the six service images install, made by the recipe's `wheels` step."""
    folder = Path(tempfile.mkdtemp(prefix="todo-wheels-"))
    CACHE.mkdir(parents=True, exist_ok=True)
    for cached in CACHE.glob("*.whl"):
        shutil.copy2(cached, folder / cached.name)
    done = recipe("wheels", str(folder), *SERVICES)
    if done.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"recipe.sh wheels failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    for wheel in folder.glob("*.whl"):
        if not wheel.name.startswith("todo_") and not (CACHE / wheel.name).exists():
            # Copied under a temporary name and renamed, so a concurrent session never reads half a wheel.
            partial = CACHE / f".{wheel.name}.{os.getpid()}"
            shutil.copy2(wheel, partial)
            partial.replace(CACHE / wheel.name)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def image_postgres() -> Iterator[dict[str, ServiceRole]]:
    """A PostgreSQL server with a login role and database per service, as a cluster's database would have."""
    folder = Path(tempfile.mkdtemp(prefix="todo-"))
    server = PostgresServer(folder, port=free_port())
    server.start()
    try:
        yield asyncio.run(server.provision(installed_units()))
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
