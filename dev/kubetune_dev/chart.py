"""`helm template` of charts/kubetune for tests: rendered objects as dicts, or helm's one-line error.

`api_versions` stands in for what a cluster serves (`.Capabilities.APIVersions`): the chart renders its
Prometheus Operator objects only where their CRDs exist.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from kubetune_dev.controlplane.paths import REPO_ROOT

CHART = REPO_ROOT / "charts" / "kubetune"
MONITORING_VALUES = CHART / "ci" / "monitoring-values.yaml"
PROMETHEUS_OPERATOR_APIS = (
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PodMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
)


class ChartError(RuntimeError):
    """helm refused to render (schema violation, template error); the message is helm's stderr."""


def helm_args(
    values_files: Iterable[Path] = (), values: Mapping[str, str] | None = None, api_versions: Iterable[str] = ()
) -> list[str]:
    args: list[str] = []
    for path in values_files:
        args += ["-f", str(path)]
    for key, value in (values or {}).items():
        args += ["--set", f"{key}={value}"]
    for api in api_versions:
        args += ["--api-versions", api]
    return args


def helm(binary: Path, kubeconfig: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """helm against a cluster (install, upgrade, uninstall); the caller checks the return code."""
    command = [str(binary), *args, "--kubeconfig", str(kubeconfig)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def template(
    helm: Path,
    release: str = "kubetune",
    namespace: str = "kubetune",
    *,
    values_files: Iterable[Path] = (),
    values: Mapping[str, str] | None = None,
    api_versions: Iterable[str] = (),
) -> list[dict[str, Any]]:
    command = [str(helm), "template", release, str(CHART), "-n", namespace]
    result = subprocess.run(
        command + helm_args(values_files, values, api_versions), capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise ChartError(result.stderr.strip())
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def only(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The single rendered object of `kind`."""
    (found,) = [o for o in objects if o["kind"] == kind]
    return found
