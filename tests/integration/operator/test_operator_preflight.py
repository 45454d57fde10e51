"""The preflight Job on the real control plane (kwok plays its pod, steered by kwok.kubetune.io/preflight-*
annotations): it runs first, its report reaches status, and only a pass creates the GPU Job."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubetune.api.v1alpha1.finetunejob import FineTuneJob
from kubetune.api.v1alpha1.preflight import PreflightReport, spec_digest
from kubetune_dev.controlplane.testing import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.tier_b]

PREFLIGHT_PODS = "app.kubernetes.io/component=preflight"
TARGETS_ERROR = (
    "kubetune-trainer: config error: method.lora.targetModules: q_projx not found in llama; linear modules are "
    "down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj (or use all-linear)"
)


def report_for(body: dict[str, Any]) -> str:
    """What a preflight pod of this FineTuneJob leaves as its termination message."""
    spec = FineTuneJob.model_validate(body).spec
    report = PreflightReport(
        spec_digest=spec_digest(spec),
        method="lora",
        memory_estimate_bytes=17 * 2**30,
        device_memory_bytes=80 * 2**30,
        memory_fit="Fits",
        summary="lora: 17.00 GiB per device (...); fits 80.00 GiB",
    )
    return json.dumps(report.to_wire())


def test_the_preflight_job_runs_first_and_the_gpu_job_follows_its_pass(
    lifecycle_events: None, operator: Any, cluster: Any, ftj_factory: Any, ftj_body: Any
) -> None:
    body = ftj_body("checked", cluster.namespace, resources={"gpus": 1, "gpuProduct": "NVIDIA-H100-80GB-HBM3"})
    annotations = {
        "kwok.kubetune.io/preflight-run-for": "4s",
        "kwok.kubetune.io/preflight-message": report_for(body),
        "kwok.kubetune.io/keep-running": "true",
    }
    ftj_factory("checked", annotations, resources=body["spec"]["resources"])

    def checking() -> dict[str, Any] | None:
        status = cluster.status("checked")
        return status if status.get("reason") == "Preflight" else None

    wait_until("the Preflight phase", checking, timeout=60)
    (job,) = cluster.list("Job", f"{PREFLIGHT_PODS},kubetune.io/job=checked")
    assert cluster.get("Job", "checked-train") is None, "no GPU Job while the check runs"
    (pod,) = cluster.pods(job["metadata"]["name"])
    assert "nvidia.com/gpu" not in str(pod["spec"]["containers"][0].get("resources"))
    assert pod["spec"]["containers"][0]["command"][-1] == "--preflight"

    status = cluster.wait_phase("checked", "Running", timeout=90)
    assert status["preflight"]["memoryFit"] == "Fits"
    assert status["preflight"]["summary"].endswith("fits 80.00 GiB")
    passed = next(c for c in status["conditions"] if c["type"] == "PreflightPassed")
    assert (passed["status"], passed["reason"]) == ("True", "Passed")
    training = cluster.get("Job", "checked-train")
    finished = cluster.get("Job", job["metadata"]["name"])["status"]["completionTime"]
    assert training["metadata"]["creationTimestamp"] >= finished
    mine = [e for e in cluster.list("Event") if e["involvedObject"]["name"] == "checked"]
    events = [e["reason"] for e in sorted(mine, key=lambda e: e["firstTimestamp"])]  # listed in (random) name order
    assert events.index("Preflight") < events.index("Training")


def test_a_failed_preflight_fails_the_run_and_no_gpu_job_is_created(
    operator: Any, cluster: Any, ftj_factory: Any
) -> None:
    annotations = {
        "kwok.kubetune.io/preflight-exit-code": "78",
        "kwok.kubetune.io/preflight-message": TARGETS_ERROR,
    }
    ftj_factory("wrong", annotations, method={"type": "lora", "lora": {"targetModules": ["q_projx"]}})
    status = cluster.wait_phase("wrong", "Failed", timeout=60)
    assert status["reason"] == "ConfigError"
    assert status["message"].startswith(TARGETS_ERROR)
    failed = next(c for c in status["conditions"] if c["type"] == "PreflightPassed")
    assert (failed["status"], failed["reason"]) == ("False", "ConfigError")
    assert cluster.get("Job", "wrong-train") is None
    assert [p["metadata"]["labels"]["app.kubernetes.io/component"] for p in cluster.list("Pod")] == ["preflight"]
