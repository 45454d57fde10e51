#!/usr/bin/env bash
# Build etcd from the Go module proxy. go.etcd.io/etcd/server/v3 has replace lines (../api, ../pkg), so
# `go install ...@version` refuses it; a wrapper module ignores them and its requires are real versions.
# Output: $KUBETUNE_CACHE/bin/etcd-$ETCD_VERSION/etcd
set -euo pipefail
source "$(dirname "$0")/lib.sh"
EV=${ETCD_VERSION}
OUT="$BIN_CACHE/etcd-$EV"
if is_cached "$OUT"; then log "etcd $EV: cached ($OUT)"; exit 0; fi
go_env
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT; cd "$W"
go mod init local/kubetune-etcd-build >/dev/null 2>&1
log "etcd $EV: resolving go.etcd.io/etcd/server/v3 on $(go env GOPROXY)"
check_module "go.etcd.io/etcd/server/v3@$EV" >/dev/null
go get "go.etcd.io/etcd/server/v3@$EV" 2>&1 | grep -v '^go: added' >&2 || true
grep -q "go.etcd.io/etcd/server/v3 $EV" go.mod || die "go get did not add go.etcd.io/etcd/server/v3 $EV"
TMP_OUT="$OUT.tmp.$$"; rm -rf "$TMP_OUT"; mkdir -p "$TMP_OUT" "$KUBETUNE_CACHE/logs"
log "etcd $EV: compiling with -p $GO_P"
go_build_progress "$KUBETUNE_CACHE/logs/build-etcd-$EV.log" -trimpath -ldflags "-s -w" -o "$TMP_OUT/etcd" \
  go.etcd.io/etcd/server/v3
"$TMP_OUT/etcd" --version >&2
touch "$TMP_OUT/.complete"
rm -rf "$OUT"; mv "$TMP_OUT" "$OUT"
log "etcd $EV: built into $OUT"
