#!/usr/bin/env bash
# Build the Kueue manager from the Go module proxy, and keep the CRDs and webhook manifests of the same module
# version next to it, so the local control plane installs exactly the API the binary serves.
# It is built inside the module's own source tree (read-only in the Go module cache) with -mod=readonly, so
# every dependency is the one Kueue's go.sum pins.
# Output: $KUBETUNE_CACHE/bin/kueue-$KUEUE_VERSION/{kueue,config/components/{crd,webhook}/...} (the module's own
# kustomize inputs: CRD bases, which CRDs get a conversion webhook, and the webhook paths and rules)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
KV=${KUEUE_VERSION}
OUT="$BIN_CACHE/kueue-$KV"
if is_cached "$OUT"; then log "kueue $KV: cached ($OUT)"; exit 0; fi
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly"
go_env
log "kueue $KV: resolving sigs.k8s.io/kueue on $(go env GOPROXY)"
SRC=$(check_module "sigs.k8s.io/kueue@$KV" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
[ -d "$SRC/config/components/crd/bases" ] || die "sigs.k8s.io/kueue@$KV has no config/components/crd/bases"
[ -f "$SRC/config/components/webhook/manifests.yaml" ] || die "sigs.k8s.io/kueue@$KV has no webhook manifests"
TMP_OUT="$OUT.tmp.$$"; rm -rf "$TMP_OUT"; mkdir -p "$TMP_OUT/config/components" "$KUBETUNE_CACHE/logs"
cd "$SRC"
log "kueue $KV: downloading its dependencies"
timeout 1200 go mod download || die "cannot download the dependencies of sigs.k8s.io/kueue@$KV"
log "kueue $KV: compiling with -p $GO_P (about 6 minutes on 2 cores)"
go_build_progress "$KUBETUNE_CACHE/logs/build-kueue-$KV.log" -trimpath \
  -ldflags "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$KV" -o "$TMP_OUT/kueue" ./cmd/kueue
cp -r config/components/crd config/components/webhook "$TMP_OUT/config/components/"
chmod -R u+w "$TMP_OUT"
"$TMP_OUT/kueue" --help >/dev/null 2>&1 || die "the built kueue binary does not run"
touch "$TMP_OUT/.complete"
rm -rf "$OUT"; mv "$TMP_OUT" "$OUT"
log "kueue $KV: built into $OUT"
