"""Cross-process fixtures of the distributed mode: the whole stack (deploy/local/stack.py) on free ports.

One stack serves the session (starting it takes about half a minute): Kafka, PostgreSQL with a role per service,
every service as its own `todo_kit.kafka_host` process (two replicas of reminder_svc and notify_svc) and the gateway
with its gRPC front. Fault tests kill and restart its processes; each leaves it serving.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "deploy" / "local"))

from host_process import gateway_bin, stable_ports  # noqa: E402
from stack import Ports, Stack  # noqa: E402


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    binary = gateway_bin()
    if not binary.is_file():
        pytest.fail(f"no gateway binary at {binary}: run `make gateway` (or set TODO_GATEWAY_BIN)")
    folder = Path(tempfile.mkdtemp(prefix="todo-"))
    key_file = folder / "signing-key"
    key_file.write_text(secrets.token_urlsafe(48))
    # Outside the range outgoing connections take: a killed and restarted process must get its port back.
    kafka, controller, postgres, rest, grpc_front, services_from = stable_ports(5 + 8)[:6]
    ports = Ports(kafka=kafka, kafka_controller=controller, postgres=postgres, rest=rest, grpc=grpc_front,
                  services_from=services_from)  # fmt: skip
    env = {
        **os.environ,
        "TODO_JWT_SECRET_FILE": str(key_file),
        "TODO_LOG_LEVEL": "INFO",
        "KAFKA_HEAP_OPTS": "-Xms128m -Xmx512m",
        # Quick group joins and a short broker-down report, as the Kafka runtime's own tests use.
        "TODO_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "TODO_KAFKA_HEARTBEAT_MS": "300",
        "TODO_KAFKA_BROKER_DOWN_SECONDS": "5",
        "TODO_EVENT_RETRY_MAX_DELAY_SECONDS": "2",
        "TODO_RATE_LIMIT_PER_MINUTE": "0",  # fault tests drive load above a user's rate on purpose
    }
    running = Stack(folder, ports=ports, gateway_bin=binary, web_dir=None, env=env)
    running.start()
    try:
        yield running
    finally:
        running.stop()
        shutil.rmtree(folder, ignore_errors=True)
