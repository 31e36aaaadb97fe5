#!/usr/bin/env bash
# The install recipe of the service images, run by every service's Dockerfile and by tests/images outside a container
# (so what the images hold is proven by running it, not assumed). Run from the repository root:
#
#   deploy/images/recipe.sh wheels <wheel dir> <service folder>...
#       wheels of contracts-py, service-kit and each service (built from the sources here) and of every dependency,
#       each pinned by requirements/services.txt (a dependency it does not pin makes the step fail)
#   deploy/images/recipe.sh venv <venv dir> <wheel dir> <service folder>
#       a virtualenv without pip holding the service and its dependencies, installed from the wheel dir only
#       (no index), byte-compiled (a read-only root filesystem cannot take __pycache__ later), and
#       <venv dir>/sbom.cdx.json: a CycloneDX SBOM of the installed distributions
#
# PYTHON (default python3) is the interpreter the virtualenv is made from: the image's own, so its path inside the
# virtualenv is the one the final stage has.
set -euo pipefail

PYTHON=${PYTHON:-python3}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
KIT_PACKAGES=(contracts-py service-kit)

die() { echo "recipe.sh: $*" >&2; exit 2; }

# The pins of requirements/services.txt as pip constraints (constraints take no extras).
constraints() {
    sed -e 's/#.*//' -e 's/\[[^]]*\]//' -e '/^[[:space:]]*$/d' "$ROOT/requirements/services.txt"
}

check_service() {
    [[ -f "$ROOT/$1/pyproject.toml" && -d "$ROOT/$1/src" ]] || die "$1 is not a service folder (no pyproject.toml and src/)"
}

distribution_name() {
    "$PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["name"])' "$ROOT/$1/pyproject.toml"
}

wheels() {
    local out=$1; shift
    [[ $# -gt 0 ]] || die "usage: recipe.sh wheels <wheel dir> <service folder>..."
    local folder
    for folder in "$@"; do check_service "$folder"; done
    mkdir -p "$out"
    out=$(cd "$out" && pwd)
    local scratch
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' RETURN
    local pins=$scratch/constraints.txt
    constraints >"$pins"
    # The project's own wheels are rebuilt every time (their sources change without a version change), each from a
    # clean copy of its folder: nothing is written into the sources, and no build/ left there can leak into a wheel.
    rm -f "$out"/todo_*.whl
    local sources=()
    for folder in "${KIT_PACKAGES[@]}" "$@"; do
        mkdir -p "$scratch/src/$folder"
        tar -C "$ROOT/$folder" --exclude=./build --exclude='*.egg-info' --exclude=__pycache__ --exclude=./tests -cf - . \
            | tar -C "$scratch/src/$folder" -xf -
        sources+=("$scratch/src/$folder")
    done
    "$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$out" "${sources[@]}"
    # Dependencies of those wheels, resolved against the constraints: from the folder alone when a previous build left
    # them all there (no index needed), otherwise from the index.
    local resolve=("$PYTHON" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$out" --find-links "$out"
        --constraint "$pins" "$out"/todo_*.whl)
    "${resolve[@]}" --no-index 2>/dev/null || "${resolve[@]}"
    local resolved name
    for resolved in "$out"/*.whl; do
        name=$(basename "$resolved" | cut -d- -f1 | tr '[:upper:]_.' '[:lower:]--')
        [[ $name == todo-* ]] && continue
        grep -qi "^${name}==" <(tr '[:upper:]_.' '[:lower:]--' <"$pins") \
            || die "$(basename "$resolved"): a dependency not pinned in requirements/services.txt"
    done
}

venv() {
    [[ $# -eq 3 ]] || die "usage: recipe.sh venv <venv dir> <wheel dir> <service folder>"
    local target=$1 wheel_dir=$2 folder=$3
    check_service "$folder"
    [[ ! -e "$target/pyvenv.cfg" ]] || die "$target holds a virtualenv already"
    local name pins
    name=$(distribution_name "$folder")
    pins=$(mktemp)
    trap 'rm -f "$pins"' RETURN
    constraints >"$pins"
    "$PYTHON" -m venv --without-pip "$target"
    # The pins again: a wheel folder kept between builds may hold other versions too.
    "$PYTHON" -m pip --python "$target/bin/python" install --quiet --disable-pip-version-check --no-cache-dir \
        --no-index --find-links "$wheel_dir" --constraint "$pins" --compile "$name"
    "$target/bin/python" "$HERE/sbom.py" --name "$name" >"$target/sbom.cdx.json"
}

case "${1:-}" in
    wheels) shift; wheels "$@" ;;
    venv) shift; venv "$@" ;;
    *) die "usage: recipe.sh wheels <wheel dir> <service folder>... | venv <venv dir> <wheel dir> <service folder>" ;;
esac
