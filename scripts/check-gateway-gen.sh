#!/usr/bin/env bash
# Fails when the committed gateway/gen differs from what buf.gen.yaml generates
# from proto/ now: generates into a scratch copy of the repository's inputs and
# compares, like contracts-py/generate.py check. Fix with `make contracts`.
set -euo pipefail
cd "$(dirname "$0")/.."
buf=$(realpath "${BUF:-.venv/bin/buf}")
export PATH="${TOOLS_BIN:?TOOLS_BIN names the folder of the protoc-gen-* plugins}:$PATH"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/build"
cp -r proto buf.yaml buf.gen.yaml "$scratch/"
cp -r build/proto-deps "$scratch/build/"
mkdir -p "$scratch/gateway"
cp gateway/openapi.yaml "$scratch/gateway/"
(cd "$scratch" && "$buf" generate)
if ! diff -r "$scratch/gateway/gen" gateway/gen >"$scratch/diff.txt"; then
  echo "gateway/gen is stale; run \`make contracts\` and commit the result:" >&2
  grep -E '^(Only in|diff|Files)' "$scratch/diff.txt" | sed 's/^/  /' >&2 || head -20 "$scratch/diff.txt" >&2
  exit 1
fi
echo "gateway/gen is fresh"
