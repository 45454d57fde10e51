# Shared helpers for hack/build-*.sh. Sourced, not executed.
# shellcheck shell=bash
HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=hack/versions.env
source "$HACK_DIR/versions.env"
KUBETUNE_CACHE=${KUBETUNE_CACHE:-$HOME/.cache/kubetune}
BIN_CACHE="$KUBETUNE_CACHE/bin"

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Go builds: never download a toolchain (offline CI), allow go.mod edits in the throwaway wrapper modules,
# keep the caller's other GOFLAGS (e.g. -buildvcs=false).
go_env() {
  command -v go >/dev/null 2>&1 ||
    die "Go not found on PATH: install Go >= 1.26 (https://go.dev/dl/) and re-run 'make binaries'"
  export GOTOOLCHAIN=local CGO_ENABLED=0
  case " ${GOFLAGS:-} " in *" -mod="*) ;; *) export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod" ;; esac
  case " ${GOFLAGS:-} " in *" -buildvcs="*) ;; *) export GOFLAGS="$GOFLAGS -buildvcs=false" ;; esac
  # Two cores shared with pytest: compile at most this many packages at once (override with GO_BUILD_P).
  GO_P=${GO_BUILD_P:-2}
}

# Fail in one line when the module proxy cannot serve MODULE@VERSION (offline, wrong GOPROXY, bad version).
check_module() {
  local mv=$1 out
  if ! out=$(timeout 120 go mod download -json "$mv" 2>&1); then
    die "cannot fetch $mv from the Go module proxy (GOPROXY=$(go env GOPROXY)): $(printf '%s' "$out" | grep -m1 -E '"Error"|error|timeout' | sed 's/^[[:space:]]*//') -- check network access to the proxy or the version in hack/versions.env"
  fi
  printf '%s\n' "$out"
}

# go build -v prints one line per compiled package: turn that into a progress line every 100 packages
# and keep the full output in a log that is shown when the build fails.
go_build_progress() {
  local logf=$1; shift
  local rc=0
  set +e
  go build -p "$GO_P" -v "$@" 2>&1 | tee "$logf" | awk '{n++; if (n % 100 == 0) { printf "  ... %d packages compiled\n", n; fflush() }}' >&2
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" -ne 0 ]; then
    tail -40 "$logf" >&2
    die "go build failed (full log: $logf)"
  fi
}

# A directory is complete only when its stamp exists, so an interrupted build is redone, not reused.
is_cached() { [ -f "$1/.complete" ]; }
