"""A single-node Kafka broker on loopback for tests and benchmarks (deploy/local/start-kafka.sh).

LocalKafka builds the pinned Kafka classpath once (deploy/local/build-kafka.sh,
cached in the user's cache folder), starts one KRaft node (broker and
controller) on free loopback ports with its data in a folder of its own, and
stops it by its pid. It can be stopped and started again on the same data and
ports, which is how tests take the broker away and bring it back.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def repository_root() -> Path:
    """The folder holding deploy/local (found from this file, then from the working directory)."""
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for folder in (start, *start.parents):
            if (folder / "deploy" / "local" / "start-kafka.sh").is_file():
                return folder
    raise RuntimeError("deploy/local/start-kafka.sh not found above this package or the working directory")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def build_kafka() -> None:
    """Runs deploy/local/build-kafka.sh (a second run only checks the cache); raises with its output on failure."""
    script = repository_root() / "deploy" / "local" / "build-kafka.sh"
    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"build-kafka.sh failed:\n{done.stdout}\n{done.stderr}")


class LocalKafka:
    """One KRaft node on 127.0.0.1 in data_dir; start() and stop() may be called again on the same data."""

    def __init__(self, data_dir: Path | None = None, *, heap: str = "-Xms128m -Xmx512m") -> None:
        self._own_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="todo-kafka-"))
        self.port = free_port()
        self.controller_port = free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        self.heap = heap
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """host:port clients connect to."""
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        """The broker's output (appended across restarts)."""
        return self.data_dir / "kafka.log"

    @property
    def pid(self) -> int | None:
        """The broker's pid while it runs."""
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def start(self) -> None:
        """Starts the node and waits until it accepts connections; raises with the log's tail if it does not."""
        if self.pid is not None:
            return
        script = repository_root() / "deploy" / "local" / "start-kafka.sh"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_file.open("ab")
        since = self._log.tell()  # the log of an earlier start says "started" too
        env = {**os.environ, "KAFKA_HEAP_OPTS": self.heap}
        self._process = subprocess.Popen(
            [str(script), str(self.data_dir), str(self.port), str(self.controller_port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a Ctrl-C of the test run reaches it only through stop()
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"Kafka exited with {self._process.returncode}:\n{self._tail()}")
            if "Kafka Server started" in self._since(since) and self._accepts():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Kafka did not start within {START_TIMEOUT:.0f} s:\n{self._tail()}")

    def stop(self) -> None:
        """Stops the node by its pid (a clean shutdown; killed if it takes too long)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
        if self._log is not None:
            self._log.close()
            self._log = None

    def remove(self) -> None:
        """Stops the node and deletes its data folder if this object made it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _since(self, offset: int) -> str:
        try:
            with self.log_file.open("rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def _tail(self, size: int = 4000) -> str:
        try:
            data = self.log_file.read_bytes()
        except OSError:
            return ""
        return data[-size:].decode(errors="replace")
