"""What the image tests share: the recipe (deploy/images/recipe.sh) run from the repository root, the services."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "deploy" / "images" / "recipe.sh"
SERVICES = ("task_svc", "reminder_svc", "recurrence_svc", "notify_svc", "audit_svc", "chat_svc")
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "todo-chatbot" / "image-wheels"


def base_python() -> Path:
    """The interpreter this test environment was made from: the recipe makes virtualenvs from it, as an image's
    builder makes them from the base image's python3."""
    for name in ("python3", "python3.11", "python"):
        candidate = Path(sys.base_prefix) / "bin" / name
        if candidate.is_file():
            return candidate
    raise RuntimeError(f"no python under {sys.base_prefix}/bin")


def recipe(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Runs deploy/images/recipe.sh from the repository root with the base interpreter."""
    env = {**os.environ, "PYTHON": str(base_python())}
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run(
        [str(RECIPE), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
