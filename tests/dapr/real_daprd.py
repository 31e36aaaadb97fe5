"""Real Dapr sidecars for the flow tests: finding daprd and the scheduler, starting them on free loopback ports with
the local resources (deploy/local/dapr), and stopping them by pid.

Where the Dapr CLI installed them (`dapr init` or `dapr init --slim`: ~/.dapr/bin), on PATH, or where
deploy/local/build-dapr.sh builds them (the user's cache folder). The flags are daprd's and the scheduler's own
(cmd/daprd/options, cmd/scheduler/options of dapr/dapr 1.18), as Dapr's integration tests pass them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from todo_kit.kafka_broker import free_port

ROOT = Path(__file__).resolve().parents[2]
RESOURCES = ROOT / "deploy" / "local" / "dapr"
COMPONENTS = RESOURCES / "components"
CONFIG = RESOURCES / "config.yaml"
DAPR_VERSION = "1.18.3"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "todo-chatbot"
NO_DAPRD = (
    "daprd is not on PATH; it cannot be built on machines without github.com/dapr/durabletask-go, see docs/dapr.md"
)
BROKERS_ENV = "TODO_LOCAL_KAFKA_BROKERS"
SECRETS_FILE_ENV = "TODO_LOCAL_SECRETS_FILE"
COMPONENT_ENV = (BROKERS_ENV, SECRETS_FILE_ENV)
"""The variables the local components read through envRef (daprd refuses DAPR_* and APP_API_TOKEN there)."""
START_TIMEOUT = 60.0


def _find(*names: str) -> Path | None:
    places = [Path.home() / ".dapr" / "bin", CACHE / "dapr" / DAPR_VERSION]
    for name in names:
        found = shutil.which(name)
        if found:
            return Path(found)
        for place in places:
            if (place / name).is_file() and os.access(place / name, os.X_OK):
                return place / name
    return None


@dataclass(frozen=True)
class DaprBinaries:
    daprd: Path
    scheduler: Path


def find_dapr_binaries() -> tuple[DaprBinaries | None, str]:
    """The binaries, or None and why the real-sidecar flows cannot run."""
    daprd = _find("daprd")
    if daprd is None:
        return None, NO_DAPRD
    scheduler = _find("scheduler", "dapr-scheduler")
    if scheduler is None:
        return None, f"daprd is at {daprd}, but no scheduler (jobs need it): run `dapr init --slim`"
    return DaprBinaries(daprd, scheduler), ""


class ChildProcess:
    """One child process with its output in a log file, stopped by its pid (SIGTERM, then SIGKILL)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def tail(self, size: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-size:]

    def check_running(self) -> None:
        assert self.process.poll() is None, f"{self.name} exited with {self.process.returncode}:\n{self.tail()}"

    def stop(self, timeout: float = 30.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)


def wait_http_ok(child: ChildProcess, url: str, timeout: float = START_TIMEOUT) -> None:
    """Waits until url answers 2xx (a health endpoint), failing with the child's log."""
    deadline = time.monotonic() + timeout
    while True:
        child.check_running()
        try:
            with urllib.request.urlopen(url, timeout=1.0) as reply:
                if 200 <= reply.status < 300:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{child.name} did not answer {url}:\n{child.tail()}"
        time.sleep(0.2)


def start_scheduler(binary: Path, folder: Path) -> tuple[ChildProcess, str]:
    """One scheduler with its embedded etcd in folder; returns it and the address daprd connects to."""
    port, healthz, client, peer = free_port(), free_port(), free_port(), free_port()
    name = "todo-scheduler-0"
    args = [
        str(binary),
        f"--id={name}",
        f"--port={port}",
        "--listen-address=127.0.0.1",
        f"--healthz-port={healthz}",
        "--healthz-listen-address=127.0.0.1",
        "--enable-metrics=false",
        f"--etcd-initial-cluster={name}=http://127.0.0.1:{peer}",
        f"--etcd-data-dir={folder / 'scheduler-etcd'}",
        f"--etcd-client-port={client}",
        "--etcd-client-listen-address=127.0.0.1",
        f"--identity-directory-write={folder / 'scheduler-tls'}",
        "--log-level=info",
    ]
    child = ChildProcess("scheduler", args, dict(os.environ), folder / "scheduler.log")
    wait_http_ok(child, f"http://127.0.0.1:{healthz}/healthz")
    return child, f"127.0.0.1:{port}"


@dataclass
class Sidecar:
    """One daprd beside one app: its ports and tokens, and the environment the app gets (as the injector sets it)."""

    app_id: str
    dapr_app_id: str
    app_port: int
    api_token: str
    app_token: str
    grpc_port: int = 0
    http_port: int = 0
    child: ChildProcess | None = None

    def app_env(self) -> dict[str, str]:
        return {
            "DAPR_GRPC_PORT": str(self.grpc_port),
            "DAPR_HTTP_PORT": str(self.http_port),
            "TODO_DAPR_HOST": "127.0.0.1",
            "DAPR_API_TOKEN": self.api_token,
            "APP_API_TOKEN": self.app_token,
        }

    def start(self, binary: Path, folder: Path, scheduler: str, brokers: str, secrets_file: Path) -> None:
        """Starts daprd; it waits for the app on its own (the app waits for daprd's outbound health)."""
        self.grpc_port, self.http_port = free_port(), free_port()
        args = [
            str(binary),
            f"--app-id={self.dapr_app_id}",
            f"--app-port={self.app_port}",
            "--app-protocol=grpc",
            "--app-channel-address=127.0.0.1",
            f"--dapr-grpc-port={self.grpc_port}",
            f"--dapr-http-port={self.http_port}",
            "--dapr-listen-addresses=127.0.0.1",
            f"--dapr-internal-grpc-port={free_port()}",
            "--dapr-internal-grpc-listen-address=127.0.0.1",
            "--enable-metrics=false",
            f"--resources-path={COMPONENTS}",
            f"--config={CONFIG}",
            f"--scheduler-host-address={scheduler}",
            "--placement-host-address=",
            "--enable-app-health-check=true",
            "--log-level=info",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DAPR_", "APP_API_TOKEN", "TODO_"))}
        # DAPR_HOST_IP: the address daprd registers for the other sidecars (mDNS name resolution); its internal
        # gRPC port listens on loopback only, so it must be loopback, not the machine's outbound address.
        env.update({"DAPR_API_TOKEN": self.api_token, "APP_API_TOKEN": self.app_token, "DAPR_HOST_IP": "127.0.0.1",
                    BROKERS_ENV: brokers, SECRETS_FILE_ENV: str(secrets_file)})  # fmt: skip
        self.child = ChildProcess(f"daprd {self.dapr_app_id}", args, env, folder / f"daprd-{self.dapr_app_id}.log")

    def wait_outbound(self) -> None:
        assert self.child is not None
        wait_http_ok(self.child, f"http://127.0.0.1:{self.http_port}/v1.0/healthz/outbound")


def write_secrets(path: Path, secrets: dict[str, str]) -> None:
    """The local file secret store's file: single-key secrets, each one's key its name (readable by this user only)."""
    path.write_text(json.dumps(secrets))
    path.chmod(0o600)
