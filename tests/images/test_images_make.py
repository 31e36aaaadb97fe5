"""`make images` (deploy/images/build-images.sh) on a machine without a container engine: it says so and fails."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from image_recipe import ROOT

SCRIPT = ROOT / "deploy" / "images" / "build-images.sh"
ENGINES = ("docker", "podman", "buildah")


def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT)], cwd=ROOT, env={"HOME": os.environ.get("HOME", "/"), **env},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_make_images_without_an_engine_says_so_and_fails(tmp_path: Path) -> None:
    path = "/usr/bin:/bin"
    if any(shutil.which(engine, path=path) for engine in ENGINES):
        pytest.skip("a container engine is installed here: `make images` would build")
    before = sorted((ROOT / "build").rglob("*")) if (ROOT / "build").exists() else []
    done = run({"PATH": path})
    assert done.returncode != 0
    assert "no container engine (docker, podman or buildah)" in done.stderr
    after = sorted((ROOT / "build").rglob("*")) if (ROOT / "build").exists() else []
    assert after == before


def test_make_images_refuses_an_engine_that_is_not_installed() -> None:
    done = run({"PATH": "/usr/bin:/bin", "ENGINE": "no-such-engine"})
    assert done.returncode != 0
    assert "ENGINE=no-such-engine is not on PATH" in done.stderr
