"""The generated package: every service is importable with stubs, servicers and HTTP annotations."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

import todo_contracts

EXPECTED_SERVICES = {
    "todo.task.v1.TaskService",
    "todo.reminder.v1.ReminderService",
    "todo.recurrence.v1.RecurrenceService",
    "todo.notify.v1.NotificationService",
    "todo.audit.v1.AuditService",
    "todo.chat.v1.ChatService",
}


def generated_modules() -> list[ModuleType]:
    return [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(todo_contracts.__path__, "todo_contracts.")
        if info.name.endswith("_pb2")
    ]


def test_every_service_has_stub_servicer_and_registration() -> None:
    found = set()
    for module in generated_modules():
        for service in module.DESCRIPTOR.services_by_name.values():
            grpc_module = importlib.import_module(module.__name__ + "_grpc")
            assert hasattr(grpc_module, f"{service.name}Stub")
            assert hasattr(grpc_module, f"{service.name}Servicer")
            assert hasattr(grpc_module, f"add_{service.name}Servicer_to_server")
            found.add(service.full_name)
    assert found == EXPECTED_SERVICES


def test_every_rpc_has_an_http_binding() -> None:
    unbound = []
    for module in generated_modules():
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                options = descriptor_pb2.MethodOptions()
                options.ParseFromString(method.GetOptions().SerializeToString())
                rule = options.Extensions[annotations_pb2.http]
                if not rule.WhichOneof("pattern"):
                    unbound.append(method.full_name)
    assert unbound == []


def test_type_stubs_ship_beside_every_module() -> None:
    for module in generated_modules():
        assert module.__file__ is not None
        assert module.__file__.endswith(".py")
        stub = module.__file__ + "i"
        with open(stub, encoding="utf-8") as handle:
            assert "class " in handle.read() or "DESCRIPTOR" in handle.read()


def test_version_is_kept_in_one_place() -> None:
    from importlib.metadata import version

    assert version("todo-contracts") == todo_contracts.__version__
