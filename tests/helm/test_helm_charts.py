"""The charts lint, render with each values file, and validate offline: Kubernetes' schemas for 1.28 and the newest
kubernetes-validate bundles, Dapr's CRD schemas (openAPIV3Schema) for Dapr's resources."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from chart_policy import APP_IDS, SERVICE_APP_IDS, dapr_app_id, name_of
from helm_render import RENDERINGS, ROOT, UMBRELLA, run_helm, template

Rendered = Callable[[str], list[dict[str, Any]]]
SERVICE_CHARTS = [ROOT / app / "chart" for app in SERVICE_APP_IDS] + [ROOT / "gateway" / "chart"]
KUBERNETES_VERSIONS = ["1.28.0", kubernetes_validate.latest_version()]


def test_the_umbrella_chart_passes_helm_lint_strict_with_each_values_file(helm: Path) -> None:
    for values in ("values-minikube.yaml", "values-cloud.yaml"):
        result = run_helm(
            helm, "lint", "--strict", str(UMBRELLA), "-f", str(UMBRELLA / values), "--kube-version", "1.28.0"
        )
        assert result.returncode == 0, f"{values}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("chart", SERVICE_CHARTS, ids=lambda c: c.parent.name)
def test_every_subchart_passes_helm_lint_strict_alone_and_with_the_releases_values(
    helm: Path, chart: Path, tmp_path: Path
) -> None:
    # `helm lint --with-subcharts` hands each subchart the umbrella's whole values (not its own part), which no
    # strict schema accepts; so each subchart is linted with its part of each values file, as helm installs it.
    result = run_helm(helm, "lint", "--strict", str(chart), "--kube-version", "1.28.0")
    assert result.returncode == 0, result.stdout + result.stderr
    name = yaml.safe_load((chart / "Chart.yaml").read_text())["name"]
    defaults = yaml.safe_load((UMBRELLA / "values.yaml").read_text())
    for values_file in ("values-minikube.yaml", "values-cloud.yaml"):
        release = yaml.safe_load((UMBRELLA / values_file).read_text())
        part = dict(release.get(name) or {})
        part.pop("enabled", None)
        part["global"] = {**defaults["global"], **(release.get("global") or {})}
        scoped = tmp_path / f"{name}-{values_file}"
        scoped.write_text(yaml.safe_dump(part))
        result = run_helm(helm, "lint", "--strict", str(chart), "-f", str(scoped), "--kube-version", "1.28.0")
        assert result.returncode == 0, f"{values_file}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("rendering", list(RENDERINGS))
def test_every_service_and_the_gateway_are_rendered(rendered: Rendered, rendering: str) -> None:
    docs = rendered(rendering)
    for kind in ("Deployment", "Service", "ConfigMap", "ServiceAccount", "PodDisruptionBudget", "NetworkPolicy"):
        names = {name_of(d) for d in docs if d["kind"] == kind}
        assert {dapr_app_id(a) for a in APP_IDS} <= names, f"{kind}: {sorted(names)}"


@pytest.mark.parametrize("rendering", list(RENDERINGS))
def test_every_service_has_its_migration_hook_before_upgrades(rendered: Rendered, rendering: str) -> None:
    jobs = {name_of(d): d for d in rendered(rendering) if d["kind"] == "Job"}
    for app_id in SERVICE_APP_IDS:
        job = jobs.get(f"{dapr_app_id(app_id)}-migrate")
        assert job is not None, f"no migration Job for {app_id}"
        hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
        assert "pre-upgrade" in hooks
        # The in-release development database starts with the release: its first migration runs after it.
        assert ("pre-install" if rendering in ("cloud", "defaults") else "post-install") in hooks
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["todo-migrate"] and container["args"] == [app_id]
        env = {e["name"]: e for e in container["env"]}
        secret = f"{dapr_app_id(app_id)}-database-url"
        assert env["TODO_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": secret}
        assert job["spec"]["template"]["metadata"]["annotations"]["dapr.io/enabled"] == "false"


def _crd_schemas(folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    schemas = {}
    for path in sorted(folder.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("rendering", list(RENDERINGS))
def test_rendered_manifests_validate_offline(rendered: Rendered, dapr_crds: Path, rendering: str, version: str) -> None:
    crds = _crd_schemas(dapr_crds)
    assert ("dapr.io/v1alpha1", "Component") in crds and ("dapr.io/v1alpha1", "Resiliency") in crds
    problems = []
    dapr_kinds = 0
    for doc in rendered(rendering):
        where = f"{doc['kind']}/{name_of(doc)}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            schema = crds.get((doc["apiVersion"], doc["kind"]))
            if schema is None:
                problems.append(f"{where}: no schema for {doc['apiVersion']} {doc['kind']}")
                continue
            dapr_kinds += 1
            for error in jsonschema.Draft7Validator(schema).iter_errors(doc):
                problems.append(f"{where} at {list(error.absolute_path)}: {error.message}")
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{where} at {list(error.path)}: {error.message}")
    assert not problems, "\n".join(problems)
    assert dapr_kinds == (0 if rendering == "kafka-runtime" else 5)


@pytest.mark.parametrize("rendering", ["minikube", "cloud"])
def test_the_dapr_resources_are_the_runtimes_scoped_to_their_apps(rendered: Rendered, rendering: str) -> None:
    dapr = {(d["kind"], name_of(d)): d for d in rendered(rendering) if d["apiVersion"].startswith("dapr.io/")}
    services = [dapr_app_id(a) for a in SERVICE_APP_IDS]
    assert set(dapr) == {
        ("Component", "todo-pubsub"),
        ("Component", "todo-state"),
        ("Component", "todo-secrets"),
        ("Configuration", "todo-config"),
        ("Resiliency", "todo-resiliency"),
    }
    # Subscriptions are programmatic (ListTopicSubscriptions): a Subscription resource would subscribe twice.
    assert not any(kind == "Subscription" for kind, _ in dapr)
    pubsub = dapr[("Component", "todo-pubsub")]
    meta = {m["name"]: m for m in pubsub["spec"]["metadata"]}
    assert pubsub["spec"]["type"] == "pubsub.kafka" and "brokers" in meta
    assert "consumerGroup" not in meta, "the consumer group is left to Dapr: the app id"
    # Dapr's default protocol version (2.0.0) uses request versions Kafka 4 no longer accepts.
    assert tuple(int(p) for p in meta["version"]["value"].split(".")) >= (2, 1, 0)
    assert sorted(pubsub["scopes"]) == sorted(services)
    assert dapr[("Component", "todo-state")]["spec"]["type"] == "state.postgresql"
    assert dapr[("Component", "todo-state")]["spec"]["version"] == "v2"
    assert dapr[("Component", "todo-secrets")]["spec"]["type"] == "secretstores.kubernetes"
    for name in ("todo-pubsub", "todo-state"):
        assert dapr[("Component", name)]["spec"]["auth"]["secretStore"] == "todo-secrets"
    if rendering == "cloud":
        assert meta["authType"]["value"] == "password"
        assert meta["saslPassword"]["secretKeyRef"] == {"name": "todo-kafka-sasl", "key": "password"}
    config = dapr[("Configuration", "todo-config")]["spec"]
    assert config["mtls"]["enabled"] is True
    assert config["tracing"]["otel"]["endpointAddress"]
    assert {p["appId"] for p in config["accessControl"]["policies"]} == {"gateway", "chat-svc"}
    resiliency = dapr[("Resiliency", "todo-resiliency")]["spec"]
    assert sorted(resiliency["targets"]["apps"]) == sorted(services)
    assert set(resiliency["targets"]["components"]["todo-pubsub"]) == {"inbound", "outbound"}
    assert resiliency["policies"]["circuitBreakers"] and resiliency["policies"]["retries"]


@pytest.mark.parametrize("rendering", ["minikube", "cloud", "defaults"])
def test_dapr_sidecars_are_annotated_and_the_app_gets_both_tokens(rendered: Rendered, rendering: str) -> None:
    deployments = {name_of(d): d for d in rendered(rendering) if d["kind"] == "Deployment"}
    for app_id in SERVICE_APP_IDS:
        deployment = deployments[dapr_app_id(app_id)]
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["dapr.io/enabled"] == "true"
        assert annotations["dapr.io/app-id"] == dapr_app_id(app_id)
        assert annotations["dapr.io/app-port"] == "50051"
        assert annotations["dapr.io/app-protocol"] == "grpc"
        assert annotations["dapr.io/config"] == "todo-config"
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in container["env"]}
        assert env["APP_API_TOKEN"] == {"name": annotations["dapr.io/app-token-secret"], "key": "token"}
        assert env["DAPR_API_TOKEN"] == {"name": annotations["dapr.io/api-token-secret"], "key": "token"}
        probes = [container[p]["grpc"]["port"] for p in ("startupProbe", "readinessProbe", "livenessProbe")]
        assert probes == [50051, 50051, 50051]
    gateway = deployments["gateway"]["spec"]["template"]
    assert gateway["metadata"]["annotations"]["dapr.io/app-id"] == "gateway"
    # The gateway's sidecar requires the API token and the gateway sends it (DAPR_API_TOKEN from the same Secret).
    gateway_env = {e["name"]: e.get("valueFrom", {}) for e in gateway["spec"]["containers"][0]["env"]}
    token_secret = gateway["metadata"]["annotations"]["dapr.io/api-token-secret"]
    assert gateway_env["DAPR_API_TOKEN"]["secretKeyRef"] == {"name": token_secret, "key": "token"}
    assert [gateway["spec"]["containers"][0][p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")] == [
        "/readyz",
        "/healthz",
    ]


def test_the_kafka_runtime_renders_without_dapr_and_with_direct_addresses(rendered: Rendered) -> None:
    docs = rendered("kafka-runtime")
    assert not [d for d in docs if d["apiVersion"].startswith("dapr.io/")]
    services = {name_of(d) for d in docs if d["kind"] == "Service"}
    for doc in docs:
        if doc["kind"] == "Deployment":
            assert "dapr.io/enabled" not in doc["spec"]["template"]["metadata"].get("annotations", {})
        if doc["kind"] == "ConfigMap" and name_of(doc) in {dapr_app_id(a) for a in SERVICE_APP_IDS}:
            data = doc["data"]
            assert data["TODO_RUNTIME"] == "kafka" and data["TODO_KAFKA_BOOTSTRAP"]
            addresses = dict(item.split("=") for item in data["TODO_SERVICE_ADDRESSES"].split(","))
            assert sorted(addresses) == sorted(SERVICE_APP_IDS)
            assert {a.split(".")[0] for a in addresses.values()} <= services
        if doc["kind"] == "ConfigMap" and name_of(doc) == "gateway":
            backends = {k: v for k, v in doc["data"].items() if k.startswith("TODO_GATEWAY_BACKEND_")}
            assert len(backends) == len(SERVICE_APP_IDS) and "TODO_GATEWAY_DAPR_ADDRESS" not in doc["data"]


def test_the_cloud_values_scale_out_and_verify_oidc_tokens(rendered: Rendered) -> None:
    docs = rendered("cloud")
    hpas = {name_of(d) for d in docs if d["kind"] == "HorizontalPodAutoscaler"}
    assert hpas == {dapr_app_id(a) for a in APP_IDS}
    for doc in docs:
        if doc["kind"] == "ConfigMap" and name_of(doc) in {dapr_app_id(a) for a in SERVICE_APP_IDS}:
            assert doc["data"]["TODO_AUTH_MODE"] == "oidc"
            assert doc["data"]["TODO_OIDC_ISSUER"].startswith("https://") and doc["data"]["TODO_OIDC_AUDIENCE"]
    assert not [d for d in docs if d["kind"] == "StatefulSet"], "the cloud release runs no Kafka or PostgreSQL"
    assert [d for d in docs if d["kind"] == "Ingress"]


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("global.runtime=docker", "/global/runtime"),
        ("task-svc.replicas=2", "replicas"),
        ("task-svc.image.tag=latest", "/image/tag"),
        ("gateway.resources.limits.memory=lots", "/resources/limits/memory"),
        ("dapr.pubsub.authType=plain", "/dapr/pubsub/authType"),
        ("task-svc.appId=task-svc", "/appId"),
    ],
)
def test_a_wrong_value_fails_helm_template_naming_it(helm: Path, setting: str, complaint: str) -> None:
    result = template(helm, "--set", setting)
    assert result.returncode != 0, f"--set {setting} rendered"
    assert "schema" in result.stderr and complaint in result.stderr, result.stderr


def test_every_chart_carries_the_librarys_values_schema() -> None:
    canonical = json.loads((ROOT / "deploy" / "helm" / "service-values.schema.json").read_text())
    for chart in SERVICE_CHARTS:
        copy = json.loads((chart / "values.schema.json").read_text())
        assert copy == canonical, f"{chart}/values.schema.json differs from deploy/helm/service-values.schema.json"
    umbrella = json.loads((UMBRELLA / "values.schema.json").read_text())
    assert umbrella["properties"]["global"] == canonical["properties"]["global"]
    for name in ("values.yaml", "values-minikube.yaml", "values-cloud.yaml"):
        jsonschema.validate(yaml.safe_load((UMBRELLA / name).read_text()), umbrella)
