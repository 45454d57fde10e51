#!/usr/bin/env bash
# Build promtool from the Go module proxy, to unit-test the chart's alert rules (`promtool test rules`)
# and parse every PromQL expression of the rules and the dashboard (`promtool check rules`).
# Built with -tags remove_all_sd: promtool's service-discovery plugins (cloud SDKs) are not needed for
# rules and would more than double the compile.
# Output: $KUBETUNE_CACHE/bin/promtool-$PROMETHEUS_VERSION/promtool
set -euo pipefail
source "$(dirname "$0")/lib.sh"
PV=${PROMETHEUS_VERSION}
OUT="$BIN_CACHE/promtool-$PV"
if is_cached "$OUT"; then log "promtool $PV: cached ($OUT)"; exit 0; fi
go_env
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT; cd "$W"
go mod init local/kubetune-promtool-build >/dev/null 2>&1
log "promtool $PV: resolving github.com/prometheus/prometheus on $(go env GOPROXY)"
SRC=$(check_module "github.com/prometheus/prometheus@$PV" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
RELEASE=$(cat "$SRC/VERSION" 2>/dev/null || echo "${PV#v}")
go get "github.com/prometheus/prometheus/cmd/promtool@$PV" 2>&1 | grep -v '^go: added' >&2 || true
grep -q "github.com/prometheus/prometheus $PV" go.mod || die "go get did not add github.com/prometheus/prometheus $PV"
TMP_OUT="$OUT.tmp.$$"; rm -rf "$TMP_OUT"; mkdir -p "$TMP_OUT" "$KUBETUNE_CACHE/logs"
log "promtool $PV (Prometheus $RELEASE): compiling with -p $GO_P"
V=github.com/prometheus/common/version
go_build_progress "$KUBETUNE_CACHE/logs/build-promtool-$PV.log" -trimpath -tags remove_all_sd \
  -ldflags "-s -w -X $V.Version=$RELEASE -X $V.Branch=HEAD -X $V.Revision=$PV" \
  -o "$TMP_OUT/promtool" github.com/prometheus/prometheus/cmd/promtool
"$TMP_OUT/promtool" --version >&2
touch "$TMP_OUT/.complete"
rm -rf "$OUT"; mv "$TMP_OUT" "$OUT"
log "promtool $PV: built into $OUT"
