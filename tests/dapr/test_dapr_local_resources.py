"""The local Dapr resources (deploy/local/dapr) that real sidecars load in tests/dapr/real_daprd.py: valid against
Dapr's CRD schemas at the pinned release (the same schemas the Helm tests use), named as the runtime names them,
and reading only environment variables daprd lets a component read and the starter sets."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from todo_kit.runtime.dapr import DaprSettings

sys.path.insert(0, str(Path(__file__).parent))
from real_daprd import COMPONENT_ENV, COMPONENTS, CONFIG, DAPR_VERSION, RESOURCES

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "todo-chatbot"


@pytest.fixture(scope="module")
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of Dapr's CRDs (TODO_DAPR_CRDS, or where `make helm-check` puts them)."""
    given = os.environ.get("TODO_DAPR_CRDS")
    folder = Path(given) if given else CACHE / "dapr" / DAPR_VERSION / "crds"
    if not folder.is_dir():
        if given:
            pytest.fail(f"TODO_DAPR_CRDS={given} does not exist")
        pytest.skip(f"{folder} is missing: run `make helm-check` (make test does)")
    schemas = {}
    for path in sorted(folder.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if crd and crd.get("kind") == "CustomResourceDefinition":
                for version in crd["spec"]["versions"]:
                    key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
                    schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


def _resources() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in sorted(RESOURCES.rglob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())]


def test_every_local_dapr_resource_validates_against_daprs_crds(
    crd_schemas: dict[tuple[str, str], dict[str, Any]],
) -> None:
    assert ("dapr.io/v1alpha1", "Component") in crd_schemas
    resources = _resources()
    assert len(resources) == 4
    problems = []
    for path, doc in resources:
        schema = crd_schemas.get((doc.get("apiVersion", ""), doc.get("kind", "")))
        if schema is None:
            problems.append(f"{path.name}: no Dapr CRD for {doc.get('apiVersion')} {doc.get('kind')}")
            continue
        for error in jsonschema.Draft7Validator(schema).iter_errors(doc):
            problems.append(f"{path.name} at {list(error.absolute_path)}: {error.message}")
    assert not problems, "\n".join(problems)


def test_the_local_components_are_the_ones_the_runtime_names_with_the_clusters_types_swapped() -> None:
    components = {
        doc["metadata"]["name"]: doc["spec"]["type"] for path, doc in _resources() if path.parent == COMPONENTS
    }
    defaults = DaprSettings()
    assert components == {
        defaults.pubsub: "pubsub.kafka",
        defaults.state_store: "state.in-memory",
        defaults.secret_store: "secretstores.local.file",
    }
    config = yaml.safe_load(CONFIG.read_text())
    assert config["kind"] == "Configuration" and CONFIG.parent == RESOURCES  # not in the components folder


def test_the_components_read_only_variables_daprd_allows_and_the_starter_sets() -> None:
    refs = {
        item["envRef"]
        for _, doc in _resources()
        for item in (doc.get("spec", {}).get("metadata") or [])
        if "envRef" in item
    }
    assert refs == set(COMPONENT_ENV)
    # daprd resolves no envRef naming APP_API_TOKEN or a DAPR_* variable (pkg/runtime/processor/secret).
    assert not any(ref.upper().startswith("DAPR_") or ref.upper() == "APP_API_TOKEN" for ref in refs)
