"""Rendering the Todo Chatbot's charts with the pinned helm: where things are, which renderings the tests check."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

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


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs helm (the charts have only file:// dependencies: nothing is fetched)."""
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120, check=False)


def template(helm: Path, *args: str, chart: Path = UMBRELLA) -> subprocess.CompletedProcess[str]:
    """`helm template` of a chart as the release `todo` in namespace `todo`, for Kubernetes 1.28."""
    return run_helm(helm, "template", RELEASE, str(chart), "--namespace", NAMESPACE, "--kube-version", "v1.28.0", *args)


def parse(manifests: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(manifests) if doc]
