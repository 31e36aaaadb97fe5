"""Our envelope is readable by a decoder generated only from the CloudEvents spec's proto.

The spec decoder runs in a separate interpreter that has never imported
todo_contracts, so nothing of ours can help it parse.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from todo_contracts import envelope
from todo_contracts.task.v1 import events_pb2, task_pb2

SPEC_PROTO = Path(__file__).parent / "spec" / "cloudevents.proto"

SPEC_READER = r"""
import json, sys
from io_cloudevents_spec import cloudevents_pb2  # generated from the spec alone
ce = cloudevents_pb2.CloudEvent()
ce.ParseFromString(sys.stdin.buffer.read())
attrs = {}
for key, value in ce.attributes.items():
    kind = value.WhichOneof("attr")
    raw = getattr(value, kind)
    attrs[key] = [kind, raw.ToJsonString() if kind == "ce_timestamp" else raw]
print(json.dumps({
    "id": ce.id, "source": ce.source, "spec_version": ce.spec_version, "type": ce.type,
    "attributes": attrs, "data": ce.WhichOneof("data"),
    "type_url": ce.proto_data.type_url, "payload": ce.proto_data.value.hex(),
}))
"""


@pytest.fixture(scope="module")
def spec_module_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import grpc_tools

    out = tmp_path_factory.mktemp("spec")
    package = out / "io_cloudevents_spec"
    package.mkdir()
    (package / "__init__.py").write_text("")
    well_known = Path(next(iter(grpc_tools.__path__))) / "_proto"
    subprocess.run(
        [
            sys.executable, "-m", "grpc_tools.protoc",
            f"-I{SPEC_PROTO.parent}", f"-I{well_known}", f"--python_out={package}", SPEC_PROTO.name,
        ],
        check=True,
    )  # fmt: skip
    return out


def test_spec_decoder_reads_our_envelope(spec_module_dir: Path) -> None:
    event = events_pb2.TaskCompleted(
        user_id="alice", task=task_pb2.Task(task_id="t-9", title="Water plants", status=task_pb2.TASK_STATUS_COMPLETED)
    )
    when = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
    data = envelope.encode(event, source="/todo/task_svc", subject="t-9", event_id="e-42", time=when)

    result = subprocess.run(
        [sys.executable, "-c", SPEC_READER],
        input=data,
        capture_output=True,
        env={"PYTHONPATH": str(spec_module_dir), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    seen = json.loads(result.stdout)

    assert seen["id"] == "e-42"
    assert seen["source"] == "/todo/task_svc"
    assert seen["spec_version"] == "1.0"
    assert seen["type"] == "todo.task.v1.TaskCompleted"
    assert seen["data"] == "proto_data"
    assert seen["type_url"] == "type.googleapis.com/todo.task.v1.TaskCompleted"
    assert seen["attributes"]["partitionkey"] == ["ce_string", "alice"]
    assert seen["attributes"]["subject"] == ["ce_string", "t-9"]
    assert seen["attributes"]["dataschema"] == ["ce_uri", "type.googleapis.com/todo.task.v1.TaskCompleted"]
    assert seen["attributes"]["time"] == ["ce_timestamp", "2026-11-26T09:30:00Z"]
    assert events_pb2.TaskCompleted.FromString(bytes.fromhex(seen["payload"])) == event


def test_spec_encoded_event_decodes_with_our_envelope(spec_module_dir: Path) -> None:
    payload = events_pb2.TaskCreated(user_id="bob", task=task_pb2.Task(task_id="t-1", title="Call mom"))
    writer = (
        "import sys\n"
        "from io_cloudevents_spec import cloudevents_pb2\n"
        "ce = cloudevents_pb2.CloudEvent(id='x-1', source='/other/producer', spec_version='1.0',"
        " type='todo.task.v1.TaskCreated')\n"
        "ce.attributes['partitionkey'].ce_string = 'bob'\n"
        "ce.proto_data.type_url = 'type.googleapis.com/todo.task.v1.TaskCreated'\n"
        f"ce.proto_data.value = bytes.fromhex('{payload.SerializeToString().hex()}')\n"
        "sys.stdout.buffer.write(ce.SerializeToString())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", writer],
        capture_output=True,
        env={"PYTHONPATH": str(spec_module_dir), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    decoded = envelope.decode(result.stdout)
    assert decoded.message == payload
    assert decoded.partition_key == "bob"
    assert decoded.time is None
