#!/usr/bin/env bash
# The gateway image's build recipe, run by gateway/Dockerfile and by tests/images: static binaries (no cgo) of the
# gateway and of its HEALTHCHECK probe into <out dir>. Run from the repository root:
#
#   deploy/images/build-gateway.sh <out dir>
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: build-gateway.sh <out dir>" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
export CGO_ENABLED=0
(cd "$ROOT/gateway" && go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$OUT/todo-gateway" ./cmd/todo-gateway)
(cd "$HERE/probe" && go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$OUT/todo-probe" .)
