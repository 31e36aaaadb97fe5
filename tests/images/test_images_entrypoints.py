"""The images' entry points in the kit: todo-serve (the runtime chosen by TODO_RUNTIME) and the HEALTHCHECK probe."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from todo_kit import health_probe, serve
from todo_kit.kafka_broker import free_port


@pytest.fixture
def fake_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Host modules on sys.path: one that records its argv and exits 7, one whose own import fails."""
    (tmp_path / "todo_recording_host.py").write_text(
        "calls = []\ndef main(argv):\n    calls.append(list(argv))\n    return 7\n"
    )
    (tmp_path / "todo_broken_host.py").write_text("import todo_missing_dependency_of_a_host\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("runtime", ["kafka", "dapr"])
def test_todo_serve_runs_the_host_of_the_chosen_runtime_with_the_app_id(
    runtime: str, fake_hosts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import todo_recording_host  # type: ignore[import-not-found]

    monkeypatch.setitem(serve.RUNTIMES, runtime, "todo_recording_host")
    assert serve.main(["task_svc"], {"TODO_RUNTIME": runtime}) == 7
    assert todo_recording_host.calls[-1] == ["task_svc"]


@pytest.mark.parametrize("value", [None, "", "embedded", "KAFKA", "dapr2"])
def test_todo_serve_refuses_a_missing_or_unknown_runtime_with_exit_2(
    value: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {} if value is None else {"TODO_RUNTIME": value}
    assert serve.main(["task_svc"], env) == 2
    assert "TODO_RUNTIME must be one of kafka, dapr" in capsys.readouterr().err


def test_todo_serve_names_a_host_module_that_is_not_installed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(serve.RUNTIMES, "dapr", "todo_kit.no_such_host_module")
    assert serve.main(["task_svc"], {"TODO_RUNTIME": "dapr"}) == 2
    assert "todo_kit.no_such_host_module, which is not installed" in capsys.readouterr().err


def test_todo_serve_does_not_hide_a_missing_dependency_of_an_installed_host(
    fake_hosts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(serve.RUNTIMES, "kafka", "todo_broken_host")
    with pytest.raises(ModuleNotFoundError) as missing:
        serve.main(["task_svc"], {"TODO_RUNTIME": "kafka"})
    assert missing.value.name == "todo_missing_dependency_of_a_host"


@pytest.mark.parametrize("argv", [[], ["task_svc", "chat_svc"], ["--verbose"]])
def test_todo_serve_takes_exactly_one_app_id(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert serve.main(argv, {"TODO_RUNTIME": "kafka"}) == 2
    assert "usage: todo-serve <app_id>" in capsys.readouterr().err


async def test_the_health_probe_passes_only_while_the_server_reports_serving() -> None:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    address = f"127.0.0.1:{port}"
    try:
        await servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        await servicer.set("todo.task.v1.TaskService", health_pb2.HealthCheckResponse.SERVING)
        assert await asyncio.to_thread(health_probe.main, [address]) == 1
        assert await asyncio.to_thread(health_probe.check, address) == "NOT_SERVING"
        assert await asyncio.to_thread(health_probe.main, [address, "todo.task.v1.TaskService"]) == 0
        await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert await asyncio.to_thread(health_probe.main, [address]) == 0
        assert (await asyncio.to_thread(health_probe.check, address, "todo.no.v1.Such")).startswith("NOT_FOUND")
    finally:
        await server.stop(None)


def test_the_health_probe_fails_when_nothing_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TODO_GRPC_PORT", str(free_port()))
    assert health_probe.main([]) == 1
    assert health_probe.check(f"127.0.0.1:{free_port()}", timeout=1.0).startswith(("UNAVAILABLE", "DEADLINE_EXCEEDED"))
