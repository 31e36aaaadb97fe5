"""The REST gateway (gateway/, Go) as a child process of the embedded host.

When TODO_GATEWAY_BIN names the gateway binary, the embedded host starts it
once its gRPC server serves, tells it the host's gRPC address, the web page's
folder and the data folder's signing key file (which turns on the dev sign-in),
restarts it if it dies (with a growing pause, so a gateway that cannot start
does not spin), and stops it before the services stop, so its live streams end
first. Other TODO_GATEWAY_* variables (CORS origins, timeouts) reach it as they
are.

Settings:
  TODO_GATEWAY_BIN: the gateway binary; empty runs no gateway.
  TODO_GATEWAY_PORT: the web port on TODO_GRPC_HOST (default 8080; 0 picks a free one).
  TODO_WEB_DIR: the web page's folder (default frontend/dist when it exists; empty otherwise: no page).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from todo_kit.auth import KEY_FILE_NAME
from todo_kit.config import ConfigError, Settings, env_int, env_str

log = logging.getLogger(__name__)

DEFAULT_WEB_DIR = Path("frontend/dist")
STOP_GRACE_SECONDS = 15.0
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
"""Pauses before restarting a gateway that exited, longer after each exit in a row; a minute up resets them."""
LOG_LEVELS = {"DEBUG": "debug", "INFO": "info", "WARNING": "warn", "ERROR": "error"}


@dataclass(frozen=True)
class GatewaySettings:
    """Where the gateway binary is and what it serves (see the module docstring)."""

    binary: str
    port: int
    web_dir: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewaySettings:
        """Reads TODO_GATEWAY_BIN, TODO_GATEWAY_PORT and TODO_WEB_DIR; raises ConfigError naming a bad one."""
        env = os.environ if env is None else env
        binary = env_str(env, "TODO_GATEWAY_BIN", "-")
        binary = "" if binary == "-" else str(Path(binary).resolve())
        if binary and not os.access(binary, os.X_OK):
            raise ConfigError(f"TODO_GATEWAY_BIN: {binary} is not an executable file (make gateway builds it)")
        web_dir = env.get("TODO_WEB_DIR")
        if web_dir is None:
            web_dir = str(DEFAULT_WEB_DIR.resolve()) if DEFAULT_WEB_DIR.is_dir() else ""
        elif web_dir:
            if not Path(web_dir).is_dir():
                raise ConfigError(f"TODO_WEB_DIR: {web_dir} is not a folder")
            web_dir = str(Path(web_dir).resolve())
        return cls(binary=binary, port=env_int(env, "TODO_GATEWAY_PORT", 8080, 0, 65535), web_dir=web_dir)


def dev_key_file(settings: Settings) -> str:
    """The key file the host signs with, for the gateway's dev sign-in; empty when the key is not in a file."""
    if settings.jwt_secret:
        return ""  # a key given inline is not written anywhere for the gateway to read
    if settings.jwt_secret_file:
        return str(Path(settings.jwt_secret_file).resolve())
    return str(settings.data_dir / KEY_FILE_NAME)


def pick_port(host: str, port: int) -> int:
    """The port itself, or a free one for 0."""
    if port != 0:
        return port
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class GatewayProcess:
    """Runs the gateway binary as a child process for as long as the host serves."""

    def __init__(self, gateway: GatewaySettings, settings: Settings, backend: str) -> None:
        self.gateway = gateway
        self.host = settings.grpc_host
        self.port = pick_port(settings.grpc_host, gateway.port)
        self.env = {
            **os.environ,
            "TODO_GATEWAY_LISTEN": f"{self.host}:{self.port}",
            "TODO_GATEWAY_BACKEND": backend,
            "TODO_GATEWAY_STATIC_DIR": gateway.web_dir,
            "TODO_GATEWAY_DEV_KEY_FILE": dev_key_file(settings),
            "TODO_GATEWAY_LOG_LEVEL": LOG_LEVELS.get(settings.log_level, "info"),
        }
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def url(self) -> str:
        """The web page's address."""
        return f"http://{self.host}:{self.port}"

    async def start(self, timeout: float = 15.0) -> None:
        """Starts the gateway and waits until it accepts connections; SystemExit if it does not."""
        await self._spawn()
        if not await self._accepting(timeout):
            await self.stop()
            raise SystemExit(f"the gateway did not start listening on {self.host}:{self.port} (see its log above)")
        self._supervisor = asyncio.create_task(self._supervise(), name="gateway supervisor")

    async def _spawn(self) -> None:
        self._process = await asyncio.create_subprocess_exec(self.gateway.binary, env=self.env)

    async def _accepting(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self._process is None or self._process.returncode is not None:
                return False
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True
        return False

    async def _supervise(self) -> None:
        """Restarts the gateway when it exits while the host serves."""
        failures = 0
        while not self._stopping:
            assert self._process is not None
            started = asyncio.get_running_loop().time()
            code = await self._process.wait()
            if self._stopping:
                return
            failures = 0 if asyncio.get_running_loop().time() - started > 60 else failures + 1
            delay = RESTART_DELAYS[min(max(failures - 1, 0), len(RESTART_DELAYS) - 1)]
            log.error("the gateway exited; restarting it", extra={"exit_code": code, "restart_in_seconds": delay})
            await asyncio.sleep(delay)
            if not self._stopping:
                await self._spawn()

    async def stop(self) -> None:
        """Stops the gateway (SIGTERM: it ends its streams and finishes calls), killing it if it takes too long."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE_SECONDS)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
