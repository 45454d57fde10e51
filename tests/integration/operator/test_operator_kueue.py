"""FineTuneJobs queued through real Kueue (v0.17, started with the control plane; `make test-kueue`).

The ClusterQueue's quota is exactly the two fake 8-GPU nodes, so a 2-node x 8-GPU run fills it. Everything
that is asserted about admission, eviction and Workloads is Kueue's own doing; the operator only creates
the Job suspended with the queue labels and reports what Kueue says.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kubetune.settings import OperatorSettings
from kubetune_dev.controlplane.client import AdminClient, condition
from kubetune_dev.controlplane.kueue import CLUSTER_QUEUE, local_queue, workload_priority_class
from kubetune_dev.controlplane.testing import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.tier_b, pytest.mark.kueue]

ENV_SETTINGS = OperatorSettings.from_env(os.environ)
KEEP_RUNNING = {"kwok.kubetune.io/keep-running": "true"}
WHOLE_QUOTA = {"gpus": 8, "nodes": 2}  # both kwok nodes: the ClusterQueue's whole nvidia.com/gpu quota
FULL = {"type": "full"}


@pytest.fixture
def queue(api: AdminClient, namespace: str) -> str:
    stored = api.apply(local_queue(namespace))
    return str(stored["metadata"]["name"])


@pytest.fixture(scope="module")
def priorities(api: AdminClient) -> Iterator[dict[str, str]]:
    classes = {
        "low": workload_priority_class("kubetune-test-low", 100),
        "high": workload_priority_class("kubetune-test-high", 1000),
    }
    for body in classes.values():
        api.apply(body)
    yield {level: body["metadata"]["name"] for level, body in classes.items()}
    for body in classes.values():
        api.delete(f"/apis/kueue.x-k8s.io/v1beta2/workloadpriorityclasses/{body['metadata']['name']}")


def workloads(cluster: Any, job: dict[str, Any]) -> list[dict[str, Any]]:
    """Kueue's Workloads for this Job, found the way the operator finds them (the job-uid label)."""
    url = f"/apis/kueue.x-k8s.io/v1beta2/namespaces/{cluster.namespace}/workloads"
    return cluster.kube.list(url, label_selector=f"kueue.x-k8s.io/job-uid={job['metadata']['uid']}")


def true(obj: dict[str, Any], kind: str) -> bool:
    found = condition(obj, kind)
    return bool(found and found["status"] == "True")


def queued_because(cluster: Any, name: str, reason: str, words: str) -> dict[str, Any]:
    def reported() -> dict[str, Any] | None:
        status = cluster.status(name)
        ok = status.get("phase") == "Queued" and status.get("reason") == reason and words in status.get("message", "")
        return status if ok else None

    try:
        return wait_until(f"{name} Queued ({reason}, '{words}')", reported, timeout=90)
    except AssertionError as error:
        raise AssertionError(f"{error}\nlast status: {cluster.status(name)}") from None


