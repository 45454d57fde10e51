"""The Helm chart on the real API server: it installs, the operator Deployment becomes Ready (pods run
on kwok nodes), and the operator's ServiceAccount holds exactly the documented permissions."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kubetune_dev.controlplane import LocalControlPlane
from kubetune_dev.controlplane.testing import Kubectl

pytestmark = [pytest.mark.integration, pytest.mark.tier_b]

CHART = Path(__file__).resolve().parents[2] / "charts" / "kubetune"


def test_chart_installs_and_grants_the_operator_only_what_it_needs(
    control_plane: LocalControlPlane, kubectl: Kubectl, namespace: str
) -> None:
    release = f"kt{namespace[-6:]}"
    result = subprocess.run(
        [str(control_plane.binaries.helm), "install", release, str(CHART), "-n", namespace,
         "--kubeconfig", str(control_plane.kubeconfig_path), "--set", f"watchNamespaces={{{namespace}}}",
         "--wait=watcher", "--timeout=90s"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    deployment = kubectl.json("get", "deployment", f"{release}-operator", "-n", namespace)
    assert deployment["status"]["readyReplicas"] == 2
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--namespace={namespace}" in args
    assert "--peering=kubetune" in args
    assert kubectl.json("get", "kopfpeering", "kubetune", "-n", namespace)["metadata"]["name"] == "kubetune"
    account = f"system:serviceaccount:{namespace}:{release}-operator"

    def can(verb: str, resource: str, where: str = namespace) -> bool:
        answer = kubectl("auth", "can-i", verb, resource, "-n", where, "--as", account, check=False)
        return answer.stdout.strip() == "yes"

    for verb, resource in [
        ("create", "jobs.batch"),
        ("patch", "finetunejobs.kubetune.io/status"),
        ("create", "roles.rbac.authorization.k8s.io"),
        ("get", "secrets"),
        ("watch", "pods"),
    ]:
        assert can(verb, resource), f"operator cannot {verb} {resource}"
    for verb, resource in [("list", "secrets"), ("delete", "pods"), ("create", "clusterroles")]:
        assert not can(verb, resource), f"operator should not {verb} {resource}"
    assert not can("create", "jobs.batch", "default"), "namespaced install must not reach other namespaces"
