"""Fixtures of the chart tests: the pinned helm binary, Dapr's CRD schemas, renderings of the umbrella chart.

`make test` (and `make helm-check`) builds helm and fetches the CRDs into the user's cache folder first and passes
their places in HELM and TODO_DAPR_CRDS; run alone, the tests look in the same cache places and skip, saying so,
when nothing is there.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helm_render import CACHE, DAPR_VERSION, HELM_VERSION, RENDERINGS, UMBRELLA, parse, template


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
