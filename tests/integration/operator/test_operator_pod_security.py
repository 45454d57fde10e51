"""Restricted Pod Security, enforced by the real API server's built-in PodSecurity admission: in a namespace
labelled `pod-security.kubernetes.io/enforce=restricted`, every pod the operator renders is admitted (the Job
controller creates them and kwok runs them), while a pod that is not restricted-compliant is rejected."""

from __future__ import annotations

from typing import Any

import pytest

from kubetune.k8s.interface import KubeError
from kubetune_dev.controlplane.testing import Kubectl, wait_until
from support.operator_objects import adapter

pytestmark = [pytest.mark.integration, pytest.mark.tier_b]

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
KEEP_RUNNING = {"kwok.kubetune.io/keep-running": "true"}
RUNS: dict[str, dict[str, Any]] = {
    "single-lora": {},
    "multinode-ddp": {"resources": {"gpus": 1, "nodes": 2}, "distributed": {"strategy": "ddp"}},
    "multinode-zero3": {
        "method": {"type": "full"},
        "resources": {"gpus": 1, "nodes": 2, "sharedMemory": "1Gi"},
        "distributed": {"strategy": "deepspeed", "zeroStage": 3, "offload": "cpu"},
    },
    "qlora": {"method": {"type": "qlora", "lora": {"rank": 8}}},
}
NON_COMPLIANT_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "plain"},
    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
}


def test_restricted_namespace_admits_every_pod_the_operator_renders(
    operator: Any, cluster: Any, ftj_factory: Any, kubectl: Kubectl, namespace: str
) -> None:
    kubectl("label", "namespace", namespace, *(f"{key}={value}" for key, value in RESTRICTED.items()))
    with pytest.raises(KubeError) as rejected:  # the control: admission is really enforced here
        cluster.kube.create(cluster.url("Pod"), NON_COMPLIANT_POD)
    assert rejected.value.status == 403
    assert 'violates PodSecurity "restricted:latest"' in str(rejected.value)

    for name, spec in RUNS.items():
        ftj_factory(name, KEEP_RUNNING, **spec)
    for source in ("legal", "tax"):
        cluster.kube.create(cluster.url("Adapter"), adapter(source, namespace))
    for source in ("legal", "tax"):
        cluster.wait_phase(source, "Ready", kind="Adapter")
    merge = {"sources": [{"name": "legal"}, {"name": "tax"}], "combination": "linear"}
    cluster.kube.create(cluster.url("Adapter"), adapter("merged", namespace, merge=merge))

    expected = {f"{name}-train": spec.get("resources", {}).get("nodes", 1) for name, spec in RUNS.items()}
    expected["merged-merge"] = 1
    for job, pods in expected.items():
        wait_until(f"{pods} pod(s) of Job {job} admitted", lambda job=job, pods=pods: admitted(cluster, job, pods))
    for name in RUNS:
        cluster.wait_phase(name, "Running")


def admitted(cluster: Any, job: str, pods: int) -> bool:
    """All pods of the Job exist; a pod the admission refused fails at once with the API server's reason."""
    refused = [e["message"] for e in cluster.list("Event") if e.get("reason") == "FailedCreate"]
    assert not refused, refused
    return len(cluster.pods(job)) == pods
