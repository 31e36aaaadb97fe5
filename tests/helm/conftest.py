"""Fixtures of the chart tests: the pinned helm binary, Dapr's CRD schemas, renderings of the umbrella chart.

`make test` (and `make helm-check`) builds helm and fetches the CRDs into the user's cache folder first and passes
their places in HELM and TODO_DAPR_CRDS; run alone, the tests look in the same cache places and skip, saying so,
when nothing is there.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
UMBRELLA = ROOT / "deploy" / "helm" / "todo-chatbot"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "todo-chatbot"
HELM_VERSION = "v4.3.1"
DAPR_VERSION = "1.18.3"
RELEASE = "todo"
NAMESPACE = "todo"

# The renderings every check runs over: the umbrella with each values file, its plain defaults, and the Kafka
# runtime (no Dapr) with the minikube file.
RENDERINGS: dict[str, list[str]] = {
    "minikube": ["-f", str(UMBRELLA / "values-minikube.yaml")],
    "cloud": ["-f", str(UMBRELLA / "values-cloud.yaml")],
    "defaults": [],
    "kafka-runtime": ["-f", str(UMBRELLA / "values-minikube.yaml"), "--set", "global.runtime=kafka"],
}


def _from_env_or_cache(variable: str, cached: Path, hint: str) -> Path:
    given = os.environ.get(variable)
    if given:
        path = Path(given)
        if not path.exists():
            pytest.fail(f"{variable}={given} does not exist ({hint})")
        return path
    if not cached.exists():
        pytest.skip(f"{cached} is missing: run `{hint}` (make test does)")
    return cached


@pytest.fixture(scope="session")
def helm() -> Path:
    """The pinned helm binary, with every chart's file:// dependencies in place."""
    binary = _from_env_or_cache("HELM", CACHE / "bin" / f"helm-{HELM_VERSION}", "make helm-deps")
    if not (UMBRELLA / "charts").is_dir():
        pytest.skip("the charts' dependencies are not built: run `make helm-deps` (make test does)")
    return binary


@pytest.fixture(scope="session")
def dapr_crds() -> Path:
    """The folder of Dapr's CRDs at the pinned release."""
    return _from_env_or_cache("TODO_DAPR_CRDS", CACHE / "dapr" / DAPR_VERSION / "crds", "make helm-check")


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """helm with a scratch-free environment: no repositories are read, nothing is fetched."""
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120, check=False)


def template(helm: Path, *args: str, chart: Path = UMBRELLA) -> subprocess.CompletedProcess[str]:
    """`helm template` of a chart as the release `todo` in namespace `todo`, for Kubernetes 1.28."""
    return run_helm(helm, "template", RELEASE, str(chart), "--namespace", NAMESPACE, "--kube-version", "v1.28.0", *args)


def parse(manifests: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(manifests) if doc]


@pytest.fixture(scope="session")
def rendered(helm: Path) -> Callable[[str], list[dict[str, Any]]]:
    """rendered(name) -> the manifests of one of RENDERINGS (rendered once per session)."""
    cache: dict[str, list[dict[str, Any]]] = {}

    def get(name: str) -> list[dict[str, Any]]:
        if name not in cache:
            result = template(helm, *RENDERINGS[name])
            assert result.returncode == 0, f"helm template ({name}) failed:\n{result.stderr}"
            cache[name] = parse(result.stdout)
        return cache[name]

    return get
