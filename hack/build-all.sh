#!/usr/bin/env bash
# `make binaries`: build or reuse every binary of the local control plane, plus promtool and the Prometheus
# Operator CRDs (they test the chart's monitoring). Each step is a no-op printing "cached" when its versioned
# directory under $KUBETUNE_CACHE/bin is complete. Cheap steps run first so a broken toolchain or proxy shows
# up before the long kubernetes compile.
set -euo pipefail
H=$(cd "$(dirname "$0")" && pwd)
"$H/install-helm.sh"
"$H/build-etcd.sh"
"$H/build-kwok.sh"
"$H/build-kstatus.sh"
"$H/build-promtool.sh"
"$H/fetch-prometheus-operator-crds.sh"
"$H/build-k8s.sh"
"$H/build-kueue.sh"
