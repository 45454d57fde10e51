#!/usr/bin/env bash
# Build hack/kstatus (a tiny command around sigs.k8s.io/cli-utils' kstatus) so tests can ask the real library
# what Flux and kpt will make of kubetune's conditions. The cache directory is keyed by the cli-utils version
# and a digest of the command's sources, so editing hack/kstatus rebuilds it.
# Output: $KUBETUNE_CACHE/bin/kstatus-$KSTATUS_CLI_UTILS_VERSION-DIGEST/kstatus
set -euo pipefail
source "$(dirname "$0")/lib.sh"
SRC="$HACK_DIR/kstatus"
KV=${KSTATUS_CLI_UTILS_VERSION}
grep -q "sigs.k8s.io/cli-utils $KV\$" "$SRC/go.mod" ||
  die "hack/kstatus/go.mod does not require sigs.k8s.io/cli-utils $KV (hack/versions.env): keep them equal"
# dev/kubetune_dev/controlplane/paths.py computes the same digest (sha256 of main.go, go.mod, go.sum).
DIGEST=$(cat "$SRC/main.go" "$SRC/go.mod" "$SRC/go.sum" | sha256sum | cut -c1-12)
OUT="$BIN_CACHE/kstatus-$KV-$DIGEST"
if is_cached "$OUT"; then log "kstatus (cli-utils $KV): cached ($OUT)"; exit 0; fi
# go.sum is committed: build exactly what it pins, never edit it.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly"
go_env
cd "$SRC"
check_module "sigs.k8s.io/cli-utils@$KV" >/dev/null
TMP_OUT="$OUT.tmp.$$"; rm -rf "$TMP_OUT"; mkdir -p "$TMP_OUT" "$KUBETUNE_CACHE/logs"
log "kstatus (cli-utils $KV): compiling with -p $GO_P"
go_build_progress "$KUBETUNE_CACHE/logs/build-kstatus-$KV.log" -trimpath -ldflags "-s -w" -o "$TMP_OUT/kstatus" .
echo '{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"smoke"}}' | "$TMP_OUT/kstatus" >&2
touch "$TMP_OUT/.complete"
rm -rf "$OUT"; mv "$TMP_OUT" "$OUT"
log "kstatus (cli-utils $KV): built into $OUT"
