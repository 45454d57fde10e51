"""FineTuneJob lifecycle against the real control plane: children, phases, failures, scheduling, suspend.

Admission by real Kueue: test_operator_kueue.py."""

from __future__ import annotations

import os
from typing import Any

import pytest

from kubetune.api.v1alpha1.finetunejob import FineTuneJob
from kubetune.render.bundle import bundle, shared_identity
from kubetune.settings import OperatorSettings
from kubetune_dev.controlplane.testing import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.tier_b]

ENV_SETTINGS = OperatorSettings.from_env(os.environ).model_copy(update={"namespace_trainer_identity": True})
"""As the operator decides at startup: the session installed the chart's trainer policy (conftest)."""
KEEP_RUNNING = {"kwok.kubetune.io/keep-running": "true"}


def subset(expected: Any, actual: Any, where: str = "") -> list[str]:
    """Paths where `actual` (what the API server stored) does not contain `expected` (what was rendered)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object, got {actual!r}"]
        out: list[str] = []
        for key, value in expected.items():
            out += subset(value, actual.get(key), f"{where}.{key}")
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: expected {expected!r}, got {actual!r}"]
        return [line for e, a in zip(expected, actual, strict=True) for line in subset(e, a, where)]
    return [] if expected == actual else [f"{where}: expected {expected!r}, got {actual!r}"]


def test_children_equal_render_and_phases_follow_pods(
    lifecycle_events: None, operator: Any, cluster: Any, ftj_factory: Any
) -> None:
    created = ftj_factory("run", KEEP_RUNNING)
    status = cluster.wait_phase("run", "Running")
    assert status["jobName"] == "run-train"
    assert status["attempts"] == 1
    assert status["observedGeneration"] == 1
    assert status["startTime"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    stored = cluster.get("FineTuneJob", "run")
    model = FineTuneJob.model_validate({k: v for k, v in stored.items() if k != "status"})
    for manifest in bundle(model, ENV_SETTINGS):
        actual = cluster.get(manifest["kind"], manifest["metadata"]["name"])
        assert actual is not None, f"{manifest['kind']} missing"
        assert subset(manifest, actual) == [], manifest["kind"]
        assert actual["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    for manifest in shared_identity(model, ENV_SETTINGS):  # the namespace's, owned by no run
        actual = cluster.get(manifest["kind"], manifest["metadata"]["name"])
        assert subset(manifest, actual) == [], manifest["kind"]
        assert "ownerReferences" not in actual["metadata"]
    # No change handlers: kopf writes no progress or last-handled-configuration annotations onto the object.
    assert set(stored["metadata"].get("annotations") or {}) == set(KEEP_RUNNING)
    assert not stored["metadata"].get("finalizers")  # deletion never waits for the operator
    events = [e["reason"] for e in cluster.list("Event") if e["involvedObject"]["name"] == "run"]
    assert "Training" in events


def test_failure_exit_code_retries_then_fails(operator: Any, cluster: Any, ftj_factory: Any) -> None:
    ftj_factory("crash", {"kwok.kubetune.io/exit-code": "1"}, backoffLimit=1)
    status = cluster.wait_phase("crash", "Failed")
    assert status["reason"] == "BackoffLimitExceeded"
    assert status["attempts"] == 2
    assert "backoffLimit 1" in status["message"]
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "BackoffLimitExceeded")
    assert status["completionTime"]


def test_config_error_fails_at_once(operator: Any, cluster: Any, ftj_factory: Any) -> None:
    ftj_factory("badcfg", {"kwok.kubetune.io/exit-code": "78"}, backoffLimit=3)
    status = cluster.wait_phase("badcfg", "Failed")
    assert status["reason"] == "ConfigError"
    assert status["attempts"] == 1
    assert "not retried" in status["message"]
    assert len(cluster.pods("badcfg-train")) == 1
    posted = [(e["type"], e["reason"]) for e in cluster.list("Event") if e["involvedObject"]["name"] == "badcfg"]
    assert posted == [("Warning", "ConfigError")], "the shipped default: an Event only where the user must act"


def test_evicted_pod_does_not_count_as_attempt(operator: Any, cluster: Any, ftj_factory: Any) -> None:
    ftj_factory("evict", KEEP_RUNNING)
    cluster.wait_phase("evict", "Running")
    (victim,) = cluster.pods("evict-train")
    now = victim["status"].get("startTime")
    victim["status"]["phase"] = "Failed"
    victim["status"]["reason"] = "Evicted"
    victim["status"]["conditions"] = [
        *victim["status"].get("conditions", []),
        {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler", "lastTransitionTime": now},
    ]
    cluster.kube.request("PUT", cluster.url("Pod", victim["metadata"]["name"], "status"), body=victim)
    replacement = wait_until(
        "a replacement pod",
        lambda: [
            p
            for p in cluster.pods("evict-train")
            if p["metadata"]["name"] != victim["metadata"]["name"] and p["status"].get("phase") == "Running"
        ],
        timeout=30,
    )
    assert replacement
    status = cluster.wait_phase("evict", "Running")
    job = cluster.get("Job", "evict-train")
    assert not job["status"].get("failed")
    assert status["attempts"] == 1


def test_too_many_gpus_pending_with_scheduler_message(operator: Any, cluster: Any, ftj_factory: Any) -> None:
    ftj_factory("huge", KEEP_RUNNING, resources={"gpus": 9})

    def unschedulable() -> dict[str, Any] | None:
        status = cluster.status("huge")
        return status if status.get("reason") == "Unschedulable" else None

    status = wait_until("Unschedulable", unschedulable, timeout=60)
    assert status["phase"] == "Pending"
    assert "Insufficient nvidia.com/gpu" in status["message"]


def test_suspend_and_resume(operator: Any, cluster: Any, ftj_factory: Any) -> None:
    ftj_factory("pause", KEEP_RUNNING)
    cluster.wait_phase("pause", "Running")
    patch = {"spec": {"suspend": True}}
    url = cluster.url("FineTuneJob", "pause")
    cluster.kube.request("PATCH", url, body=patch, content_type="application/merge-patch+json")
    status = cluster.wait_phase("pause", "Suspended")
    assert next(c for c in status["conditions"] if c["type"] == "Suspended")["status"] == "True"
    assert cluster.get("Job", "pause-train")["spec"]["suspend"] is True
    wait_until(
        "pods gone while suspended",
        lambda: not [p for p in cluster.pods("pause-train") if p["status"].get("phase") == "Running"],
        timeout=30,
    )
    cluster.kube.request("PATCH", url, body={"spec": {"suspend": False}}, content_type="application/merge-patch+json")
    status = cluster.wait_phase("pause", "Running")
    assert status["observedGeneration"] == 3


def test_spec_edit_before_start_recreates_the_job(operator: Any, cluster: Any, ftj_factory: Any) -> None:
    ftj_factory("edit", KEEP_RUNNING, resources={"gpus": 1, "queueName": "team-a"})
    cluster.wait_phase("edit", "Queued")
    first = cluster.get("Job", "edit-train")["metadata"]["uid"]
    patch = {"spec": {"resources": {"gpus": 2, "queueName": "team-a"}}}
    cluster.kube.request(
        "PATCH", cluster.url("FineTuneJob", "edit"), body=patch, content_type="application/merge-patch+json"
    )

    def recreated() -> dict[str, Any] | None:
        job = cluster.get("Job", "edit-train")
        return job if job and job["metadata"]["uid"] != first else None

    job = wait_until("the Job re-created with the new spec", recreated, timeout=60)
    limits = job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "2"
    assert job["spec"]["suspend"] is True
    status = cluster.wait_phase("edit", "Queued")
    assert status["observedGeneration"] == 2


def test_multi_node_indexed_job_runs_on_two_gpu_nodes(operator: Any, cluster: Any, ftj_factory: Any) -> None:
    ftj_factory(
        "multi",
        KEEP_RUNNING,
        method={"type": "full"},
        resources={"gpus": 8, "nodes": 2, "gpuProduct": "NVIDIA-H100-80GB-HBM3"},
    )
    status = cluster.wait_phase("multi", "Running")
    assert "2/2" in status["message"]
    service = cluster.get("Service", "multi-rdzv")
    assert service["spec"]["clusterIP"] == "None"
    pods = cluster.pods("multi-train")
    assert sorted(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods) == ["0", "1"]
    assert {p["spec"]["subdomain"] for p in pods} == {"multi-rdzv"}
    assert len({p["spec"]["nodeName"] for p in pods}) == 2  # 8 GPUs each: one pod per fake node
