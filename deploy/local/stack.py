"""The distributed mode on one machine: Kafka, PostgreSQL, every service in its own process, the gateway.

    .venv/bin/python deploy/local/stack.py up                # foreground; Ctrl-C stops everything it started
    .venv/bin/python deploy/local/stack.py up --background   # returns once everything serves; pid in stack.pid
    .venv/bin/python deploy/local/stack.py down              # stops a stack started in the background

(`make up-distributed`, `make up-distributed-bg`, `make down`.) Data lives in TODO_DISTRIBUTED_DIR
(./.data-distributed) and is reused on the next start: kafka/ (the broker's log segments), postgres/ (the server's
files and the generated passwords, mode 0600), logs/<process>.log, stack.pid and children.json (what runs, by pid).

What starts, in order, each stopped in the reverse order:
1. Kafka in KRaft mode (deploy/local/start-kafka.sh) on 127.0.0.1:59092, controller 59093;
2. one PostgreSQL server (todo_kit.pg_server) on 127.0.0.1:55432 with a login role and a database per service;
3. the topics of the registry and their dead-letter topics (python -m todo_kit.kafka_topics create);
4. every installed service with `python -m todo_kit.kafka_host <app_id>`, on ports from 50061 in app-id order, two
   replicas of reminder_svc and notify_svc (same consumer group, same database);
5. the gateway (build/todo-gateway): REST and the web page on 127.0.0.1:8080 and the gRPC front on 127.0.0.1:50051,
   each service's calls going to its first replica (a cluster puts a Kubernetes Service in front of the replicas).

Tokens: the services check tokens signed with the key `make token` signs with (TODO_JWT_SECRET_FILE if set, else
the key file in TODO_DATA_DIR, ./.data, made at the first start), so `TOKEN=$(make -s token USER=alice)` works as
with `make up`.

A port in use is reported before anything starts. Every process is started in a session of its own, so Ctrl-C
reaches only this program, which then stops the gateway, the services (SIGTERM, SIGKILL after 30 s), Kafka and
PostgreSQL, by pid, and nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from todo_kit.auth import KEY_FILE_NAME, signing_key_for
from todo_kit.config import ConfigError, Settings
from todo_kit.embedded_host import installed_units
from todo_kit.pg_server import PostgresServer, ServiceRole
from todo_kit.runtime.port import ServiceUnit

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "deploy" / "local"
DEFAULT_DIR = ".data-distributed"
REPLICAS = {"reminder_svc": 2, "notify_svc": 2}
START_TIMEOUT = 180.0
STOP_TIMEOUT = 30.0
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
STACK_SETTINGS = frozenset(
    {"TODO_RUNTIME", "TODO_KAFKA_BOOTSTRAP", "TODO_KAFKA_CREATE_TOPICS", "TODO_DATABASE_URL", "TODO_DATABASE_ADMIN_URL",
     "TODO_GRPC_HOST", "TODO_GRPC_PORT", "TODO_SERVICE_ADDRESSES"}
)  # fmt: skip


class StackError(RuntimeError):
    """The stack cannot start (a port in use, a process that did not come up); the message says which."""


@dataclass(frozen=True)
class Ports:
    """Where everything listens (all on 127.0.0.1)."""

    kafka: int = 59092
    kafka_controller: int = 59093
    postgres: int = 55432
    services_from: int = 50061
    rest: int = 8080
    grpc: int = 50051


@dataclass
class Child:
    """A process the stack started: a service replica, Kafka or the gateway."""

    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    address: str = ""
    app_id: str = ""
    marks: list[str] = field(default_factory=list)
    """Words of its command line that tell it from an unrelated process that got its pid later."""
    process: subprocess.Popen[bytes] | None = None
    failures: int = 0
    started_at: float = 0.0

    @property
    def pid(self) -> int | None:
        """The pid while it runs."""
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    def start(self) -> None:
        """Starts it with its output appended to its log, in a session of its own (Ctrl-C does not reach it)."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
            )
        self.started_at = time.monotonic()

    def signal(self, sig: int) -> None:
        """Sends sig by pid (SIGKILL for the fault tests); nothing when it is not running."""
        if self.pid is not None:
            assert self.process is not None
            self.process.send_signal(sig)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL if it has not exited after timeout."""
        self.signal(signal.SIGTERM)
        self.wait(timeout)

    def wait(self, timeout: float) -> None:
        """Waits for it to exit, killing it after timeout."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)

    def tail(self, size: int = 3000) -> str:
        """The end of its log."""
        try:
            return self.log.read_bytes()[-size:].decode(errors="replace")
        except OSError:
            return ""


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something listens on host:port."""
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def key_file_for_tokens(env: Mapping[str, str]) -> Path | None:
    """The signing key file `make token` reads (made if missing); None when the key is given inline."""
    settings = Settings.from_env(env)
    if settings.jwt_secret:
        return None
    signing_key_for(settings)  # makes the data folder's key at the first start, as `make up` does
    if settings.jwt_secret_file:
        return Path(settings.jwt_secret_file).resolve()
    return settings.data_dir / KEY_FILE_NAME


@dataclass
class Stack:
    """Everything of the distributed mode on this machine (see the module docstring)."""

    folder: Path
    ports: Ports = field(default_factory=Ports)
    replicas: Mapping[str, int] = field(default_factory=lambda: dict(REPLICAS))
    gateway_bin: Path | None = ROOT / "build" / "todo-gateway"
    web_dir: Path | None = ROOT / "frontend" / "dist"
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    units: Sequence[ServiceUnit] = field(default_factory=installed_units)
    kafka: Child | None = None
    postgres: PostgresServer | None = None
    roles: dict[str, ServiceRole] = field(default_factory=dict)
    services: list[Child] = field(default_factory=list)
    gateway: Child | None = None
    key_file: Path | None = None

    def __post_init__(self) -> None:
        self.folder = self.folder.resolve()
        self.logs = self.folder / "logs"
        self.postgres = PostgresServer(self.folder / "postgres", port=self.ports.postgres)
        # What the stack sets per process is not inherited; other TODO_* settings (retries, timeouts) are.
        base = {k: v for k, v in self.env.items() if k not in STACK_SETTINGS and not k.startswith("TODO_GATEWAY_")}
        self.base_env = {**base, "PYTHONUNBUFFERED": "1"}

    # --- addresses -------------------------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """The Kafka broker's address."""
        return f"127.0.0.1:{self.ports.kafka}"

    @property
    def grpc_address(self) -> str:
        """The gateway's gRPC front: every service on one address, as in the embedded default."""
        return f"127.0.0.1:{self.ports.grpc}"

    @property
    def web_url(self) -> str:
        """The gateway's REST and web address."""
        return f"http://127.0.0.1:{self.ports.rest}"

    def replicas_of(self, app_id: str) -> list[Child]:
        """The running (or stopped) replicas of a service."""
        return [child for child in self.services if child.app_id == app_id]

    def children(self) -> list[Child]:
        """Every process of the stack, in start order."""
        return [c for c in (self.kafka, *self.services, self.gateway) if c is not None]

    # --- starting --------------------------------------------------------------------------------------------

    def check_ports(self) -> None:
        """Raises StackError naming every port something already listens on (before anything starts)."""
        wanted = {
            self.ports.kafka: "Kafka",
            self.ports.kafka_controller: "Kafka's controller",
            self.ports.postgres: "PostgreSQL",
        }
        if self.gateway_bin is not None:
            wanted[self.ports.rest] = "the gateway (REST and the web page)"
            wanted[self.ports.grpc] = "the gateway's gRPC front"
        for number, (app_id, _) in enumerate(self._service_slots()):
            wanted[self.ports.services_from + number] = app_id
        assert self.postgres is not None
        own_postgres = self.postgres.pid() is not None  # left running by a stack that was killed: reused
        busy = [
            f"127.0.0.1:{port} ({what})"
            for port, what in sorted(wanted.items())
            if not (own_postgres and port == self.ports.postgres) and port_in_use(port)
        ]
        if busy:
            raise StackError(
                "already in use: " + ", ".join(busy) + ". Is a stack (make down) or `make up` still running?"
            )

    def _service_slots(self) -> list[tuple[str, int]]:
        return [(unit.app_id, n) for unit in self.units for n in range(1, self.replicas.get(unit.app_id, 1) + 1)]

    def start(self) -> None:
        """Starts everything and waits until it serves; stops what it started if anything fails."""
        self.check_ports()
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._start_kafka()
            self._start_postgres()
            self._create_topics()
            self._start_services()
            self._start_gateway()
        except BaseException:
            self.stop()
            raise

    def _start_kafka(self) -> None:
        env = {**self.base_env, "KAFKA_HEAP_OPTS": self.env.get("KAFKA_HEAP_OPTS", "-Xms256m -Xmx768m")}
        command = [str(LOCAL / "start-kafka.sh"), str(self.folder / "kafka"), str(self.ports.kafka),
                   str(self.ports.kafka_controller)]  # fmt: skip
        self.kafka = Child("kafka", command, env, self.logs / "kafka.log", address=self.bootstrap,
                           marks=["kafka.Kafka", str(self.folder / "kafka")])  # fmt: skip
        self.start_kafka()

    def start_kafka(self) -> None:
        """(Re)starts the broker on its data and waits until it accepts clients."""
        assert self.kafka is not None
        since = self.kafka.log.stat().st_size if self.kafka.log.exists() else 0
        self.kafka.start()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.kafka.pid is None:
                raise StackError(f"Kafka exited at start (log {self.kafka.log}):\n{self.kafka.tail()}")
            with self.kafka.log.open("rb") as log:
                log.seek(since)
                started = b"Kafka Server started" in log.read()
            if started and port_in_use(self.ports.kafka):
                return
            time.sleep(0.2)
        raise StackError(f"Kafka did not start within {START_TIMEOUT:.0f} s (log {self.kafka.log})")

    def stop_kafka(self) -> None:
        """Stops the broker (a clean shutdown), keeping its data."""
        if self.kafka is not None:
            self.kafka.stop()

    def _start_postgres(self) -> None:
        assert self.postgres is not None
        self.postgres.start()
        self.roles = asyncio.run(self.postgres.provision(self.units))

    def _create_topics(self) -> None:
        command = [sys.executable, "-m", "todo_kit.kafka_topics", "--bootstrap", self.bootstrap, "create"]
        with (self.logs / "topics.log").open("ab") as out:
            done = subprocess.run(command, env=self.base_env, stdout=out, stderr=subprocess.STDOUT, timeout=120,
                                  cwd=ROOT, check=False)  # fmt: skip
        if done.returncode != 0:
            raise StackError(f"creating the topics failed (log {self.logs / 'topics.log'})")

    def _start_services(self) -> None:
        slots = self._service_slots()
        addresses: dict[str, str] = {}
        for number, (app_id, _) in enumerate(slots):
            addresses.setdefault(app_id, f"127.0.0.1:{self.ports.services_from + number}")
        self.key_file = key_file_for_tokens(self.env)
        for number, (app_id, replica) in enumerate(slots):
            port = self.ports.services_from + number
            role = self.roles[app_id]
            env = {
                **self.base_env,
                "TODO_RUNTIME": "kafka",
                "TODO_KAFKA_BOOTSTRAP": self.bootstrap,
                "TODO_KAFKA_CREATE_TOPICS": "false",  # made above, once
                "TODO_DATABASE_URL": role.database_url(),
                "TODO_GRPC_HOST": "127.0.0.1",
                "TODO_GRPC_PORT": str(port),
                "TODO_SERVICE_ADDRESSES": ",".join(f"{a}={address}" for a, address in addresses.items()),
            }
            if self.key_file is not None:
                env["TODO_JWT_SECRET_FILE"] = str(self.key_file)
            name = app_id if self.replicas.get(app_id, 1) == 1 else f"{app_id}#{replica}"
            command = [sys.executable, "-m", "todo_kit.kafka_host", app_id]
            log = self.logs / f"{name.replace('#', '-')}.log"
            marks = ["todo_kit.kafka_host", app_id]
            self.services.append(Child(name, command, env, log, f"127.0.0.1:{port}", app_id, marks))
        for child in self.services:
            child.start()
        for child in self.services:
            self.wait_serving(child)

    def wait_serving(self, child: Child, timeout: float = START_TIMEOUT) -> None:
        """Waits until a service's health says SERVING; StackError with its log's tail if it exits or times out."""
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(child.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if child.pid is None:
                    raise StackError(f"{child.name} exited at start (log {child.log}):\n{child.tail()}")
                with contextlib.suppress(grpc.RpcError):
                    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                time.sleep(0.2)
        raise StackError(f"{child.name} did not become SERVING within {timeout:.0f} s (log {child.log})")

    def restart(self, child: Child) -> None:
        """Starts a stopped (or killed) process again and waits until it serves."""
        child.wait(STOP_TIMEOUT)
        child.start()
        if child is self.kafka:
            return
        if child is self.gateway:
            self._wait_gateway()
        else:
            self.wait_serving(child)

    def _start_gateway(self) -> None:
        if self.gateway_bin is None:
            return
        if not self.gateway_bin.is_file():
            raise StackError(f"no gateway at {self.gateway_bin}: run `make gateway`")
        env = {
            **self.base_env,
            "TODO_GATEWAY_LISTEN": f"127.0.0.1:{self.ports.rest}",
            "TODO_GATEWAY_GRPC_LISTEN": self.grpc_address,
            "TODO_GATEWAY_LOG_LEVEL": "info",
            **{k: v for k, v in self.env.items() if k in ("TODO_GATEWAY_CORS_ORIGINS", "TODO_GATEWAY_TIMEOUT")},
        }
        for app_id in {unit.app_id for unit in self.units}:
            env[f"TODO_GATEWAY_BACKEND_{app_id.upper()}"] = self.replicas_of(app_id)[0].address
        if self.web_dir is not None and self.web_dir.is_dir():
            env["TODO_GATEWAY_STATIC_DIR"] = str(self.web_dir)
        if self.key_file is not None:
            env["TODO_GATEWAY_DEV_KEY_FILE"] = str(self.key_file)  # the local dev sign-in, as with `make up`
        address = f"{self.web_url} (gRPC {self.grpc_address})"
        marks = [str(self.gateway_bin)]
        self.gateway = Child("gateway", [str(self.gateway_bin)], env, self.logs / "gateway.log", address, marks=marks)
        self.gateway.start()
        self._wait_gateway()

    def _wait_gateway(self, timeout: float = START_TIMEOUT) -> None:
        assert self.gateway is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.gateway.pid is None:
                raise StackError(f"the gateway exited at start (log {self.gateway.log}):\n{self.gateway.tail()}")
            try:
                with urllib.request.urlopen(f"{self.web_url}/readyz", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise StackError(f"the gateway was not ready within {timeout:.0f} s (log {self.gateway.log})")

    # --- stopping --------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stops the gateway, then the services (all at once), then Kafka, then PostgreSQL."""
        if self.gateway is not None:
            self.gateway.stop()
        for child in self.services:
            child.signal(signal.SIGTERM)
        for child in self.services:
            child.wait(STOP_TIMEOUT)
        if self.kafka is not None:
            self.kafka.stop()
        if self.postgres is not None:
            self.postgres.stop()

    # --- what runs where -------------------------------------------------------------------------------------

    def table(self) -> str:
        """One line per process: name, pid, address, log."""
        assert self.postgres is not None
        rows = [("process", "pid", "address", "log")]
        for child in self.children():
            rows.append((child.name, str(child.pid or "-"), child.address, self._shown(child.log)))
        rows.insert(2, ("postgresql", str(self.postgres.pid() or "-"), f"127.0.0.1:{self.ports.postgres}",
                        self._shown(self.postgres.log)))  # fmt: skip
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows)

    def _shown(self, path: Path) -> str:
        with contextlib.suppress(ValueError):
            return str(path.relative_to(Path.cwd()))
        return str(path)

    def write_children(self) -> None:
        """children.json: every process by pid, for `down` when the stack itself was killed."""
        records = [{"name": c.name, "pid": c.pid, "marks": c.marks} for c in self.children() if c.pid]
        (self.folder / "children.json").write_text(json.dumps(records, indent=1) + "\n")


BANNER = """
Todo Chatbot is running (distributed mode: every service its own process, events on Kafka):

{table}

Every service answers on the gateway's gRPC front, as with `make up`:
  TOKEN=$(make -s token USER=alice)
  grpcurl -plaintext -H "authorization: Bearer $TOKEN" \\
    -d '{{"task": {{"title": "Pay rent", "priority": "PRIORITY_HIGH", "tags": ["finance"]}}}}' \\
    {grpc} todo.task.v1.TaskService/CreateTask
  grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{{"query": "rent"}}' \\
    {grpc} todo.task.v1.TaskService/ListTasks
  grpcurl -plaintext {grpc} list
web page: {web}  (REST: {web}/v1/..., API reference: {web}/docs/, OpenAPI: {web}/openapi.json)
Data: {folder} (kept across restarts). {stop}
"""


def banner(stack: Stack, stop: str) -> str:
    """What runs where and how to use it."""
    return BANNER.format(table=stack.table(), grpc=stack.grpc_address, web=stack.web_url, folder=stack.folder,
                         stop=stop)  # fmt: skip


def supervise(stack: Stack, stop_requested: list[bool]) -> None:
    """Until a stop is requested: a service or the gateway that exits is started again after a growing pause."""
    while not stop_requested[0]:
        time.sleep(0.5)
        for child in [*stack.services, *([stack.gateway] if stack.gateway else [])]:
            if stop_requested[0] or child.process is None or child.process.poll() is None:
                continue
            code = child.process.returncode
            child.failures = 0 if time.monotonic() - child.started_at > 60 else child.failures + 1
            delay = RESTART_DELAYS[min(max(child.failures - 1, 0), len(RESTART_DELAYS) - 1)]
            print(f"stack: {child.name} exited with {code}; starting it again in {delay:.0f} s (log {child.log})",
                  file=sys.stderr, flush=True)  # fmt: skip
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not stop_requested[0]:
                time.sleep(0.1)
            if not stop_requested[0]:
                child.start()
                stack.write_children()


def up(folder: Path, *, ready_file: Path | None = None) -> int:
    """Starts the stack, prints what runs where, runs until SIGINT or SIGTERM, then stops everything."""
    stop_requested = [False]

    def request_stop(signum: int, _frame: object) -> None:
        stop_requested[0] = True

    stack = Stack(folder)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)
    pid_file = folder / "stack.pid"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        running = read_pid(pid_file)
        if running is not None and running != os.getpid():
            raise StackError(f"a stack already runs from {folder} (pid {running}); `make down` stops it")
        stack.start()
    except (StackError, ConfigError) as exc:
        print(f"stack: error: {exc}", file=sys.stderr)
        return 1
    pid_file.write_text(f"{os.getpid()}\n")
    stack.write_children()
    stop_hint = "Stop with `make down`." if ready_file else "Stop with Ctrl-C."
    print(banner(stack, stop_hint), file=sys.stderr, flush=True)
    if ready_file is not None:
        ready_file.write_text(banner(stack, stop_hint))
    try:
        supervise(stack, stop_requested)
    finally:
        print("stack: stopping the gateway, the services, Kafka and PostgreSQL", file=sys.stderr, flush=True)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the orderly stop short
        stack.stop()
        pid_file.unlink(missing_ok=True)
        (folder / "children.json").unlink(missing_ok=True)
    return 0


