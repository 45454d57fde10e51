# Shared helpers for the image scripts (hack/build-base-image.sh, hack/build-images.sh). Sourced, not executed.
# shellcheck shell=bash
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REPO_ROOT=$(cd "$HACK_DIR/.." && pwd)
BASE_LOCAL=localhost/kubetune-base:bookworm
# buildah keeps its images in /var/lib/containers/storage (root) with the overlay driver.
export BUILDAH_ISOLATION=chroot

# buildah and mmdebstrap are Debian packages; install them the way the control-plane scripts install Go
# modules: once, on first use, with a one-line error when that is impossible.
ensure_image_tools() {
  local missing=()
  command -v buildah >/dev/null 2>&1 || missing+=(buildah)
  command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "${missing[*]} missing: install them (apt-get install ${missing[*]}) or run as root"
  command -v apt-get >/dev/null 2>&1 || die "${missing[*]} missing and no apt-get: install them with your package manager"
  log "installing ${missing[*]} from Debian (one time)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
    { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; } ||
    die "cannot install ${missing[*]} with apt-get -- check access to the Debian mirror"
}

project_version() {
  python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
    "$REPO_ROOT/pyproject.toml"
}

image_size() { buildah images --noheading --format '{{.Size}}' "$1"; }

# Run a command in a throwaway container of IMAGE (chroot isolation: no daemon, works as root in CI).
buildah_run_image() {
  local image=$1 ctr rc=0
  shift
  ctr=$(buildah from --quiet --pull-never "$image")
  buildah run --isolation chroot "$ctr" -- "$@" || rc=$?
  buildah rm "$ctr" >/dev/null
  return "$rc"
}
