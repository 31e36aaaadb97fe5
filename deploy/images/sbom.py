"""Prints a CycloneDX 1.5 JSON SBOM of the Python distributions installed in the running interpreter's environment,
or (--go-version-m) of a Go binary's modules from `go version -m <binary>` on standard input.

Run with the image's virtualenv interpreter (deploy/images/recipe.sh does, at build time): every installed
distribution becomes a component with its version and package URL. SOURCE_DATE_EPOCH, when set, fixes the timestamp
and the serial number, so the same build inputs give the same document.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import uuid
from datetime import UTC, datetime
from importlib.metadata import Distribution, distributions
from typing import Any


def normalized(name: str) -> str:
    """The PEP 503 form of a distribution name (what package URLs of PyPI use)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def component(dist: Distribution) -> dict[str, Any]:
    """One library component of the SBOM."""
    name = normalized(dist.metadata["Name"])
    entry: dict[str, Any] = {
        "type": "library",
        "bom-ref": f"pkg:pypi/{name}@{dist.version}",
        "name": name,
        "version": dist.version,
        "purl": f"pkg:pypi/{name}@{dist.version}",
    }
    meta = dist.metadata
    license_name = next((str(meta[key]) for key in ("License-Expression", "License") if key in meta and meta[key]), "")  # noqa: RUF019 (PackageMetadata has no get)
    if license_name and len(license_name) < 100 and "\n" not in license_name:
        entry["licenses"] = [{"license": {"name": license_name}}]
    return entry


def go_components(listing: str) -> list[dict[str, Any]]:
    """Components of the module dependencies in `go version -m` output (a replaced module counts as its replacement)."""
    found: dict[str, dict[str, Any]] = {}
    last = ""
    for line in listing.splitlines():
        fields = line.strip().split("\t")
        if fields[0] == "dep" and len(fields) >= 3:
            last = fields[1]
            found[last] = {"name": fields[1], "version": fields[2]}
        elif fields[0] == "=>" and len(fields) >= 3 and last:
            found[last] = {"name": fields[1], "version": fields[2]}
    return [
        {
            "type": "library",
            "bom-ref": f"pkg:golang/{c['name']}@{c['version']}",
            "name": c["name"],
            "version": c["version"],
            "purl": f"pkg:golang/{c['name']}@{c['version']}",
        }
        for c in found.values()
    ]


def bom(application: str, go_listing: str | None = None) -> dict[str, Any]:
    """The SBOM document of the environment (or of a Go binary's listing), naming application as what it describes."""
    found = go_components(go_listing) if go_listing is not None else [component(d) for d in distributions()]
    components = sorted(found, key=lambda c: str(c["name"]))
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    listing = "\n".join(f"{c['name']}=={c['version']}" for c in components)
    serial = uuid.uuid5(uuid.NAMESPACE_URL, f"{application}\n{listing}\n{epoch}") if epoch else uuid.uuid4()
    own = next((c for c in components if c["name"] == normalized(application)), None)
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{serial}",
        "version": 1,
        "metadata": {
            "timestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "component": {
                "type": "application",
                "name": normalized(application),
                "version": own["version"] if own else "unknown",
            },
        },
        "components": components,
    }


def main() -> int:
    """Entry point: writes the SBOM to standard output."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the distribution the environment was made for")
    parser.add_argument("--go-version-m", action="store_true", help="read `go version -m <binary>` from stdin")
    args = parser.parse_args()
    listing = sys.stdin.read() if args.go_version_m else None
    json.dump(bom(args.name, listing), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
