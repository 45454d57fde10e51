"""The Helm chart on the real API server: it installs, the operator Deployment becomes Ready (pods run on kwok
nodes), the operator's ServiceAccount holds exactly the documented permissions (no Secrets), the monitoring
objects appear once the Prometheus Operator CRDs exist (and the apiserver accepts them against those CRDs),
and the documented CRD upgrade step works over CRDs owned by another field manager.

With its default values and its operator pods really running (on the local node, as `kubetune operator` with
the chart's arguments), the two replicas elect one, a FineTuneJob gets its Job, and when the active pod is
killed the other takes over: test_chart_ha.py."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from kubetune_dev.chart import CHART, MONITORING_VALUES, helm_args
from kubetune_dev.chart import helm as run_helm
from kubetune_dev.controlplane import LocalControlPlane
from kubetune_dev.controlplane.paths import find_prometheus_operator_crds
from kubetune_dev.controlplane.testing import Kubectl, install_crds, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.tier_b]

CRDS = CHART / "crds"
MONITORING_CRDS = ("servicemonitors", "podmonitors", "prometheusrules")


def helm(control_plane: LocalControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return run_helm(control_plane.binaries.helm, control_plane.kubeconfig_path, *args, timeout=150)


def can_i(kubectl: Kubectl, account: str, verb: str, resource: str, *where: str) -> bool:
    answer = kubectl("auth", "can-i", verb, resource, *where, "--as", account, check=False)
    return answer.stdout.strip() == "yes"


def test_chart_installs_and_grants_the_operator_only_what_it_needs(
    control_plane: LocalControlPlane, kubectl: Kubectl, namespace: str
) -> None:
    release = f"kt{namespace[-6:]}"
    result = helm(
        control_plane, "install", release, str(CHART), "-n", namespace,
        "--set", f"watchNamespaces={{{namespace}}}", "--wait=watcher", "--timeout=90s",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    deployment = kubectl.json("get", "deployment", f"{release}-operator", "-n", namespace)
    assert deployment["status"]["readyReplicas"] == 2
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--namespace={namespace}" in args
    assert "--peering=kubetune" in args
    assert kubectl.json("get", "kopfpeering", "kubetune", "-n", namespace)["metadata"]["name"] == "kubetune"
    budget = kubectl.json("get", "poddisruptionbudget", f"{release}-operator", "-n", namespace)
    assert wait_until("the PDB counts both replicas", lambda: budget_healthy(kubectl, namespace, release), timeout=30)
    assert budget["spec"]["maxUnavailable"] == 1
    account = f"system:serviceaccount:{namespace}:{release}-operator"
    for verb, resource in [
        ("create", "jobs.batch"),
        ("patch", "finetunejobs.kubetune.io/status"),
        ("create", "roles.rbac.authorization.k8s.io"),
        ("get", "persistentvolumeclaims"),
        ("watch", "pods"),
    ]:
        assert can_i(kubectl, account, verb, resource, "-n", namespace), f"operator cannot {verb} {resource}"
    for verb, resource in [
        ("get", "secrets"),
        ("list", "secrets"),
        ("get", "configmaps"),
        ("create", "configmaps"),  # trainer.json travels in the Job's pod template
        ("delete", "pods"),
        ("create", "clusterroles"),
    ]:
        assert not can_i(kubectl, account, verb, resource, "-n", namespace), f"operator should not {verb} {resource}"
    assert not can_i(kubectl, account, "create", "jobs.batch", "-n", "default"), "namespaced install leaks"
    policy = f"{release}-trainer-status"  # confines the shared trainer identity; the operator reads it at startup
    binding = kubectl.json("get", "validatingadmissionpolicybinding", policy)
    assert (binding["spec"]["policyName"], binding["spec"]["validationActions"]) == (policy, ["Deny"])
    assert kubectl.json("get", "validatingadmissionpolicy", policy)["spec"]["failurePolicy"] == "Fail"
    assert can_i(kubectl, account, "get", f"validatingadmissionpolicies/{policy}")
    assert not can_i(kubectl, account, "get", "validatingadmissionpolicies/another")


def budget_healthy(kubectl: Kubectl, namespace: str, release: str) -> bool:
    budget = kubectl.json("get", "poddisruptionbudget", f"{release}-operator", "-n", namespace)
    return bool(budget.get("status", {}).get("currentHealthy") == 2)


@pytest.fixture
def cluster_release(control_plane: LocalControlPlane, namespace: str) -> Iterator[str]:
    """A cluster-wide (ClusterRole) install; uninstalled afterwards, since its RBAC and peering are cluster-scoped."""
    release = f"kc{namespace[-6:]}"
    yield release
    helm(control_plane, "uninstall", release, "-n", namespace, "--wait", "--timeout=60s")


def test_monitoring_objects_appear_once_the_prometheus_operator_crds_exist(
    control_plane: LocalControlPlane, kubectl: Kubectl, namespace: str, cluster_release: str
) -> None:
    """Default values plus ci/monitoring-values.yaml, cluster mode: first on a bare apiserver (skipped, NOTES
    warn), then `helm upgrade` after installing the Prometheus Operator CRDs, as NOTES.txt says."""
    release = cluster_release
    crds = control_plane.client.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")["items"]
    served = {crd["metadata"]["name"] for crd in crds}
    assert not served & {f"{plural}.monitoring.coreos.com" for plural in MONITORING_CRDS}, "CRDs already installed"
    values = helm_args([MONITORING_VALUES])
    install = helm(
        control_plane, "install", release, str(CHART), "-n", namespace, *values, "--wait=watcher", "--timeout=90s"
    )
    assert install.returncode == 0, install.stderr
    assert "WARNING: monitoring.prometheusRule.enabled is true but this cluster does not serve" in install.stdout
    dashboard = kubectl.json("get", "configmap", f"{release}-operator-dashboard", "-n", namespace)
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["kubetune.json"])["uid"] == "kubetune-overview"

    install_crds(kubectl, find_prometheus_operator_crds())
    upgrade = helm(
        control_plane, "upgrade", release, str(CHART), "-n", namespace, *values, "--wait=watcher", "--timeout=90s"
    )
    assert upgrade.returncode == 0, upgrade.stderr
    assert "WARNING" not in upgrade.stdout
    for kind, name in [
        ("servicemonitor", f"{release}-operator"),
        ("podmonitor", f"{release}-operator-trainers"),
        ("prometheusrule", f"{release}-operator"),
    ]:
        stored = kubectl.json("get", kind, name, "-n", namespace)
        assert stored["metadata"]["labels"]["release"] == "kube-prometheus-stack", kind
    rule = kubectl.json("get", "prometheusrule", f"{release}-operator", "-n", namespace)
    assert len([r for group in rule["spec"]["groups"] for r in group["rules"]]) == 7

    account = f"system:serviceaccount:{namespace}:{release}-operator"
    assert can_i(kubectl, account, "create", "jobs.batch", "-n", "default"), "cluster mode reaches every namespace"
    for verb in ("get", "list", "watch"):
        assert not can_i(kubectl, account, verb, "secrets", "--all-namespaces"), f"cluster mode may {verb} secrets"
        assert not can_i(kubectl, account, verb, "secrets", "-n", namespace), f"cluster mode may {verb} secrets"


def test_documented_crd_upgrade_takes_over_crds_owned_by_helm(
    kubectl: Kubectl, control_plane: LocalControlPlane
) -> None:
    """docs/upgrading: helm never upgrades crds/; `kubectl apply --server-side --force-conflicts -f crds/` does,
    even when another manager (helm, which created them) owns the fields being changed."""
    install_crds(kubectl, sorted(CRDS.glob("*.yaml")))
    name = "finetunejobs.kubetune.io"
    columns = kubectl.json("get", "crd", name)["spec"]["versions"][0]["additionalPrinterColumns"]
    older = [c for c in columns if c["name"] != "Reason"]
    patch = json.dumps([{"op": "replace", "path": "/spec/versions/0/additionalPrinterColumns", "value": older}])
    kubectl("patch", "crd", name, "--type=json", "-p", patch, "--field-manager=helm")
    plain = kubectl("apply", "--server-side", "-f", str(CRDS), check=False)
    assert plain.returncode != 0
    assert "conflict" in plain.stderr.lower()
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    restored = kubectl.json("get", "crd", name)["spec"]["versions"][0]["additionalPrinterColumns"]
    assert restored == columns
