#!/usr/bin/env bash
# Build the kwok controller from the Go module proxy and keep the stage YAMLs that ship in its module
# (the standalone kwok binary has no default stages and exits with "no stages found" without them).
# Output: $KUBETUNE_CACHE/bin/kwok-$KWOK_VERSION/{kwok,stages/...}
set -euo pipefail
source "$(dirname "$0")/lib.sh"
KW=${KWOK_VERSION}
OUT="$BIN_CACHE/kwok-$KW"
if is_cached "$OUT"; then log "kwok $KW: cached ($OUT)"; exit 0; fi
go_env
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT; cd "$W"
go mod init local/kubetune-kwok-build >/dev/null 2>&1
log "kwok $KW: resolving sigs.k8s.io/kwok on $(go env GOPROXY)"
SRC=$(check_module "sigs.k8s.io/kwok@$KW" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
[ -d "$SRC/kustomize/stage" ] || die "sigs.k8s.io/kwok@$KW has no kustomize/stage directory"
go get "sigs.k8s.io/kwok/cmd/kwok@$KW" 2>&1 | grep -v '^go: added' >&2 || true
grep -q "sigs.k8s.io/kwok $KW" go.mod || die "go get did not add sigs.k8s.io/kwok $KW"
TMP_OUT="$OUT.tmp.$$"; rm -rf "$TMP_OUT"; mkdir -p "$TMP_OUT" "$KUBETUNE_CACHE/logs"
log "kwok $KW: compiling with -p $GO_P"
# No version ldflags needed: sigs.k8s.io/kwok/pkg/consts.Version already holds the tag's version.
go_build_progress "$KUBETUNE_CACHE/logs/build-kwok-$KW.log" -trimpath -ldflags "-s -w" \
  -o "$TMP_OUT/kwok" sigs.k8s.io/kwok/cmd/kwok
cp -r "$SRC/kustomize/stage" "$TMP_OUT/stages"; chmod -R u+w "$TMP_OUT/stages"
"$TMP_OUT/kwok" --version >&2 || true
touch "$TMP_OUT/.complete"
rm -rf "$OUT"; mv "$TMP_OUT" "$OUT"
log "kwok $KW: built into $OUT"