def read_pid(pid_file: Path) -> int | None:
    """The pid in pid_file if that process still runs."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def up_background(folder: Path) -> int:
    """Starts `up` as a detached process (output in logs/stack.log) and returns once everything serves."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "logs").mkdir(exist_ok=True)
    ready = folder / "stack.ready"
    ready.unlink(missing_ok=True)
    log: IO[bytes]
    with (folder / "logs" / "stack.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "up", "--ready-file", str(ready)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "TODO_DISTRIBUTED_DIR": str(folder)},
        )  # fmt: skip
    while process.poll() is None:
        if ready.exists():
            print(ready.read_text(), file=sys.stderr)
            ready.unlink()
            return 0
        time.sleep(0.2)
    print(f"stack: error: the stack did not start; see {folder / 'logs' / 'stack.log'}:", file=sys.stderr)
    print((folder / "logs" / "stack.log").read_bytes()[-3000:].decode(errors="replace"), file=sys.stderr)
    return 1


def down(folder: Path) -> int:
    """Stops a stack started in the background (by the pid in stack.pid), or what a killed one left behind."""
    pid = read_pid(folder / "stack.pid")
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 3 * STOP_TIMEOUT
        while read_pid(folder / "stack.pid") is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        if read_pid(folder / "stack.pid") is None:
            print(f"stack: stopped (pid {pid})", file=sys.stderr)
            return 0
        print(f"stack: pid {pid} did not stop within {3 * STOP_TIMEOUT:.0f} s", file=sys.stderr)
        return 1
    # The stack process is gone (killed): stop the processes it listed, if they are still the ones it started.
    leftovers = 0
    children = folder / "children.json"
    if children.exists():
        for record in json.loads(children.read_text()):
            pid = int(record["pid"])
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if all(mark in cmdline for mark in record["marks"]):
                os.kill(pid, signal.SIGTERM)
                leftovers += 1
        children.unlink()
    postgres = PostgresServer(folder / "postgres", port=Ports().postgres)
    if postgres.pid() is not None:
        postgres.stop()
        leftovers += 1
    stopped = f"; stopped {leftovers} leftover process(es)" if leftovers else ""
    print(f"stack: no stack running from {folder}{stopped}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `make up-distributed`, `make up-distributed-bg` and `make down`."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("command", choices=("up", "down"))
    parser.add_argument("--background", action="store_true", help="up: start detached and return once serving")
    parser.add_argument("--ready-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    folder = Path(os.environ.get("TODO_DISTRIBUTED_DIR") or DEFAULT_DIR).resolve()
    if args.command == "down":
        return down(folder)
    if args.background:
        return up_background(folder)
    return up(folder, ready_file=args.ready_file)


if __name__ == "__main__":
    sys.exit(main())
