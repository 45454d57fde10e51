#!/usr/bin/env bash
# Build the operator and/or trainer image with buildah (no Docker daemon, chroot isolation), FROM the local
# Debian base (hack/build-base-image.sh), with the host's uv cache mounted so no wheel is downloaded twice.
# Prints one line per image (name, size, seconds) and records it in $KUBETUNE_CACHE/images/<name>.json.
# Usage: hack/build-images.sh [operator] [trainer]   (default: both)
set -euo pipefail
# shellcheck source=hack/images-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/images-lib.sh"

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(operator trainer)
for target in "${targets[@]}"; do
  case "$target" in operator | trainer) ;; *) die "unknown image '$target': use operator or trainer" ;; esac
done

ensure_image_tools
# Remove the working containers this run leaves behind (buildah keeps them when a build fails or is
# interrupted), and only those: the ones that did not exist when it started.
containers_before=$(buildah containers --quiet | sort)
remove_new_containers() {
  comm -13 <(printf '%s\n' "$containers_before") <(buildah containers --quiet | sort) | xargs -r buildah rm >/dev/null 2>&1 || true
}
trap remove_new_containers EXIT
version=$(project_version)
revision=$(git -C "$REPO_ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
uv_bin=$("$HACK_DIR/ensure-uv.sh")
uv_cache=$("$uv_bin" cache dir)
mkdir -p "$uv_cache" "$KUBETUNE_CACHE/images"

base=$("$HACK_DIR/build-base-image.sh")

# The Dockerfiles COPY uv from an image (ghcr.io/astral-sh/uv elsewhere); here that image is made from the
# host's own uv binary, which also guarantees the mounted cache is in the format that uv writes.
uv_version=$("$uv_bin" --version | awk '{print $2}')
uv_image=localhost/kubetune-uv:$uv_version
if ! buildah inspect --type image "$uv_image" >/dev/null 2>&1; then
  ctr=$(buildah from scratch)
  buildah copy --quiet --chmod 0755 "$ctr" "$uv_bin" /uv >/dev/null
  buildah commit --quiet --rm "$ctr" "$uv_image" >/dev/null
  log "uv image $uv_image made from $uv_bin"
fi

build_args=(
  --build-arg "BASE_IMAGE=$base" --build-arg "UV_IMAGE=$uv_image"
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "CREATED=$created"
  --build-arg UV_CACHE_DIR=/host-uv-cache --build-arg UV_OFFLINE=true --volume "$uv_cache:/host-uv-cache"
)
for target in "${targets[@]}"; do
  image=localhost/kubetune-$target:$version
  dockerfile=$REPO_ROOT/Dockerfile
  [ "$target" = trainer ] && dockerfile=$REPO_ROOT/trainer-image/Dockerfile
  log "building $image from ${dockerfile#"$REPO_ROOT"/} (FROM $base)"
  start=$(date +%s)
  # The deps stage gets a tag of its own: the layer cache of the locked dependencies (and the prebuilt
  # DeepSpeed ops) then survives the prune below, and a source change rebuilds only the kubetune wheel.
  buildah bud --isolation chroot --layers --pull-never "${build_args[@]}" \
    --target deps -t "localhost/kubetune-$target-deps:$version" -f "$dockerfile" "$REPO_ROOT" >&2
  buildah bud --isolation chroot --layers --pull-never "${build_args[@]}" \
    -t "$image" -f "$dockerfile" "$REPO_ROOT" >&2
  seconds=$(($(date +%s) - start))
  size=$(image_size "$image")
  printf '{"image": "%s", "seconds": %d, "size": "%s", "created": "%s"}\n' "$image" "$seconds" "$size" "$created" \
    >"$KUBETUNE_CACHE/images/kubetune-$target.json"
  printf '%s\t%s\t%ss\n' "$image" "$size" "$seconds"
done

# Superseded builds leave untagged images behind. `buildah rmi --prune` drops the untagged ones without
# children, one level at a time: repeat until only tagged images and the layers under them remain.
while :; do
  before=$(buildah images --all --quiet | wc -l)
  buildah rmi --prune >/dev/null 2>&1 || true
  [ "$(buildah images --all --quiet | wc -l)" -lt "$before" ] || break
done
