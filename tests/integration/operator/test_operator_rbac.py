"""The operator runs as a ServiceAccount holding exactly the RBAC the chart renders (docs/operator.md lists
it); a full run with a credentials Secret (children, status, Events, Adapter) must not get a single 403
(audit log scan)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubetune_dev.chart import template
from kubetune_dev.controlplane.pki import write_token_kubeconfig
from kubetune_dev.controlplane.testing import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.tier_b]

OPERATOR_SA = "kubetune-operator"


def chart_rules(namespace: str, helm: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The Role (watchNamespaces mode) and cluster-scoped rules exactly as the chart renders them."""
    objects = template(helm, values={"watchNamespaces": f"{{{namespace}}}"})
    role = next(o for o in objects if o["kind"] == "Role")
    cluster = next(o for o in objects if o["kind"] == "ClusterRole")
    return role["rules"], cluster["rules"]


def test_operator_needs_no_more_than_the_chart_grants(
    make_operator: Any, ftj_body: Any, cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the chart runs it: no Secret permission (KUBETUNE_CHECK_SECRETS=false), children applied, never read."""
    ns = cluster.namespace
    namespaced_rules, cluster_rules = chart_rules(ns, cluster.plane.binaries.helm)
    assert not any("secrets" in rule["resources"] for rule in namespaced_rules + cluster_rules)
    monkeypatch.setenv("KUBETUNE_CHECK_SECRETS", "false")
    kube = cluster.kube
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    kube.create(
        cluster.url("ServiceAccount"), {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": OPERATOR_SA}}
    )
    subject = [{"kind": "ServiceAccount", "name": OPERATOR_SA, "namespace": ns}]
    kube.create(f"{rbac}/namespaces/{ns}/roles", {"metadata": {"name": OPERATOR_SA}, "rules": namespaced_rules})
    kube.create(
        f"{rbac}/namespaces/{ns}/rolebindings",
        {
            "metadata": {"name": OPERATOR_SA},
            "subjects": subject,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": OPERATOR_SA},
        },
    )
    cluster_name = f"kubetune-operator-{ns}"
    kube.create(f"{rbac}/clusterroles", {"metadata": {"name": cluster_name}, "rules": cluster_rules})
    kube.create(
        f"{rbac}/clusterrolebindings",
        {
            "metadata": {"name": cluster_name},
            "subjects": subject,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_name},
        },
    )
    token = kube.create(
        cluster.url("ServiceAccount", OPERATOR_SA, "token"),
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}},
    )["status"]["token"]
    identity = write_token_kubeconfig(
        cluster.tmp / "operator.kubeconfig", cluster.plane.api_url, cluster.plane.pki.ca_cert, token
    )
    operator = make_operator(ns, identity)
    operator.start()
    try:
        body = ftj_body("rbac", ns, baseModel={"uri": "hf://org/tiny", "credentialsSecretRef": {"name": "hf-token"}})
        kube.create(cluster.url("FineTuneJob"), body)
        # A queued run makes the operator read Kueue's Workloads (a 404 without Kueue: allowed, not a 403).
        kube.create(cluster.url("FineTuneJob"), ftj_body("rbac-queued", ns, resources={"gpus": 1, "queueName": "q"}))
        cluster.wait_phase("rbac", "Succeeded")
        cluster.wait_phase("rbac-queued", "Queued")
        result = {"artifactUri": "s3://a/rbac/", "sha256": "1" * 64, "sizeBytes": 1, "gatePassed": True}
        kube.request(
            "PATCH",
            cluster.url("FineTuneJob", "rbac", "status"),
            query={"fieldManager": "kubetune-trainer", "force": "true"},
            body={
                "apiVersion": "kubetune.io/v1alpha1",
                "kind": "FineTuneJob",
                "metadata": {"name": "rbac", "namespace": ns},
                "status": {"result": result},
            },
            content_type="application/apply-patch+yaml",
        )
        cluster.wait_phase("rbac", "Ready", kind="Adapter")
        for name in ("rbac", "rbac-queued"):
            kube.request("DELETE", cluster.url("FineTuneJob", name))
            wait_until(f"{name} finalized", lambda name=name: cluster.get("FineTuneJob", name) is None, timeout=30)
    finally:
        operator.stop()
        kube.request("DELETE", f"{rbac}/clusterrolebindings/{cluster_name}")
        kube.request("DELETE", f"{rbac}/clusterroles/{cluster_name}")
    user = f"system:serviceaccount:{ns}:{OPERATOR_SA}"
    denied, uris = [], []
    for line in cluster.plane.audit_log.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("user", {}).get("username") != user:
            continue
        uris.append(entry["requestURI"])
        if entry.get("responseStatus", {}).get("code") == 403:
            denied.append(f"{entry['verb']} {entry['requestURI']}")
    assert denied == [], "the operator was denied:\n" + "\n".join(sorted(set(denied)))
    assert any(f"/namespaces/{ns}/workloads?" in uri for uri in uris)  # the queued run's Workload was looked up
