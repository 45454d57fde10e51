"""Kueue as a component of the local control plane: its manager, its webhooks on loopback and its queues.

These check the setup kubetune's Kueue tests stand on (tests/integration/operator/test_operator_kueue.py):
that the apiserver really calls Kueue's mutating and conversion webhooks at 127.0.0.1, that the ClusterQueue
holds exactly the fake GPU capacity, and that a plain queued Job is admitted and runs on the kwok nodes.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from kubetune_dev.controlplane import LocalControlPlane
from kubetune_dev.controlplane.client import AdminClient, condition, object_path
from kubetune_dev.controlplane.kueue import (
    CLUSTER_QUEUE,
    LOCAL_QUEUE,
    NAME_PREFIX,
    NAMESPACE,
    cluster_queue,
    local_queue,
)
from kubetune_dev.controlplane.kwok import GPU_NODE_COUNT, GPU_PRODUCT, GPU_PRODUCT_LABEL, GPUS_PER_NODE
from kubetune_dev.controlplane.testing import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.tier_b, pytest.mark.kueue]

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


def queued_job(namespace: str, name: str) -> dict[str, Any]:
    """A Job that asks to start right away but names a LocalQueue: Kueue's webhook must suspend it."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": {QUEUE_LABEL: LOCAL_QUEUE}},
        "spec": {
            "suspend": False,
            "template": {
                "metadata": {"annotations": {"kwok.kubetune.io/keep-running": "true"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "main", "image": "busybox", "resources": {"limits": {"nvidia.com/gpu": "2"}}}
                    ],
                },
            },
        },
    }


def test_cluster_queue_holds_the_fake_gpu_capacity(control_plane: LocalControlPlane, api: AdminClient) -> None:
    assert control_plane.alive()["kueue"]
    stored = api.get(object_path(cluster_queue()))
    active = condition(stored, "Active")
    assert active is not None
    assert active["status"] == "True"
    quotas = {r["name"]: r["nominalQuota"] for r in stored["spec"]["resourceGroups"][0]["flavors"][0]["resources"]}
    assert quotas["nvidia.com/gpu"] == str(GPU_NODE_COUNT * GPUS_PER_NODE)
    assert stored["spec"]["preemption"]["withinClusterQueue"] == "LowerPriority"


def test_webhooks_are_called_on_loopback_with_the_dev_clusters_certificate(
    control_plane: LocalControlPlane, api: AdminClient
) -> None:
    """Kueue's certificate rotator kept the certificate the dev cluster made: the CA it injected is ours."""
    setup = control_plane.kueue
    assert setup is not None
    ours = base64.b64encode(setup.pki.ca_cert.read_bytes()).decode()
    for kind in ("mutating", "validating"):
        config = api.get(
            f"/apis/admissionregistration.k8s.io/v1/{kind}webhookconfigurations/{NAME_PREFIX}{kind}-webhook-configuration"
        )
        assert config["webhooks"], kind
        for hook in config["webhooks"]:
            assert hook["clientConfig"]["url"].startswith(f"https://127.0.0.1:{setup.webhook_port}/")
            assert hook["clientConfig"]["caBundle"] == ours
    secret = api.get(f"/api/v1/namespaces/{NAMESPACE}/secrets/kueue-webhook-server-cert")
    assert secret["data"]["ca.crt"] == ours


def test_a_queued_job_is_suspended_by_the_webhook_then_admitted_onto_the_gpu_nodes(
    api: AdminClient, namespace: str
) -> None:
    api.apply(local_queue(namespace))
    created = api.create(f"/apis/batch/v1/namespaces/{namespace}/jobs", queued_job(namespace, "plain"))
    assert created["spec"]["suspend"] is True  # Kueue's mutating webhook on Jobs ran at creation

    job_url = f"/apis/batch/v1/namespaces/{namespace}/jobs/plain"
    wait_until("Kueue to admit and unsuspend the Job", lambda: api.get(job_url)["spec"]["suspend"] is False, 60)
    selector = api.get(job_url)["spec"]["template"]["spec"]["nodeSelector"]
    assert selector[GPU_PRODUCT_LABEL] == GPU_PRODUCT  # the ResourceFlavor's node labels, injected on admission

    def running() -> list[dict[str, Any]]:
        pods = api.get(f"/api/v1/namespaces/{namespace}/pods?labelSelector=job-name%3Dplain")["items"]
        return [p for p in pods if p["status"].get("phase") == "Running"]

    pod = wait_until("the admitted Job's pod Running on a kwok GPU node", running, 60)[0]
    assert pod["spec"]["nodeName"].startswith("kwok-gpu-")

    # Reading the Workload at v1beta1 makes the apiserver call Kueue's conversion webhook (/convert).
    old = api.get(f"/apis/kueue.x-k8s.io/v1beta1/namespaces/{namespace}/workloads")["items"]
    assert [w["apiVersion"] for w in old] == ["kueue.x-k8s.io/v1beta1"]
    assert old[0]["spec"]["queueName"] == LOCAL_QUEUE
    assert old[0]["status"]["admission"]["clusterQueue"] == CLUSTER_QUEUE
