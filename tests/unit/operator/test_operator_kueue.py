"""Kueue in the operator: the priority-class label on the Job, the CEL rule, and the Queued status read from
Kueue's Workload. The Workload dicts are copied from Kueue v0.17 on the local control plane
(tests/integration/operator/test_operator_kueue.py makes the same states happen for real)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kubetune.api.problems import validate
from kubetune.api.v1alpha1.finetunejob import FineTuneJob
from kubetune.decisions.observed import Observed
from kubetune.decisions.queueing import queued
from kubetune.decisions.status import compute_status
from kubetune.render.bundle import bundle
from kubetune.settings import OperatorSettings

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 1, 6, 14, tzinfo=UTC)
QUOTA = "couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu in flavor kwok-gpu, "
PREEMPTED = (
    "Preempted to accommodate a workload (UID: 3fb684c6, JobUID: 441813da) due to prioritization in the "
    "ClusterQueue; preemptor path: /kubetune-dev; preemptee path: /kubetune-dev"
)


def cond(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


PENDING = {"status": {"conditions": [cond("QuotaReserved", "False", "Pending", QUOTA + "1 more needed")]}}
EVICTED = {
    "status": {
        "conditions": [
            cond("QuotaReserved", "False", "Pending", QUOTA + "8 more needed"),
            cond("Evicted", "True", "Preempted", PREEMPTED),
            cond("Admitted", "False", "NoReservation", "The workload has no reservation"),
            cond("Preempted", "True", "InClusterQueue", PREEMPTED),
            cond("Requeued", "True", "Preempted", PREEMPTED),
        ],
        "schedulingStats": {"evictions": [{"count": 1, "reason": "Preempted", "underlyingCause": ""}]},
    }
}
ADMITTED = {
    "status": {
        "conditions": [
            cond("QuotaReserved", "True", "QuotaReserved", "Quota reserved in ClusterQueue kubetune-dev"),
            cond("Admitted", "True", "Admitted", "The workload is admitted"),
        ]
    }
}
SUSPENDED_JOB = {"metadata": {"uid": "j-1"}, "spec": {"suspend": True}, "status": {}}


def ftj(suspend: bool = False, **resources: Any) -> FineTuneJob:
    return FineTuneJob.model_validate(
        {
            "metadata": {"name": "run", "namespace": "ml", "generation": 1},
            "spec": {
                "baseModel": {"uri": "hf://org/model"},
                "dataset": {"train": {"uri": "s3://d/train.jsonl"}},
                "method": {"type": "lora", "lora": {}},
                "objective": {"type": "sft"},
                "output": {"uri": "s3://o/"},
                "resources": resources,
                "suspend": suspend,
            },
        }
    )


def test_priority_class_label_is_on_the_job_where_kueue_reads_it_not_on_the_pods() -> None:
    run = ftj(queueName="team-a", workloadPriorityClassName="research-high")
    (job,) = [m for m in bundle(run, OperatorSettings()) if m["kind"] == "Job"]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "research-high"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert not {"kueue.x-k8s.io/priority-class", "kueue.x-k8s.io/queue-name"} & set(pod_labels)
    (plain,) = [m for m in bundle(ftj(queueName="team-a"), OperatorSettings()) if m["kind"] == "Job"]
    assert "kueue.x-k8s.io/priority-class" not in plain["metadata"]["labels"]


def test_a_priority_class_without_a_queue_is_rejected_with_the_fix() -> None:
    document = ftj(queueName="q").to_wire()
    del document["spec"]["resources"]["queueName"]
    document["spec"]["resources"]["workloadPriorityClassName"] = "research-high"
    model, problems = validate(FineTuneJob, document)
    assert model is None
    assert any("requires resources.queueName" in p.message for p in problems)


@pytest.mark.parametrize(
    ("workload", "reason", "words"),
    [
        (None, "WaitingForAdmission", "waiting for Kueue LocalQueue team-a to admit the workload"),
        (PENDING, "WaitingForAdmission", "team-a to admit the workload: " + QUOTA + "1 more needed"),
        (EVICTED, "Preempted", "preempted by Kueue (" + PREEMPTED + "); back in LocalQueue team-a"),
        (ADMITTED, "Admitted", "admitted by Kueue from LocalQueue team-a"),
    ],
    ids=["no workload yet", "no quota", "preempted", "admitted, job not yet resumed"],
)
def test_queued_status_says_what_kueue_says(workload: dict[str, Any] | None, reason: str, words: str) -> None:
    status = compute_status(ftj(queueName="team-a"), Observed(job=SUSPENDED_JOB, workload=workload), NOW, "run-train")
    assert (status.phase, status.reason) == ("Queued", reason)
    assert words in (status.message or "")
    assert queued("team-a", workload).message == status.message
    health = {c.type: c.status for c in status.conditions}  # it resumes by itself: kstatus InProgress
    assert (health["Ready"], health["Reconciling"], health["Stalled"], health["Suspended"]) == (
        "False",
        "True",
        "False",
        "True",
    )


def test_preempted_message_keeps_why_it_still_waits() -> None:
    assert queued("team-a", EVICTED).message.endswith(QUOTA + "8 more needed")


def test_spec_suspend_wins_over_the_queue() -> None:
    status = compute_status(ftj(True, queueName="team-a"), Observed(SUSPENDED_JOB, workload=PENDING), NOW, "run-train")
    assert (status.phase, status.reason) == ("Suspended", "Suspended")
