"""The embedded host's gateway settings: which binary, port, web folder and key file the gateway gets."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from todo_kit.config import ConfigError, Settings
from todo_kit.gateway_process import GatewayProcess, GatewaySettings, dev_key_file


def executable(folder: Path) -> Path:
    binary = folder / "todo-gateway"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    return binary


def test_no_binary_means_no_gateway() -> None:
    assert GatewaySettings.from_env({}).binary == ""


def test_binary_must_be_executable(tmp_path: Path) -> None:
    plain = tmp_path / "not-executable"
    plain.write_text("")
    with pytest.raises(ConfigError, match="TODO_GATEWAY_BIN"):
        GatewaySettings.from_env({"TODO_GATEWAY_BIN": str(plain)})
    with pytest.raises(ConfigError, match="TODO_GATEWAY_BIN"):
        GatewaySettings.from_env({"TODO_GATEWAY_BIN": str(tmp_path / "missing")})


def test_web_folder_defaults_to_frontend_dist_only_when_it_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"TODO_GATEWAY_BIN": str(executable(tmp_path))}
    assert GatewaySettings.from_env(env).web_dir == ""
    (tmp_path / "frontend" / "dist").mkdir(parents=True)
    assert GatewaySettings.from_env(env).web_dir == str(tmp_path / "frontend" / "dist")
    assert GatewaySettings.from_env({**env, "TODO_WEB_DIR": ""}).web_dir == ""
    with pytest.raises(ConfigError, match="TODO_WEB_DIR"):
        GatewaySettings.from_env({**env, "TODO_WEB_DIR": str(tmp_path / "nowhere")})


def test_port_is_checked_and_defaults_to_8080(tmp_path: Path) -> None:
    env = {"TODO_GATEWAY_BIN": str(executable(tmp_path))}
    assert GatewaySettings.from_env(env).port == 8080
    with pytest.raises(ConfigError, match="TODO_GATEWAY_PORT"):
        GatewaySettings.from_env({**env, "TODO_GATEWAY_PORT": "99999"})


def test_dev_sign_in_uses_the_key_file_the_host_signs_with(tmp_path: Path) -> None:
    data = Settings.from_env({"TODO_DATA_DIR": str(tmp_path)})
    assert dev_key_file(data) == str(tmp_path.resolve() / "jwt-signing-key")
    from_file = Settings.from_env({"TODO_DATA_DIR": str(tmp_path), "TODO_JWT_SECRET_FILE": str(tmp_path / "k")})
    assert dev_key_file(from_file) == str(tmp_path / "k")
    inline = Settings.from_env({"TODO_DATA_DIR": str(tmp_path), "TODO_JWT_SECRET": "x" * 40})
    assert dev_key_file(inline) == ""  # no file holds it: no dev sign-in


def test_gateway_environment_names_the_backend_page_and_key(tmp_path: Path) -> None:
    settings = Settings.from_env({"TODO_DATA_DIR": str(tmp_path), "TODO_LOG_LEVEL": "WARNING"})
    gateway = GatewayProcess(
        GatewaySettings(binary=str(executable(tmp_path)), port=0, web_dir="/srv/web"), settings, backend="127.0.0.1:5"
    )
    assert gateway.port != 0 and gateway.url == f"http://127.0.0.1:{gateway.port}"
    assert gateway.env["TODO_GATEWAY_LISTEN"] == f"127.0.0.1:{gateway.port}"
    assert gateway.env["TODO_GATEWAY_BACKEND"] == "127.0.0.1:5"
    assert gateway.env["TODO_GATEWAY_STATIC_DIR"] == "/srv/web"
    assert gateway.env["TODO_GATEWAY_DEV_KEY_FILE"] == str(tmp_path.resolve() / "jwt-signing-key")
    assert gateway.env["TODO_GATEWAY_LOG_LEVEL"] == "warn"
