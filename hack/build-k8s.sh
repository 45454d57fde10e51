#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager and kube-scheduler from the Go module proxy.
# k8s.io/kubernetes cannot be `go install`ed (its go.mod replaces the staging modules, which it requires at the
# non-existent v0.0.0), so we build through a throwaway wrapper module whose own replace lines win.
# Output: $KUBETUNE_CACHE/bin/kubernetes-$KUBE_VERSION/{kube-apiserver,kube-controller-manager,kube-scheduler}
set -euo pipefail
source "$(dirname "$0")/lib.sh"
KV=${KUBE_VERSION}
OUT="$BIN_CACHE/kubernetes-$KV"
if is_cached "$OUT"; then log "kubernetes $KV: cached ($OUT)"; exit 0; fi
go_env
MINOR=$(echo "$KV" | cut -d. -f2)
STG="v0.${KV#v1.}"                               # v1.36.3 -> v0.36.3
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT; cd "$W"
go mod init local/kubetune-k8s-build >/dev/null 2>&1

log "kubernetes $KV: resolving k8s.io/kubernetes on $(go env GOPROXY)"
GOMODFILE=$(check_module "k8s.io/kubernetes@$KV" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
[ -f "$GOMODFILE" ] || die "module proxy returned no go.mod for k8s.io/kubernetes@$KV"
need=$(grep -m1 '^go ' "$GOMODFILE" | awk '{print $2}')
have=$(go env GOVERSION | sed 's/^go//')
log "kubernetes $KV needs go $need; have go$have"
[ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" = "$need" ] ||
  die "kubernetes $KV needs Go >= $need but $(command -v go) is go$have (GOTOOLCHAIN=local never downloads one): install Go $need+ from https://go.dev/dl/"
# Every k8s.io/X required at exactly v0.0.0, or replaced with ./staging/..., is a staging module that needs a
# replace. "Exactly": k8s.io/utils and k8s.io/kube-openapi are real modules required at v0.0.0-<date>-<sha>
# pseudo-versions, and pinning them to v0.36.x fails with "403 This module version is not available".
{ grep -E '^[[:space:]]*k8s\.io/[a-z0-9-]+ v0\.0\.0([[:space:]]|$)' "$GOMODFILE" | awk '{print $1}'
  grep -oE 'k8s\.io/[a-z0-9-]+ => \./staging' "$GOMODFILE" | awk '{print $1}'; } | sort -u > staging.txt
log "kubernetes $KV: $(wc -l < staging.txt) staging modules pinned to $STG"
{ echo; echo 'replace ('
  while read -r m; do printf '\t%s => %s %s\n' "$m" "$m" "$STG"; done < staging.txt
  echo ')'; } >> go.mod

log "kubernetes $KV: go get (downloads ~1 GB of modules on a cold GOMODCACHE)"
go get "k8s.io/kubernetes/cmd/kube-apiserver@$KV" \
       "k8s.io/kubernetes/cmd/kube-controller-manager@$KV" \
       "k8s.io/kubernetes/cmd/kube-scheduler@$KV" 2>&1 | grep -v '^go: added' >&2 || true
grep -q "k8s.io/kubernetes $KV" go.mod || die "go get did not add k8s.io/kubernetes $KV to the wrapper module"

# Version ldflags as the official build sets them (hack/lib/version.sh); without them the server
# reports v0.0.0-master and helm kubeVersion constraints misfire.
NOW=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LDF="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDF+=" -X $p.gitVersion=$KV -X $p.gitMajor=1 -X $p.gitMinor=$MINOR -X $p.gitTreeState=clean -X $p.buildDate=$NOW"
done
TMP_OUT="$OUT.tmp.$$"; rm -rf "$TMP_OUT"; mkdir -p "$TMP_OUT" "$KUBETUNE_CACHE/logs"
log "kubernetes $KV: compiling 3 commands with -p $GO_P (cold: tens of minutes on 2 cores)"
go_build_progress "$KUBETUNE_CACHE/logs/build-kubernetes-$KV.log" -trimpath -ldflags "$LDF" -o "$TMP_OUT/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler
"$TMP_OUT/kube-apiserver" --version >&2
cp go.mod "$TMP_OUT/wrapper.go.mod"
touch "$TMP_OUT/.complete"
rm -rf "$OUT"; mv "$TMP_OUT" "$OUT"
log "kubernetes $KV: built into $OUT"
