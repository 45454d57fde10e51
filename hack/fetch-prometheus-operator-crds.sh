#!/usr/bin/env bash
# Copy the Prometheus Operator CRDs the chart's monitoring objects need out of the Go module (module proxy
# zip, nothing compiled), so tests can install them on the local apiserver as kube-prometheus-stack would.
# Output: $KUBETUNE_CACHE/bin/prometheus-operator-crds-$PROMETHEUS_OPERATOR_VERSION/*.yaml
set -euo pipefail
source "$(dirname "$0")/lib.sh"
PO=${PROMETHEUS_OPERATOR_VERSION}
OUT="$BIN_CACHE/prometheus-operator-crds-$PO"
if is_cached "$OUT"; then log "prometheus-operator CRDs $PO: cached ($OUT)"; exit 0; fi
go_env
log "prometheus-operator CRDs $PO: downloading github.com/prometheus-operator/prometheus-operator"
SRC=$(check_module "github.com/prometheus-operator/prometheus-operator@$PO" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
TMP_OUT="$OUT.tmp.$$"; rm -rf "$TMP_OUT"; mkdir -p "$TMP_OUT"
for kind in servicemonitors podmonitors prometheusrules; do
  file="$SRC/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml"
  [ -f "$file" ] || die "github.com/prometheus-operator/prometheus-operator@$PO has no $file"
  install -m 0644 "$file" "$TMP_OUT/"
done
touch "$TMP_OUT/.complete"
rm -rf "$OUT"; mv "$TMP_OUT" "$OUT"
log "prometheus-operator CRDs $PO: copied into $OUT"
