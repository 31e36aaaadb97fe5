"""scripts/check-breaking.sh catches a breaking proto change, committed or not.

Runs the real script and the real buf on a scratch git repository holding a
copy of the contract, so the check that gates CI is itself shown to fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / ".venv" / "bin" / "buf"
COMMON = Path("proto/todo/common/v1/common.proto")


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BUF": str(BUF), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    if not (ROOT / "build" / "proto-deps").is_dir():
        pytest.fail("build/proto-deps is missing: run through `make test`")
    for name in ("proto", "scripts", "build/proto-deps"):
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    (tmp_path / ".gitignore").write_text("build/\n")
    run(tmp_path, "git", "init", "-q", "-b", "main")
    return tmp_path


def commit(repo: Path, message: str) -> None:
    assert run(repo, "git", "add", "-A").returncode == 0
    assert run(repo, "git", "commit", "-q", "-m", message).returncode == 0


def check(repo: Path) -> subprocess.CompletedProcess[str]:
    return run(repo, "bash", "scripts/check-breaking.sh")


def renumber_time_zone(repo: Path) -> None:
    path = repo / COMMON
    text = path.read_text()
    assert "string time_zone = 2" in text
    path.write_text(text.replace("string time_zone = 2", "string time_zone = 9"))


def test_first_commit_has_nothing_to_compare(repo: Path) -> None:
    commit(repo, "contract")
    result = check(repo)
    assert result.returncode == 0, result.stderr
    assert "no earlier state" in result.stdout


def test_uncommitted_breaking_change_fails(repo: Path) -> None:
    commit(repo, "contract")
    renumber_time_zone(repo)
    result = check(repo)
    assert result.returncode != 0
    assert "time_zone" in result.stdout + result.stderr


def test_committed_breaking_change_fails_in_a_clean_tree(repo: Path) -> None:
    commit(repo, "contract")
    renumber_time_zone(repo)
    commit(repo, "renumber")
    (repo / "README").write_text("a later commit that does not touch proto/\n")
    commit(repo, "docs")
    result = check(repo)
    assert result.returncode != 0
    assert "time_zone" in result.stdout + result.stderr


def test_compatible_addition_passes(repo: Path) -> None:
    commit(repo, "contract")
    path = repo / COMMON
    path.write_text(path.read_text() + "\n// A new message.\nmessage Extra {\n  // A field.\n  string note = 1;\n}\n")
    commit(repo, "add a message")
    result = check(repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no breaking change" in result.stdout
