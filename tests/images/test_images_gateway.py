"""The gateway image's content, proven by its recipe: deploy/images/build-gateway.sh makes static binaries of the
gateway and its probe, and the gateway they make serves /healthz as uid 10001 with the image's settings."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from image_recipe import ROOT

from todo_kit.kafka_broker import free_port

PT_INTERP = 3
IMAGE_UID = 10001


@pytest.fixture(scope="module")
def gateway_build() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="todo-gw-"))
    out = folder / "bin"
    done = subprocess.run(
        [str(ROOT / "deploy" / "images" / "build-gateway.sh"), str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # The image's user must reach the binaries (a temp folder is private to its creator).
    folder.chmod(0o755)
    yield out
    shutil.rmtree(folder, ignore_errors=True)


def interpreter_of(binary: Path) -> bool:
    """Whether an ELF executable names a dynamic loader (a static one runs on a base without libc)."""
    data = binary.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2, "not a 64-bit ELF file"
    fmt = "<" if data[5] == 1 else ">"
    (phoff,) = struct.unpack_from(fmt + "Q", data, 0x20)
    phentsize, phnum = struct.unpack_from(fmt + "HH", data, 0x36)
    return any(struct.unpack_from(fmt + "I", data, phoff + i * phentsize)[0] == PT_INTERP for i in range(phnum))


def test_the_gateway_recipe_makes_static_binaries(gateway_build: Path) -> None:
    for name in ("todo-gateway", "todo-probe"):
        assert not interpreter_of(gateway_build / name), f"{name} needs a dynamic loader"
    # The check itself tells the two kinds apart: a Python interpreter is dynamically linked.
    assert interpreter_of(Path(os.path.realpath(sys.executable)))


def probe(gateway_build: Path, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(gateway_build / "todo-probe"), url], capture_output=True, text=True, timeout=30, check=False
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="running the gateway as uid 10001 needs root to switch users")
def test_the_gateway_image_serves_healthz_as_its_user_and_its_probe_says_so(gateway_build: Path) -> None:
    port = free_port()
    dist = ROOT / "frontend" / "dist"
    env = {
        "PATH": "/usr/local/bin",
        # The image's settings, on loopback; the backends are the pod's Dapr sidecar, absent here.
        "TODO_GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "TODO_GATEWAY_DAPR_ADDRESS": f"127.0.0.1:{free_port()}",
        **({"TODO_GATEWAY_STATIC_DIR": str(dist)} if (dist / "index.html").is_file() else {}),
    }
    gateway = subprocess.Popen(
        [str(gateway_build / "todo-gateway")],
        env=env,
        cwd="/",
        user=IMAGE_UID,
        group=IMAGE_UID,
        extra_groups=[],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while (checked := probe(gateway_build, f"http://127.0.0.1:{port}/healthz")).returncode != 0:
            assert gateway.poll() is None, gateway.communicate()[0]
            assert time.monotonic() < deadline, checked.stderr
            time.sleep(0.2)
        assert checked.stdout.strip() == "200 OK"
        # Not ready without its backends: the probe fails on a non-2xx answer.
        assert probe(gateway_build, f"http://127.0.0.1:{port}/readyz").returncode == 1
        if "TODO_GATEWAY_STATIC_DIR" in env:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
                assert b"<html" in page.read().lower()
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(30) == 0
    finally:
        if gateway.poll() is None:
            gateway.kill()
            gateway.wait()


def test_the_probe_fails_when_nothing_listens(gateway_build: Path) -> None:
    assert probe(gateway_build, f"http://127.0.0.1:{free_port()}/healthz").returncode == 1
    assert probe(gateway_build, "not a url\x7f").returncode == 2
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{free_port()}/healthz", timeout=2)


def test_the_gateway_sbom_lists_the_modules_go_mod_requires(gateway_build: Path) -> None:
    listing = subprocess.run(
        ["go", "version", "-m", str(gateway_build / "todo-gateway")], capture_output=True, text=True, check=True
    ).stdout
    made = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "images" / "sbom.py"), "--name", "todo-gateway", "--go-version-m"],
        input=listing, capture_output=True, text=True, check=True,
    )  # fmt: skip
    components = {c["name"]: c["version"] for c in json.loads(made.stdout)["components"]}
    required = {}
    for line in (ROOT / "gateway" / "go.mod").read_text().splitlines():
        words = line.strip().split()
        if len(words) >= 2 and words[1].startswith("v") and "." in words[0] and words[0] != "go":
            required[words[0]] = words[1]
    assert required, "go.mod lists no modules"
    for module, version in required.items():
        assert components.get(module) == version, f"{module} {version} missing from the SBOM"
