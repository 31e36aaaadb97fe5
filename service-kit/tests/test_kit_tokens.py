"""`make token`: signs with the key the host uses, from the same settings, and never invents one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from todo_kit import tokens
from todo_kit.auth import KEY_FILE_NAME, TokenVerifier, signing_key_for
from todo_kit.config import Settings

REPO = Path(__file__).resolve().parents[2]


def host_key(data_dir: Path) -> str:
    """The key a host makes at its first start in data_dir."""
    return signing_key_for(Settings.from_env({"TODO_DATA_DIR": str(data_dir)}))


def test_the_token_command_refuses_to_make_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TODO_DATA_DIR", str(tmp_path / "data"))
    assert tokens.main(["alice"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "start the system once with `make up` first" in err and str(tmp_path / "data") in err
    assert not (tmp_path / "data" / KEY_FILE_NAME).exists()


def test_the_token_command_signs_with_the_hosts_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key = host_key(tmp_path / "data")
    monkeypatch.setenv("TODO_DATA_DIR", str(tmp_path / "data"))
    assert tokens.main(["alice"]) == 0
    token = capsys.readouterr().out.strip()
    assert TokenVerifier(key).user_of(f"Bearer {token}") == "alice"


def test_the_token_command_keeps_to_the_maximum_lifetime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    host_key(tmp_path / "data")
    monkeypatch.setenv("TODO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TODO_TOKEN_MAX_LIFETIME_HOURS", "2")
    assert tokens.main(["alice", "--hours", "3"]) == 2
    assert "at most 2 hours" in capsys.readouterr().err
    assert tokens.main(["alice", "--hours", "1e30"]) == 2


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_token_uses_todo_data_dir_and_never_creates_a_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "TODO_DATA_DIR": str(data)}
    # -o: the virtual environment counts as installed (the tests run in it).
    command = ["make", "-s", "-o", ".venv/.installed", "token", "USER=alice", f"PY={sys.executable}"]
    refused = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert "start the system once with `make up` first" in refused.stderr
    assert not (data / KEY_FILE_NAME).exists()

    key = host_key(data)
    made = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert TokenVerifier(key).user_of(f"Bearer {made.stdout.strip()}") == "alice"
