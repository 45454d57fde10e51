"""Status is a pure function: one row per phase and reason, with the inputs a real cluster produces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubetune.api.problems import Problem
from kubetune.api.v1alpha1.finetunejob import FineTuneJob, FineTuneJobStatus
from kubetune.reconcile.observed import Observed
from kubetune.reconcile.status import compute_status, invalid_status, operator_fields

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SHA = "d" * 64


def ftj(status: dict[str, Any] | None = None, generation: int = 1, **spec: Any) -> FineTuneJob:
    body: dict[str, Any] = {
        "baseModel": {"uri": "hf://org/model"},
        "dataset": {"train": {"uri": "s3://d/train.jsonl"}},
        "method": {"type": "lora", "lora": {}},
        "objective": {"type": "sft"},
        "output": {"uri": "s3://o/"},
        "backoffLimit": 2,
    }
    body.update(spec)
    return FineTuneJob.model_validate(
        {"metadata": {"name": "j", "namespace": "ml", "generation": generation}, "spec": body, "status": status}
    )


def job(*conditions: tuple[str, str, str], suspend: bool = False, **status: Any) -> dict[str, Any]:
    return {
        "spec": {"suspend": suspend},
        "status": {
            **status,
            "conditions": [
                {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": "2026-11-29T11:59:00Z"}
                for t, r, m in conditions
            ],
        },
    }


def pod(phase: str, created: str = "2026-11-29T11:00:00Z", **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": f"p-{created}", "creationTimestamp": created}, "status": {"phase": phase, **status}}


def failed_pod(code: int, reason: str = "Error", message: str = "", created: str = "2026-11-29T11:00:00Z") -> dict:
    terminated = {"exitCode": code, "reason": reason, "message": message}
    return pod("Failed", created, containerStatuses=[{"name": "trainer", "state": {"terminated": terminated}}])


def waiting_pod(reason: str, message: str) -> dict[str, Any]:
    return pod(
        "Pending", containerStatuses=[{"name": "trainer", "state": {"waiting": {"reason": reason, "message": message}}}]
    )


UNSCHEDULABLE = pod(
    "Pending",
    conditions=[
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.",
        }
    ],
)
EVICTED = pod(
    "Failed",
    reason="Evicted",
    conditions=[{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}],
)


def cond(status: FineTuneJobStatus, kind: str) -> tuple[str, str, str]:
    found = next(c for c in status.conditions if c.type == kind)
    return found.status, found.reason, found.message


CASES: list[tuple[str, FineTuneJob, Observed, str, str, str]] = [
    ("no job yet", ftj(), Observed(), "Pending", "Creating", "creating"),
    ("missing secret", ftj(), Observed(missing_secrets=("hf-token",)), "Pending", "SecretNotFound", "hf-token"),
    ("missing pvc", ftj(), Observed(missing_pvcs=("data",)), "Pending", "PVCNotFound", "data"),
    ("no pods yet", ftj(), Observed(job=job(active=1)), "Pending", "Creating", "Job controller"),
    (
        "unschedulable",
        ftj(),
        Observed(job=job(active=1), pods=(UNSCHEDULABLE,)),
        "Pending",
        "Unschedulable",
        "Insufficient nvidia.com/gpu",
    ),
    (
        "image pull",
        ftj(),
        Observed(job=job(active=1), pods=(waiting_pod("ImagePullBackOff", "not found"),)),
        "Pending",
        "ImagePullBackOff",
        "not found",
    ),
    (
        "secret missing at start (the operator did not look it up)",
        ftj(),
        Observed(job=job(active=1), pods=(waiting_pod("CreateContainerConfigError", 'secret "x" not found'),)),
        "Pending",
        "SecretNotFound",
        "Secret x not found: create it",
    ),
    (
        "secret key missing at start",
        ftj(),
        Observed(
            job=job(active=1),
            pods=(waiting_pod("CreateContainerConfigError", "couldn't find key token in Secret ns/x"),),
        ),
        "Pending",
        "CreateContainerConfigError",
        "couldn't find key token",
    ),
    (
        "container creating",
        ftj(),
        Observed(job=job(active=1), pods=(waiting_pod("ContainerCreating", ""),)),
        "Initializing",
        "Initializing",
        "0/1",
    ),
    ("running", ftj(), Observed(job=job(active=1), pods=(pod("Running"),)), "Running", "Training", "1/1"),
    (
        "pods done, Job not yet complete",
        ftj(),
        Observed(job=job(succeeded=1), pods=(pod("Succeeded"),)),
        "Running",
        "Finishing",
        "waiting for the Job to complete",
    ),
    (
        "multi-node partly running",
        ftj(resources={"gpus": 1, "nodes": 2}),
        Observed(job=job(active=2), pods=(pod("Running"), pod("Pending"))),
        "Initializing",
        "Initializing",
        "1/2",
    ),
    (
        "running after eviction",
        ftj(),
        Observed(job=job(active=1), pods=(EVICTED, pod("Running", "2026-11-29T11:30:00Z"))),
        "Running",
        "Training",
        "",
    ),
    (
        "suspended",
        ftj(suspend=True),
        Observed(job=job(("Suspended", "JobSuspended", ""), suspend=True)),
        "Suspended",
        "Suspended",
        "spec.suspend",
    ),
    (
        "queued by kueue",
        ftj(resources={"queueName": "team-a"}),
        Observed(job=job(suspend=True)),
        "Queued",
        "WaitingForAdmission",
        "team-a",
    ),
    (
        "succeeded",
        ftj(),
        Observed(job=job(("Complete", "", ""), succeeded=1, completionTime="2026-11-29T11:58:00Z")),
        "Succeeded",
        "Completed",
        "finished",
    ),
    (
        "config error",
        ftj(),
        Observed(
            job=job(("Failed", "PodFailurePolicy", "Container trainer for pod ml/j exited with code 78"), failed=1),
            pods=(failed_pod(78, message="kubetune-trainer: config error: dataset has no text column"),),
        ),
        "Failed",
        "ConfigError",
        "dataset has no text column",
    ),
    (
        "backoff",
        ftj(),
        Observed(
            job=job(("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"), failed=3),
            pods=(failed_pod(1, message="CUDA error"),),
        ),
        "Failed",
        "BackoffLimitExceeded",
        "failed 3 times (backoffLimit 2); last exit code 1: CUDA error",
    ),
    (
        "oom",
        ftj(),
        Observed(job=job(("Failed", "BackoffLimitExceeded", ""), failed=3), pods=(failed_pod(137, "OOMKilled"),)),
        "Failed",
        "OOMKilled",
        "resources.memory",
    ),
    (
        "deadline",
        ftj(activeDeadlineSeconds=60),
        Observed(job=job(("Failed", "DeadlineExceeded", ""), failed=0)),
        "Failed",
        "DeadlineExceeded",
        "activeDeadlineSeconds=60",
    ),
    (
        "failure target first",
        ftj(),
        Observed(job=job(("FailureTarget", "PodFailurePolicy", "exit 78"), failed=1), pods=(failed_pod(78),)),
        "Failed",
        "ConfigError",
        "not retried",
    ),
]


@pytest.mark.parametrize("row", CASES, ids=[c[0] for c in CASES])
def test_phase_reason_message(row: tuple[str, FineTuneJob, Observed, str, str, str]) -> None:
    case, model, observed, phase, reason, message = row
    status = compute_status(model, observed, NOW, "j-train")
    assert (status.phase, status.reason) == (phase, reason), case
    assert message in (status.message or "")
    ready = cond(status, "Ready")
    assert ready[0] == ("True" if phase == "Running" else "False")
    assert ready[1] == reason
    assert cond(status, "Succeeded")[0] == ("True" if phase == "Succeeded" else "False")
    assert cond(status, "Failed")[0] == ("True" if phase == "Failed" else "False")
    assert cond(status, "Suspended")[0] == ("True" if phase in ("Suspended", "Queued") else "False")
    assert status.observed_generation == 1


def test_attempts_do_not_count_evictions_and_count_failures() -> None:
    running = compute_status(ftj(), Observed(job=job(active=1), pods=(EVICTED, pod("Running"))), NOW, "j")
    assert running.attempts == 1
    retried = compute_status(
        ftj(), Observed(job=job(active=1, failed=1), pods=(failed_pod(1), pod("Running"))), NOW, "j"
    )
    assert retried.attempts == 2
    failed = compute_status(ftj(), Observed(job=job(("Failed", "BackoffLimitExceeded", ""), failed=3)), NOW, "j")
    assert failed.attempts == 3


def test_times_and_transition_times_are_stable() -> None:
    first = compute_status(ftj(), Observed(job=job(active=1), pods=(pod("Running"),)), NOW, "j-train")
    assert first.start_time == "2026-11-29T12:00:00Z"
    assert first.job_name == "j-train"
    later = NOW + timedelta(minutes=5)
    again = compute_status(ftj(status=first.to_wire()), Observed(job=job(active=1), pods=(pod("Running"),)), later, "j")
    assert again.start_time == first.start_time
    assert again.conditions == first.conditions  # nothing changed: same transition times, so no write
    done = compute_status(
        ftj(status=again.to_wire()),
        Observed(job=job(("Complete", "", ""), succeeded=1, completionTime="2026-11-29T12:04:00Z")),
        later,
        "j",
    )
    assert done.completion_time == "2026-11-29T12:04:00Z"
    assert cond(done, "Ready")[0] == "False"
    ready_before = next(c for c in again.conditions if c.type == "Ready")
    ready_after = next(c for c in done.conditions if c.type == "Ready")
    assert ready_after.last_transition_time != ready_before.last_transition_time


def test_progress_and_result_are_carried_but_never_written() -> None:
    trainer_owned = {
        "progress": {"step": 5, "totalSteps": 10, "percent": 50},
        "result": {
            "artifactUri": "s3://o/j/",
            "sha256": SHA,
            "sizeBytes": 1,
            "gatePassed": False,
            "gateMessage": "legal-mc.accuracy 0.5 < 0.6",
            "baseModelRevision": "abc",
        },
    }
    status = compute_status(ftj(status=trainer_owned), Observed(job=job(("Complete", "", ""))), NOW, "j", "j")
    assert status.progress is not None
    assert status.progress.step == 5
    written = operator_fields(status)
    assert "progress" not in written
    assert "result" not in written
    assert cond(status, "Validated") == ("False", "GateFailed", "legal-mc.accuracy 0.5 < 0.6")
    assert written["adapterRef"] == {"name": "j"}
    assert written["resolved"] == {"baseModelRevision": "abc"}


def test_validated_pending_until_result_and_true_when_gate_passes() -> None:
    running = compute_status(ftj(), Observed(job=job(active=1), pods=(pod("Running"),)), NOW, "j")
    assert cond(running, "Validated")[:2] == ("Unknown", "AwaitingEvaluation")
    result = {"result": {"artifactUri": "s3://o/", "sha256": SHA, "sizeBytes": 1, "gatePassed": True}}
    done = compute_status(ftj(status=result), Observed(job=job(("Complete", "", ""))), NOW, "j")
    assert cond(done, "Validated")[:2] == ("True", "GatePassed")


def test_invalid_spec_is_a_failed_condition_not_an_exception() -> None:
    status = invalid_status(None, 3, [Problem("spec.method.type", 'Unsupported value: "x"')], NOW)
    assert status.phase == "Failed"
    assert status.reason == "InvalidSpec"
    assert "spec.method.type" in (status.message or "")
    assert status.observed_generation == 3


def test_secrets_never_reach_status() -> None:
    model = ftj(baseModel={"uri": "hf://org/model", "credentialsSecretRef": {"name": "hf-token", "key": "tok"}})
    status = compute_status(model, Observed(job=job(active=1), pods=(pod("Running"),)), NOW, "j")
    assert "credentials" not in str(operator_fields(status))
