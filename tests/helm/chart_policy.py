"""Policies every rendered manifest of the Todo Chatbot's charts must meet; each check returns its violations.

Pure functions over parsed manifests (dicts), so the tests can run them on the real renderings and on a broken
manifest alike (a check that never finds anything would prove nothing).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

Manifest = dict[str, Any]

SERVICE_APP_IDS = ("task_svc", "reminder_svc", "recurrence_svc", "notify_svc", "audit_svc", "chat_svc")
APP_IDS = (*SERVICE_APP_IDS, "gateway")
POD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
LONG_RUNNING_KINDS = ("Deployment", "StatefulSet", "DaemonSet")

# Containers allowed a writable root filesystem, and why (only development infrastructure, never the system's own).
WRITABLE_ROOT_ALLOWED = {
    ("StatefulSet", "todo-kafka", "kafka"): "the Kafka image writes its server.properties under /opt/kafka at start",
}

SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL)", re.IGNORECASE)
URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^@\s/]+@", re.IGNORECASE)
PEM = re.compile(r"-----BEGIN [A-Z ]*(PRIVATE KEY|CERTIFICATE)-----")
JWT_LIKE = re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.")
SECRET_REFERENCE = re.compile(r"^secret:[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def names_a_secret(key: str) -> bool:
    """Keys that hold where a secret is, not the secret: a Secret's name (values: `...Secret`) or a store's."""
    return key.endswith("Secret") or key.lower().endswith("store")


def dapr_app_id(app_id: str) -> str:
    """The Dapr app id (and Kubernetes name) of an app id: `_` as `-` (DNS labels have no `_`)."""
    return app_id.replace("_", "-")


def name_of(doc: Manifest) -> str:
    return str(doc.get("metadata", {}).get("name", ""))


def pod_spec(doc: Manifest) -> dict[str, Any] | None:
    """The pod spec of a workload, or None for other kinds."""
    if doc.get("kind") not in POD_KINDS:
        return None
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


def pod_annotations(doc: Manifest) -> dict[str, str]:
    annotations: dict[str, str] = doc["spec"]["template"].get("metadata", {}).get("annotations", {}) or {}
    return annotations


def containers(doc: Manifest) -> Iterator[dict[str, Any]]:
    spec = pod_spec(doc)
    if spec is None:
        return
    yield from spec.get("initContainers", []) or []
    yield from spec.get("containers", []) or []


def container_violations(doc: Manifest) -> list[str]:
    """Non-root, no privilege escalation, all capabilities dropped, read-only root, requests and limits, probes."""
    spec = pod_spec(doc)
    if spec is None:
        return []
    found = []
    where = f"{doc['kind']}/{name_of(doc)}"
    pod_security = spec.get("securityContext", {}) or {}
    for container in containers(doc):
        at = f"{where} container {container.get('name')}"
        security = container.get("securityContext", {}) or {}
        non_root = security.get("runAsNonRoot", pod_security.get("runAsNonRoot"))
        user = security.get("runAsUser", pod_security.get("runAsUser"))
        if non_root is not True:
            found.append(f"{at}: runAsNonRoot is not true")
        if user is None or user == 0:
            found.append(f"{at}: runs as uid {user!r} (needs a fixed non-root uid)")
        if security.get("privileged"):
            found.append(f"{at}: privileged")
        if security.get("allowPrivilegeEscalation") is not False:
            found.append(f"{at}: allowPrivilegeEscalation is not false")
        if "ALL" not in ((security.get("capabilities") or {}).get("drop") or []):
            found.append(f"{at}: capabilities do not drop ALL")
        if (security.get("capabilities") or {}).get("add"):
            found.append(f"{at}: adds capabilities")
        if (
            security.get("readOnlyRootFilesystem") is not True
            and (
                doc["kind"],
                name_of(doc),
                container.get("name"),
            )
            not in WRITABLE_ROOT_ALLOWED
        ):
            found.append(f"{at}: root filesystem is writable")
        resources = container.get("resources") or {}
        for part in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if not (resources.get(part) or {}).get(resource):
                    found.append(f"{at}: no {resource} {part[:-1]}")
        if doc["kind"] in LONG_RUNNING_KINDS:
            for probe in ("livenessProbe", "readinessProbe"):
                if not container.get(probe):
                    found.append(f"{at}: no {probe}")
    return found


def image_violations(doc: Manifest) -> list[str]:
    """Every image names a tag (or digest) that is not `latest`."""
    found = []
    for container in containers(doc):
        image = str(container.get("image", ""))
        last = image.rsplit("/", 1)[-1]
        at = f"{doc['kind']}/{name_of(doc)} container {container.get('name')}"
        if "@sha256:" in image:
            continue
        if ":" not in last:
            found.append(f"{at}: image {image!r} has no tag")
        elif last.rsplit(":", 1)[1] in ("", "latest"):
            found.append(f"{at}: image {image!r} uses the latest tag")
    return found


def looks_secret(value: str) -> bool:
    """A value that is itself a credential: a URL with a password, a PEM block, a JWT."""
    return bool(URL_WITH_PASSWORD.search(value) or PEM.search(value) or JWT_LIKE.search(value))


def plain_setting_violations(where: str, settings: Mapping[str, Any]) -> list[str]:
    """Plain settings (a ConfigMap's data, literal env values) hold no secret, only `secret:<name>` references."""
    found = []
    for key, raw in settings.items():
        value = "" if raw is None else str(raw)
        if looks_secret(value):
            found.append(f"{where}: {key} holds a credential")
        elif (
            SECRET_NAME.search(str(key))
            and not names_a_secret(str(key))
            and value
            and not SECRET_REFERENCE.match(value)
        ):
            found.append(f"{where}: {key} is a secret given as a plain value")
    return found


def secret_violations(doc: Manifest) -> list[str]:
    """No secret in a ConfigMap, nor as a literal env value of a container."""
    if doc.get("kind") == "ConfigMap":
        return plain_setting_violations(f"ConfigMap/{name_of(doc)}", doc.get("data") or {})
    found = []
    for container in containers(doc):
        literal = {e["name"]: e.get("value") for e in container.get("env", []) or [] if "value" in e}
        where = f"{doc['kind']}/{name_of(doc)} container {container.get('name')} env"
        found += plain_setting_violations(where, literal)
    return found


def values_secret_violations(values: Any, path: str = "") -> list[str]:
    """A values file holds no secret: only Secret names (keys ending in Secret) and `secret:<name>` references."""
    found = []
    if isinstance(values, Mapping):
        for key, value in values.items():
            at = f"{path}.{key}" if path else str(key)
            if isinstance(value, Mapping | list):
                found += values_secret_violations(value, at)
                continue
            text = "" if value is None else str(value)
            if looks_secret(text):
                found.append(f"{at} holds a credential")
            elif (
                SECRET_NAME.search(str(key))
                and not names_a_secret(str(key))
                and isinstance(value, str)
                and value
                and not SECRET_REFERENCE.match(value)
            ):
                found.append(f"{at} is a secret given as a plain value")
    elif isinstance(values, list):
        for index, item in enumerate(values):
            found += values_secret_violations(item, f"{path}[{index}]")
    return found


def dapr_app_id_violations(docs: Iterable[Manifest]) -> list[str]:
    """Every Dapr-enabled workload's app id is its service's (dashed), and Dapr resources scope only to those ids."""
    found = []
    app_ids: set[str] = set()
    for doc in docs:
        if doc.get("kind") != "Deployment":
            continue
        annotations = pod_annotations(doc)
        if annotations.get("dapr.io/enabled") != "true":
            continue
        name = name_of(doc)
        app_id = annotations.get("dapr.io/app-id", "")
        app_ids.add(app_id)
        if app_id != name:
            found.append(f"Deployment/{name}: Dapr app id {app_id!r} is not the Deployment's name")
        if app_id not in {dapr_app_id(a) for a in APP_IDS}:
            found.append(f"Deployment/{name}: Dapr app id {app_id!r} is no service's")
        main = doc["spec"]["template"]["spec"]["containers"][0]
        args = main.get("args") or []
        if args and dapr_app_id(str(args[0])) != app_id:
            found.append(f"Deployment/{name}: serves {args[0]!r} but its Dapr app id is {app_id!r}")
        labels = doc["spec"]["template"]["metadata"].get("labels", {})
        if labels.get("app.kubernetes.io/name") != app_id:
            found.append(f"Deployment/{name}: pod label app.kubernetes.io/name is not the app id {app_id!r}")
    for doc in docs:
        if str(doc.get("apiVersion", "")).startswith("dapr.io/"):
            for scope in doc.get("scopes", []) or []:
                if scope not in app_ids:
                    found.append(f"{doc['kind']}/{name_of(doc)}: scoped to {scope!r}, which no workload runs as")
        if doc.get("kind") == "Resiliency":
            for target in doc["spec"].get("targets", {}).get("apps") or {}:
                if target not in app_ids:
                    found.append(f"Resiliency/{name_of(doc)}: targets app {target!r}, which no workload runs as")
    return found


def all_violations(docs: list[Manifest]) -> list[str]:
    """Every policy over a rendering."""
    found = []
    for doc in docs:
        found += container_violations(doc) + image_violations(doc) + secret_violations(doc)
    return found + dapr_app_id_violations(docs)
