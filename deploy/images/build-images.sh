#!/usr/bin/env bash
# `make images`: builds the six service images and the gateway image with whichever container engine exists (docker
# with buildx, podman or buildah; ENGINE= chooses), tags them <registry/>todo-chatbot/<name>:<tag>, writes a CycloneDX
# SBOM of each to build/images/sbom/, and pushes them when PUSH=1. Run from the repository root.
#
#   REGISTRY   registry and path put before todo-chatbot/ (e.g. ghcr.io/example); empty: local names only
#   TAG        the tag (default: the VERSION file)
#   PUSH       1 pushes the images (and, with buildx, attaches SBOM and provenance attestations)
#   IMAGES     which images (default: task-svc reminder-svc recurrence-svc notify-svc audit-svc chat-svc gateway)
#
# Bases are pinned by digest: the first build resolves each base tag (the Dockerfiles' *_IMAGE arguments) to its
# digest and records it in deploy/images/bases.lock (commit it); later builds use the recorded digest, so a re-pushed
# tag never changes an image silently. Delete a line to move that base on.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"
LOCK=$HERE/bases.lock
OUT=$ROOT/build/images
TAG=${TAG:-$(cat VERSION)}
REGISTRY=${REGISTRY:-}
PUSH=${PUSH:-0}
IMAGES=${IMAGES:-task-svc reminder-svc recurrence-svc notify-svc audit-svc chat-svc gateway}

die() { echo "make images: $*" >&2; exit 1; }

ENGINE=${ENGINE:-}
if [[ -z $ENGINE ]]; then
    for candidate in docker podman buildah; do
        if command -v "$candidate" >/dev/null 2>&1; then ENGINE=$candidate; break; fi
    done
fi
[[ -n $ENGINE ]] || die "no container engine (docker, podman or buildah) on PATH: nothing was built. tests/images proves each image's content by running its recipe outside a container."
command -v "$ENGINE" >/dev/null 2>&1 || die "ENGINE=$ENGINE is not on PATH"
BUILDX=0
if [[ $ENGINE == docker ]] && docker buildx version >/dev/null 2>&1; then BUILDX=1; fi

dockerfile_of() { if [[ $1 == gateway ]]; then echo gateway/Dockerfile; else echo "${1//-/_}/Dockerfile"; fi; }

# The digest of a base: recorded in bases.lock, or pulled, read and recorded now.
digest_of() {
    local ref=$1 digest
    digest=$(awk -v ref="$ref" '$1 == ref {print $2}' "$LOCK" 2>/dev/null || true)
    if [[ -z $digest ]]; then
        case $ENGINE in
            docker) docker pull --quiet "$ref" >/dev/null
                    digest=$(docker image inspect --format '{{index .RepoDigests 0}}' "$ref" | sed 's/.*@//') ;;
            podman) podman pull --quiet "$ref" >/dev/null
                    digest=$(podman image inspect --format '{{.Digest}}' "$ref") ;;
            buildah) buildah pull --quiet "$ref" >/dev/null
                     digest=$(buildah inspect --type image --format '{{.FromImageDigest}}' "$ref") ;;
        esac
        [[ $digest == sha256:* ]] || die "could not read the digest of $ref"
        echo "$ref $digest" >>"$LOCK"
        echo "pinned $ref to $digest in deploy/images/bases.lock: commit it" >&2
    fi
    echo "$digest"
}

# --build-arg NAME=tag@digest for every *_IMAGE argument of a Dockerfile.
base_args() {
    local name ref
    while IFS='=' read -r name ref; do
        echo "--build-arg"
        echo "$name=$ref@$(digest_of "$ref")"
    done < <(sed -n 's/^ARG \([A-Z_]*_IMAGE\)=\(.*\)$/\1=\2/p' "$1")
}

# The SBOM of a built image when the engine attached none we can keep: syft when present, else the one the recipe
# wrote into the image (services), or one made from the gateway binary's Go module list.
write_sbom() {
    local image=$1 ref=$2 target=$OUT/sbom/$1.cdx.json container
    if command -v syft >/dev/null 2>&1; then
        syft "$ref" -o cyclonedx-json >"$target"
        return
    fi
    local scratch
    scratch=$(mktemp -d)
    case $ENGINE in
        docker|podman) container=$("$ENGINE" create "$ref")
                       if [[ $image == gateway ]]; then
                           "$ENGINE" cp "$container:/usr/local/bin/todo-gateway" "$scratch/todo-gateway"
                       else
                           "$ENGINE" cp "$container:/opt/venv/sbom.cdx.json" "$target"
                       fi
                       "$ENGINE" rm "$container" >/dev/null ;;
        buildah) container=$(buildah from "$ref")
                 local mount
                 mount=$(buildah unshare buildah mount "$container")
                 if [[ $image == gateway ]]; then
                     buildah unshare cp "$mount/usr/local/bin/todo-gateway" "$scratch/todo-gateway"
                 else
                     buildah unshare cp "$mount/opt/venv/sbom.cdx.json" "$target"
                 fi
                 buildah rm "$container" >/dev/null ;;
    esac
    if [[ $image == gateway ]]; then
        go version -m "$scratch/todo-gateway" | python3 "$HERE/sbom.py" --name todo-gateway --go-version-m >"$target"
    fi
    rm -rf "$scratch"
}

mkdir -p "$OUT/sbom"
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE=$(git remote get-url origin 2>/dev/null || echo "")
EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
built=()
for image in $IMAGES; do
    file=$(dockerfile_of "$image")
    [[ -f $file ]] || die "no Dockerfile for $image ($file)"
    ref=${REGISTRY:+$REGISTRY/}todo-chatbot/$image:$TAG
    mapfile -t bases < <(base_args "$file")
    args=(--file "$file" --tag "$ref" "${bases[@]}" --build-arg "VERSION=$TAG" --build-arg "REVISION=$REVISION"
          --build-arg "SOURCE=$SOURCE" --build-arg "SOURCE_DATE_EPOCH=$EPOCH")
    echo "building $ref with $ENGINE" >&2
    if [[ $BUILDX == 1 && $PUSH == 1 ]]; then
        # The registry keeps the SBOM and provenance attestations beside the image.
        docker buildx build "${args[@]}" --sbom=true --provenance=mode=max --push .
    elif [[ $BUILDX == 1 ]]; then
        docker buildx build "${args[@]}" --load .
    elif [[ $ENGINE == buildah ]]; then
        buildah build --layers "${args[@]}" .
    else
        "$ENGINE" build "${args[@]}" .
    fi
    if [[ $BUILDX == 1 && $PUSH == 1 ]]; then
        docker buildx imagetools inspect "$ref" --format '{{ json .SBOM }}' >"$OUT/sbom/$image.cdx.json"
    else
        write_sbom "$image" "$ref"
    fi
    if [[ $PUSH == 1 && $BUILDX == 0 ]]; then "$ENGINE" push "$ref"; fi
    built+=("$ref")
done
printf 'built %s\n' "${built[@]}"
echo "SBOMs in build/images/sbom/"
