"""Policies over the rendered manifests and the values files, and proof that each policy catches what it is for."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_policy import (
    all_violations,
    container_violations,
    dapr_app_id_violations,
    image_violations,
    name_of,
    secret_violations,
    values_secret_violations,
)
from helm_render import RENDERINGS, ROOT, UMBRELLA

Rendered = Callable[[str], list[dict[str, Any]]]
VALUES_FILES = [UMBRELLA / n for n in ("values.yaml", "values-minikube.yaml", "values-cloud.yaml")] + [
    ROOT / app / "chart" / "values.yaml"
    for app in ("task_svc", "reminder_svc", "recurrence_svc", "notify_svc", "audit_svc", "chat_svc", "gateway")
]


@pytest.mark.parametrize("rendering", list(RENDERINGS))
def test_every_rendered_manifest_meets_the_policies(rendered: Rendered, rendering: str) -> None:
    assert all_violations(rendered(rendering)) == []


@pytest.mark.parametrize("path", VALUES_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_values_file_holds_a_secret(path: Path) -> None:
    assert values_secret_violations(yaml.safe_load(path.read_text())) == []


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return copy.deepcopy(next(d for d in docs if d["kind"] == kind and name_of(d) == name))


def test_the_container_policy_finds_root_missing_limits_probes_and_a_writable_root(rendered: Rendered) -> None:
    deployment = _one(rendered("minikube"), "Deployment", "task-svc")
    assert container_violations(deployment) == []
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["runAsUser"] = 0
    container["securityContext"]["allowPrivilegeEscalation"] = True
    container["securityContext"]["readOnlyRootFilesystem"] = False
    container["securityContext"]["capabilities"] = {"add": ["NET_ADMIN"]}
    del container["resources"]["limits"]
    del container["livenessProbe"]
    found = "\n".join(container_violations(deployment))
    for expected in (
        "uid 0",
        "allowPrivilegeEscalation",
        "root filesystem is writable",
        "do not drop ALL",
        "adds capabilities",
        "no cpu limit",
        "no memory limit",
        "no livenessProbe",
    ):
        assert expected in found, f"{expected!r} not in:\n{found}"


def test_the_image_policy_finds_latest_and_untagged_images(rendered: Rendered) -> None:
    job = _one(rendered("cloud"), "Job", "task-svc-migrate")
    assert image_violations(job) == []
    container = job["spec"]["template"]["spec"]["containers"][0]
    container["image"] = "registry.example.com:5000/todo-chatbot/task-svc:latest"
    assert image_violations(job) and "latest" in image_violations(job)[0]
    container["image"] = "registry.example.com:5000/todo-chatbot/task-svc"
    assert image_violations(job) and "no tag" in image_violations(job)[0]


def test_the_secret_policy_finds_secrets_in_a_configmap_and_in_literal_env(rendered: Rendered) -> None:
    docs = rendered("kafka-runtime")
    config = _one(docs, "ConfigMap", "notify-svc")
    assert secret_violations(config) == []
    config["data"]["TODO_DATABASE_URL"] = "postgresql://notify:hunter2@db:5432/{database}"
    config["data"]["TODO_NOTIFY_SMTP_PASSWORD"] = "hunter2"
    assert len(secret_violations(config)) == 2
    config["data"] = {"TODO_JWT_SECRET": "secret:todo-jwt"}
    assert secret_violations(config) == [], "a secret store reference is not a secret"
    deployment = _one(docs, "Deployment", "notify-svc")
    deployment["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "TODO_JWT_SECRET", "value": "k3y"})
    assert secret_violations(deployment)


def test_the_values_policy_finds_a_password_but_not_a_secrets_name() -> None:
    assert values_secret_violations({"global": {"jwtSecret": "todo-jwt"}}) == []
    assert values_secret_violations({"env": {"TODO_NOTIFY_SMTP_PASSWORD": "secret:notify-smtp"}}) == []
    assert values_secret_violations({"env": {"TODO_NOTIFY_SMTP_PASSWORD": "hunter2"}})
    assert values_secret_violations({"dapr": {"pubsub": {"brokers": "sasl://user:pw@kafka:9093"}}})
    assert values_secret_violations({"extra": [{"token": "abc"}]})


def test_the_app_id_policy_finds_a_sidecar_named_after_another_service(rendered: Rendered) -> None:
    docs = copy.deepcopy(rendered("minikube"))
    assert dapr_app_id_violations(docs) == []
    deployment = next(d for d in docs if d["kind"] == "Deployment" and name_of(d) == "reminder-svc")
    deployment["spec"]["template"]["metadata"]["annotations"]["dapr.io/app-id"] = "reminder_svc"
    found = "\n".join(dapr_app_id_violations(docs))
    assert "not the Deployment's name" in found and "no service's" in found
    assert "scoped to 'reminder-svc'" in found, "the components still name the dashed id nobody runs as now"
