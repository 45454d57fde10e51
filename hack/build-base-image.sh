#!/usr/bin/env bash
# Build the local stand-in for the images' public base (python:3.11-slim-bookworm): Debian bookworm
# (minbase) with Python 3.11 from Debian's own packages, made with mmdebstrap and imported by buildah.
#
# No container registry is reachable from CI, Debian's mirrors are. The Dockerfiles take the base as a
# build argument (BASE_IMAGE), so the same files build FROM the pinned public image elsewhere and FROM
# this one here. The image is rebuilt only when this recipe changes (its hash is a label).
# Usage: hack/build-base-image.sh   (prints the image name on stdout)
set -euo pipefail
# shellcheck source=hack/images-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/images-lib.sh"

# libpython3.11-dev: the headers the official image has too; torch compiles C++ extensions against them.
PACKAGES=python3,libpython3.11-dev,ca-certificates,netbase,tzdata
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
RECIPE=$(printf '%s\n' "$PACKAGES" "$SUITE" "$MIRROR" "$SECURITY_MIRROR" | cat - "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)

if [ "$(buildah inspect --type image --format '{{index .OCIv1.Config.Labels "io.kubetune.base.recipe"}}' "$BASE_LOCAL" 2>/dev/null)" = "$RECIPE" ]; then
  log "base image $BASE_LOCAL is current (recipe $RECIPE)"
  echo "$BASE_LOCAL"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/kubetune-base.XXXXXX")
ctr=""
cleanup() { [ -z "$ctr" ] || buildah rm "$ctr" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

log "mmdebstrap $SUITE ($PACKAGES) from $MIRROR"
start=$(date +%s)
# Like the official slim images: no docs, man pages or locales, no apt lists left behind.
mmdebstrap --variant=minbase --include="$PACKAGES" \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
  "$SUITE" "$work/rootfs.tar" \
  "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY_MIRROR $SUITE-security main" >&2

# Device nodes belong to the runtime, not to an image layer.
mmtarfilter --path-exclude='/dev/*' <"$work/rootfs.tar" >"$work/rootfs-nodev.tar"
ctr=$(buildah from scratch)
buildah add --quiet "$ctr" "$work/rootfs-nodev.tar" / >/dev/null
buildah config --env LANG=C.UTF-8 --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd python3 \
  --label "io.kubetune.base.recipe=$RECIPE" \
  --label "org.opencontainers.image.description=Debian $SUITE minbase with Python 3.11 (kubetune local base)" "$ctr"
buildah commit --quiet --rm "$ctr" "$BASE_LOCAL" >/dev/null
ctr=""
python_version=$(buildah_run_image "$BASE_LOCAL" python3 --version)
log "base image $BASE_LOCAL built in $(($(date +%s) - start))s: $python_version, $(image_size "$BASE_LOCAL")"
echo "$BASE_LOCAL"
