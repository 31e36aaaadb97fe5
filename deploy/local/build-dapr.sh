#!/usr/bin/env bash
# Builds the pinned Dapr runtime binaries from source fetched through the Go
# module proxy, into the user's cache folder:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/todo-chatbot/dapr/<version>/{daprd,scheduler}
#
# `go install github.com/dapr/dapr/cmd/daprd@<version>` cannot work: dapr's
# go.mod has replace directives, which Go honours only in the main module. The
# wrapper module in deploy/local/dapr-build/ is that main module: it requires
# the pinned dapr release and repeats its replace directives; its go.sum is
# dapr's own go.sum plus dapr's module hash, so every download is checked
# against the hashes dapr released with.
#
# Go's module cache (GOMODCACHE) and build cache (GOCACHE) keep their defaults,
# so a rebuild only relinks. A binary already built from the same inputs is
# skipped.
#
# Usage: deploy/local/build-dapr.sh [daprd] [scheduler]   (default: both)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MOD_DIR="$LOCAL_DIR/dapr-build"
DAPR_MOD=github.com/dapr/dapr
# daprd registers its components only under one of dapr's "flavor" tags; with
# none it has no name resolver and stops at start-up. stablecomponents = the
# components dapr marks stable.
TAGS=stablecomponents

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(daprd scheduler)
for t in "${targets[@]}"; do
  case "$t" in
    daprd | scheduler) ;;
    *) die "unknown binary '$t' (choose from: daprd scheduler)" ;;
  esac
done

need go "install Go 1.26 or newer"
[[ -f "$MOD_DIR/go.mod" ]] || die "missing $MOD_DIR/go.mod"
cd "$MOD_DIR"

VERSION="$(sed -n "s|^require $DAPR_MOD \(v[0-9][^ ]*\).*|\1|p" go.mod | head -n 1)"
[[ -n "$VERSION" ]] || die "dapr-build/go.mod has no single-line 'require $DAPR_MOD vX.Y.Z'"
OUT="$TODO_CACHE/dapr/${VERSION#v}"
mkdir -p "$OUT"

# go.sum: dapr's own hashes plus the hash of dapr itself. Regenerated only when
# missing (delete it after changing the version). Checked before the download
# below, which would add dapr's own lines to it.
[[ -s go.sum ]] && have_sum=1 || have_sum=0

# 1. Dapr's own module: its go.mod (for the replace check) and its commit.
step "fetching $DAPR_MOD@$VERSION from the Go module proxy (cached after the first run)"
info="$(go mod download -json "$DAPR_MOD@$VERSION")" || die "cannot download $DAPR_MOD@$VERSION"
field() { sed -n "s|^[[:space:]]*\"$1\": \"\(.*\)\",\{0,1\}$|\1|p" <<<"$info" | head -n 1; }
dapr_dir="$(field Dir)"
commit="$(field Hash)"
[[ -d "$dapr_dir" ]] || die "go mod download gave no source folder for $DAPR_MOD@$VERSION"

# 2. go.sum, when missing.
if [[ $have_sum == 0 ]]; then
  step "writing dapr-build/go.sum from $DAPR_MOD@$VERSION's go.sum"
  {
    cat "$dapr_dir/go.sum"
    printf '%s %s %s\n' "$DAPR_MOD" "$VERSION" "$(field Sum)"
    printf '%s %s/go.mod %s\n' "$DAPR_MOD" "$VERSION" "$(field GoModSum)"
  } | LC_ALL=C sort -u >go.sum
fi

# 3. The wrapper must repeat dapr's replace directives exactly.
replaces() { go mod edit -json "$1" | sed -n '/^\t"Replace": \[/,/^\t\]/p'; }
if [[ "$(replaces go.mod)" != "$(replaces "$dapr_dir/go.mod")" ]]; then
  die "the replace directives in dapr-build/go.mod differ from those of $DAPR_MOD@$VERSION; copy them from $dapr_dir/go.mod"
fi
step "dapr-build/go.mod repeats the replace directives of $DAPR_MOD@$VERSION"

# The same version stamping as dapr's own release build.
ldflags="-s -w"
ldflags+=" -X $DAPR_MOD/pkg/buildinfo.version=${VERSION#v}"
ldflags+=" -X $DAPR_MOD/pkg/buildinfo.gitversion=$VERSION"
ldflags+=" -X $DAPR_MOD/pkg/buildinfo.gitcommit=$commit"
ldflags+=" -X github.com/dapr/kit/logger.DaprVersion=${VERSION#v}"

# Everything that decides the binary's bytes; a cached binary with another
# fingerprint is rebuilt.
fingerprint="$(
  {
    go env GOVERSION GOOS GOARCH
    printf '%s\n' "$TAGS" "$ldflags"
    cat go.mod go.sum
  } | sha256sum | cut -d' ' -f1
)"

failed=()
for bin in "${targets[@]}"; do
  dest="$OUT/$bin"
  if [[ -x "$dest" && -f "$dest.built-from" && "$(cat "$dest.built-from")" == "$fingerprint" ]]; then
    step "$bin $VERSION already built: $dest (cached)"
    continue
  fi
  step "building $bin $VERSION (the first build compiles several hundred modules and takes many minutes)"
  log="$OUT/$bin.build.log"
  start=$SECONDS
  if ! CGO_ENABLED=0 go build -tags "$TAGS" -ldflags "$ldflags" -o "$dest.partial" "$DAPR_MOD/cmd/$bin" >"$log" 2>&1; then
    rm -f "$dest.partial"
    refused="$(grep -oE '[^ ]+@v[^ :]+: (reading|verifying) [^ ]+: [0-9]{3} [A-Za-z ]+' "$log" | sed 's/: \(reading\|verifying\) [^ ]*:/:/' | LC_ALL=C sort -u || true)"
    if [[ -n "$refused" ]]; then
      {
        printf '%s: error: the Go module proxy would not serve these modules that %s needs:\n' "$SCRIPT_NAME" "$bin"
        while IFS= read -r line; do printf '  %s\n' "$line"; done <<<"$refused"
      } >&2
    else
      tail -n 30 "$log" >&2
    fi
    step "FAILED to build $bin after $((SECONDS - start))s (full log: $log)"
    failed+=("$bin")
    continue
  fi
  mv -f "$dest.partial" "$dest"
  printf '%s\n' "$fingerprint" >"$dest.built-from"
  step "built $bin in $((SECONDS - start))s: $dest ($(du -h "$dest" | cut -f1))"
done

# Check what was built is the pinned release.
for bin in "${targets[@]}"; do
  [[ -x "$OUT/$bin" && " ${failed[*]} " != *" $bin "* ]] || continue
  mod_line="$(go version -m "$OUT/$bin" | awk -v m="$DAPR_MOD" '$1 == "mod" && $2 == m {print $3}')"
  [[ "$mod_line" == "$VERSION" ]] || die "$OUT/$bin embeds $DAPR_MOD ${mod_line:-?}, expected $VERSION"
  if [[ "$bin" == daprd ]]; then
    got="$("$OUT/$bin" --version 2>/dev/null || true)"
    [[ "$got" == "${VERSION#v}" ]] || die "$OUT/daprd --version printed '$got', expected ${VERSION#v}"
  fi
  step "$bin is $DAPR_MOD $VERSION"
done

if [[ ${#failed[@]} -gt 0 ]]; then
  die "could not build: ${failed[*]} (see the messages above)"
fi
