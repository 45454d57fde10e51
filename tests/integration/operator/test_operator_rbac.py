"""The operator runs as a ServiceAccount holding exactly the RBAC the chart renders (docs/operator.md lists
it); a full run with a credentials Secret (children, status, Events, Adapter) must not get a single 403
(audit log scan). With the chart's trainer policy it shares one trainer identity per namespace: it reads the policy
at startup and applies the ServiceAccount, Role and RoleBinding once for all runs (counted in the same log)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubetune_dev.controlplane.testing import wait_until
from kubetune_dev.operator_identity import chart_rules, grant_chart_identity, revoke

pytestmark = [pytest.mark.integration, pytest.mark.tier_b]


def test_operator_needs_no_more_than_the_chart_grants(
    make_operator: Any, ftj_body: Any, cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the chart runs it: no Secret permission (KUBETUNE_CHECK_SECRETS=false), children applied, never read."""
    ns = cluster.namespace
    namespaced_rules, cluster_rules = chart_rules(ns, cluster.plane.binaries.helm)
    assert not any("secrets" in rule["resources"] for rule in namespaced_rules + cluster_rules)
    monkeypatch.setenv("KUBETUNE_CHECK_SECRETS", "false")
    kube = cluster.kube
    identity = grant_chart_identity(cluster.plane, ns, cluster.tmp / "operator.kubeconfig")
    operator = make_operator(ns, identity.kubeconfig)
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
        revoke(cluster.plane, identity)
    user = identity.username
    denied, uris, writes = [], [], []
    for line in cluster.plane.audit_log.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("user", {}).get("username") != user:
            continue
        uris.append(entry["requestURI"])
        if entry["verb"] in ("create", "patch", "update"):
            writes.append(entry["requestURI"].split("?")[0])
        if entry.get("responseStatus", {}).get("code") == 403:
            denied.append(f"{entry['verb']} {entry['requestURI']}")
    assert denied == [], "the operator was denied:\n" + "\n".join(sorted(set(denied)))
    assert any(f"/namespaces/{ns}/workloads?" in uri for uri in uris)  # the queued run's Workload was looked up
    assert any(uri.endswith("/validatingadmissionpolicies/kubetune-trainer-status") for uri in uris)
    for plural in ("serviceaccounts", "roles", "rolebindings"):  # two runs, one identity, applied once
        assert [uri for uri in writes if f"/{plural}/" in uri] == [
            f"{api_root(plural)}/namespaces/{ns}/{plural}/kubetune-trainer"
        ]


def api_root(plural: str) -> str:
    return "/api/v1" if plural == "serviceaccounts" else "/apis/rbac.authorization.k8s.io/v1"