def test_queued_while_the_quota_is_used_and_admitted_when_it_frees(
    operator: Any, cluster: Any, ftj_factory: Any, queue: str
) -> None:
    ftj_factory("hog", KEEP_RUNNING, method=FULL, resources={**WHOLE_QUOTA, "queueName": queue})
    cluster.wait_phase("hog", "Running", timeout=90)
    ftj_factory("next", KEEP_RUNNING, resources={"gpus": 1, "queueName": queue})

    status = queued_because(cluster, "next", "WaitingForAdmission", "insufficient unused quota for nvidia.com/gpu")
    assert queue in status["message"]
    (checked,) = cluster.list("Job", "app.kubernetes.io/component=preflight,kubetune.io/job=next")
    assert true(checked, "Complete"), "the preflight ran while the GPU quota was used up: it is not queued"
    assert not [k for k in checked["metadata"]["labels"] if k.startswith("kueue.x-k8s.io/")]
    job = cluster.get("Job", "next-train")
    assert job["spec"]["suspend"] is True
    assert cluster.pods("next-train") == []
    (workload,) = workloads(cluster, job)
    assert not true(workload, "QuotaReserved")
    assert workload["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]

    cluster.kube.request("DELETE", cluster.url("FineTuneJob", "hog"))  # its Job and Workload go with it
    status = cluster.wait_phase("next", "Running", timeout=90)
    job = cluster.get("Job", "next-train")
    assert job["spec"]["suspend"] is False
    suspend_owners = [f["manager"] for f in job["metadata"]["managedFields"] if "f:suspend" in str(f["fieldsV1"])]
    assert suspend_owners == ["kueue"]  # Kueue unsuspended it; the operator only created it suspended
    (workload,) = workloads(cluster, job)
    assert true(workload, "Admitted")
    assert workload["status"]["admission"]["clusterQueue"] == CLUSTER_QUEUE
    pods = cluster.pods("next-train")
    assert pods
    assert all(p["spec"]["nodeName"].startswith("kwok-gpu-") for p in pods)

    version = cluster.get("FineTuneJob", "next")["metadata"]["resourceVersion"]
    time.sleep(3 * ENV_SETTINGS.resync_seconds)  # a few resyncs: the operator must not suspend it again
    assert cluster.get("Job", "next-train")["spec"]["suspend"] is False
    assert cluster.get("FineTuneJob", "next")["metadata"]["resourceVersion"] == version


def test_deleting_a_queued_run_removes_its_workload(operator: Any, cluster: Any, ftj_factory: Any, queue: str) -> None:
    ftj_factory("hog", KEEP_RUNNING, method=FULL, resources={**WHOLE_QUOTA, "queueName": queue})
    cluster.wait_phase("hog", "Running", timeout=90)
    ftj_factory("doomed", KEEP_RUNNING, resources={"gpus": 1, "queueName": queue})
    queued_because(cluster, "doomed", "WaitingForAdmission", "insufficient unused quota")
    job = cluster.get("Job", "doomed-train")
    (workload,) = workloads(cluster, job)

    cluster.kube.request("DELETE", cluster.url("FineTuneJob", "doomed"))
    url = f"/apis/kueue.x-k8s.io/v1beta2/namespaces/{cluster.namespace}/workloads/{workload['metadata']['name']}"
    wait_until("the queued run's Workload to be garbage-collected", lambda: cluster.kube.get(url) is None, 60)
    assert cluster.get("Job", "doomed-train") is None


def test_a_higher_priority_run_preempts_a_lower_one(
    operator: Any, cluster: Any, ftj_factory: Any, queue: str, priorities: dict[str, str]
) -> None:
    low = {**WHOLE_QUOTA, "queueName": queue, "workloadPriorityClassName": priorities["low"]}
    ftj_factory("low", KEEP_RUNNING, method=FULL, resources=low)
    running = cluster.wait_phase("low", "Running", timeout=90)
    assert running["attempts"] == 1
    ftj_factory(
        "high", KEEP_RUNNING, resources={"gpus": 8, "queueName": queue, "workloadPriorityClassName": priorities["high"]}
    )

    cluster.wait_phase("high", "Running", timeout=90)
    status = queued_because(cluster, "low", "Preempted", "preempted by Kueue")
    assert status["attempts"] == 1  # an eviction is not a failed try
    assert cluster.get("Job", "low-train")["spec"]["suspend"] is True
    wait_until("the preempted run's pods gone", lambda: not cluster.pods("low-train"), 60)
    (evicted,) = workloads(cluster, cluster.get("Job", "low-train"))
    assert condition(evicted, "Evicted")["reason"] == "Preempted"
    assert not true(evicted, "QuotaReserved")
    (admitted,) = workloads(cluster, cluster.get("Job", "high-train"))
    assert admitted["spec"]["priority"] == 1000
    assert true(admitted, "Admitted")

    cluster.kube.request("DELETE", cluster.url("FineTuneJob", "high"))  # the quota frees: Kueue readmits "low"
    readmitted = cluster.wait_phase("low", "Running", timeout=90)
    assert readmitted["attempts"] == 1, "a preemption consumes no retry"
    assert not cluster.get("Job", "low-train")["status"].get("failed")
