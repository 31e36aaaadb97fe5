#!/usr/bin/env bash
# buf breaking (FILE rules) of proto/ against the contract's previous state on
# this branch: against HEAD while proto/ has uncommitted changes, otherwise
# against the commit before the latest one that changed proto/. Works in a
# fresh clone and on the very first commit (where there is nothing to compare).
# BUF_AGAINST=<git ref> compares against that ref instead.
set -euo pipefail
cd "$(dirname "$0")/.."
buf=${BUF:-.venv/bin/buf}

if ! git rev-parse -q --verify HEAD >/dev/null; then
  echo "buf breaking: no commit yet, nothing to compare against"
  exit 0
fi
if [ -n "${BUF_AGAINST:-}" ]; then
  base=$BUF_AGAINST
elif [ -n "$(git status --porcelain -- proto)" ]; then
  base=HEAD
else
  base="$(git log -1 --format=%H -- proto)^"
fi
if ! git rev-parse -q --verify "$base^{commit}" >/dev/null || ! git cat-file -e "$base:proto" 2>/dev/null; then
  echo "buf breaking: proto/ has no earlier state than $(git log -1 --format=%h -- proto) to compare against"
  exit 0
fi

previous=$(mktemp -d)
trap 'rm -rf "$previous"' EXIT
git archive "$base" proto | tar -x -C "$previous"
# The module layout and the googleapis protos are today's, so only the
# contract's own files differ between the two sides.
cp buf.yaml "$previous/"
mkdir -p "$previous/build"
cp -r build/proto-deps "$previous/build/"
"$buf" breaking --against "$previous"
echo "buf breaking: no breaking change against $(git rev-parse --short "$base")"
