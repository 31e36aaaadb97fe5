#!/usr/bin/env bash
# Copies Dapr's CustomResourceDefinitions (Component, Configuration, Resiliency, Subscription, ...) of a pinned
# release out of the github.com/dapr/dapr Go module (charts/dapr/crds/), fetched through the Go module proxy and
# checked against the Go checksum database, into the user's cache folder. The chart tests validate the rendered
# Dapr resources against these schemas. A second run only checks the cache.
# Usage: deploy/helm/fetch-dapr-crds.sh VERSION DEST_DIR   (e.g. v1.18.3 ~/.cache/todo-chatbot/dapr/1.18.3/crds)
set -euo pipefail
[[ $# -eq 2 ]] || { echo "usage: $0 VERSION DEST_DIR" >&2; exit 2; }
version="$1"
dest="$2"
if [[ -f "$dest/.fetched-from" && "$(cat "$dest/.fetched-from")" == "github.com/dapr/dapr@$version" ]]; then
  exit 0
fi
command -v go >/dev/null || { echo "$0: go not found on PATH" >&2; exit 1; }
info="$(cd "${TMPDIR:-/tmp}" && GOFLAGS=-mod=mod go mod download -json "github.com/dapr/dapr@$version")"
dir="$(sed -n 's|^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$|\1|p' <<<"$info" | head -n 1)"
[[ -d "$dir/charts/dapr/crds" ]] || { echo "$0: no charts/dapr/crds in github.com/dapr/dapr@$version" >&2; exit 1; }
mkdir -p "$dest"
cp "$dir"/charts/dapr/crds/*.yaml "$dest"/
chmod u+w "$dest"/*.yaml
printf 'github.com/dapr/dapr@%s\n' "$version" >"$dest/.fetched-from"
echo "$0: Dapr $version CRDs in $dest"
