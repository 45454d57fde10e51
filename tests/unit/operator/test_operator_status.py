"""Status is a pure function: one row per phase and reason, with the inputs a real cluster produces."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubetune.api.problems import Problem
from kubetune.api.v1alpha1.finetunejob import FineTuneJob, FineTuneJobStatus
from kubetune.decisions.observed import Observed, adapter_artifact_uri, termination_result
from kubetune.decisions.plan import plan
from kubetune.decisions.status import compute_status, invalid_status, operator_fields

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
    ("no job yet", ftj(), Observed(), "Pending", "Preflight", "checking the spec"),
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


# (Ready, Reconciling, Stalled) per case: what kstatus and the Argo CD health Lua read (decisions/health.py).
IN_PROGRESS = ("False", "True", "False")
RUNNING = ("True", "True", "False")
SETTLED = ("True", "False", "False")
STALLED = ("False", "False", "True")
HEALTH = {
    "no job yet": IN_PROGRESS,
    "missing secret": IN_PROGRESS,
    "secret missing at start (the operator did not look it up)": IN_PROGRESS,
    "missing pvc": IN_PROGRESS,
    "no pods yet": IN_PROGRESS,
    "unschedulable": IN_PROGRESS,
    "image pull": STALLED,
    "secret key missing at start": STALLED,
    "container creating": IN_PROGRESS,
    "running": RUNNING,
    "pods done, Job not yet complete": RUNNING,
    "multi-node partly running": IN_PROGRESS,
    "running after eviction": RUNNING,
    "suspended": SETTLED,
    "queued by kueue": IN_PROGRESS,
    "succeeded": SETTLED,
    "config error": STALLED,
    "backoff": STALLED,
    "oom": STALLED,
    "deadline": STALLED,
    "failure target first": STALLED,
}


def health(status: FineTuneJobStatus) -> tuple[str, str, str]:
    return cond(status, "Ready")[0], cond(status, "Reconciling")[0], cond(status, "Stalled")[0]


@pytest.mark.parametrize("row", CASES, ids=[c[0] for c in CASES])
def test_phase_reason_message(row: tuple[str, FineTuneJob, Observed, str, str, str]) -> None:
    case, model, observed, phase, reason, message = row
    status = compute_status(model, observed, NOW, "j-train")
    assert (status.phase, status.reason) == (phase, reason), case
    assert message in (status.message or "")
    assert health(status) == HEALTH[case]
    ready = cond(status, "Ready")
    assert ready[1] == reason
    assert ready[2] == status.message
    true_one = [c for c in status.conditions if c.type in ("Reconciling", "Stalled") and c.status == "True"]
    assert [c.reason for c in true_one] == ([] if HEALTH[case] == SETTLED else [reason])
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


def indexed(pod_body: dict[str, Any], index: int) -> dict[str, Any]:
    annotations = {"batch.kubernetes.io/job-completion-index": str(index)}
    return {**pod_body, "metadata": {**pod_body["metadata"], "name": f"p{index}", "annotations": annotations}}


def test_a_crash_of_a_two_node_run_is_one_failed_try() -> None:
    """Both pods of the try fail (the killed rank and the rank its loss took down): the Job counts 2, it is 1 try."""
    crashed = (indexed(failed_pod(137), 0), indexed(failed_pod(1), 1))
    rerun = (indexed(pod("Running", "2026-11-29T11:05:00Z"), 0), indexed(pod("Running", "2026-11-29T11:05:00Z"), 1))
    nodes = {"resources": {"nodes": 2, "gpus": 1}}
    two_nodes = job(active=2, failed=2)
    two_nodes["spec"]["completions"] = 2
    status = compute_status(ftj(**nodes), Observed(job=two_nodes, pods=crashed + rerun), NOW, "j")
    assert status.attempts == 2
    gone = compute_status(ftj(**nodes), Observed(job=two_nodes, pods=rerun), NOW, "j")
    assert gone.attempts == 2, "the Job's failed count, per node, stands in for failed pods that are gone"


def test_a_trainer_stopped_by_sigterm_is_no_failed_try() -> None:
    """Exit 143 (suspended, deleted or preempted pod that saved and stopped) is ignored by the pod failure policy."""
    stopped = failed_pod(143, message="")
    status = compute_status(ftj(), Observed(job=job(active=1), pods=(stopped, pod("Running"))), NOW, "j")
    assert status.attempts == 1
    suspended = compute_status(ftj(suspend=True), Observed(job=job(suspend=True), pods=(stopped,)), NOW, "j")
    assert (suspended.phase, suspended.attempts) == ("Suspended", 0)


def succeeded_pod(message: str, created: str) -> dict[str, Any]:
    terminated = {"exitCode": 0, "reason": "Completed", "message": message}
    return pod("Succeeded", created, containerStatuses=[{"name": "trainer", "state": {"terminated": terminated}}])


def test_the_result_is_read_from_the_newest_termination_message_that_has_one() -> None:
    old = {"artifactUri": "s3://o/a/", "sha256": "a" * 64, "sizeBytes": 1}
    new = {"artifactUri": "s3://o/b/", "sha256": "b" * 64, "sizeBytes": 2, "gatePassed": False}
    pods = (
        succeeded_pod("kubetune-result: " + json.dumps(old), "2026-11-29T11:00:00Z"),
        succeeded_pod("noise\nkubetune-result: " + json.dumps(new) + "\n", "2026-11-29T11:05:00Z"),
        failed_pod(1, message="kubetune-result: {}", created="2026-11-29T11:09:00Z"),
    )
    found = termination_result(pods)
    assert found is not None
    assert (found.sha256, found.gate_passed) == ("b" * 64, False)
    assert termination_result((succeeded_pod("kubetune-result: {not json", "2026-11-29T11:00:00Z"),)) is None
    assert termination_result((succeeded_pod("training finished", "2026-11-29T11:00:00Z"),)) is None
    done = job(("Complete", "CompletionsReached", ""), succeeded=1)
    assert plan(ftj(), Observed(job=done, pods=pods), "j").recovered_result == found
    has_result = ftj(status={"result": old})
    assert plan(has_result, Observed(job=done, pods=pods), "j").recovered_result is None, "the trainer's write wins"
    running = plan(ftj(), Observed(job=job(active=1), pods=pods), "j")
    assert running.recovered_result is None, "only once the Job is complete"


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
    assert health(done) == SETTLED

    def transition(status: FineTuneJobStatus, kind: str) -> str | None:
        return next(c.last_transition_time for c in status.conditions if c.type == kind)

    assert transition(done, "Ready") == transition(again, "Ready")  # still True: the time stays
    assert transition(done, "Reconciling") != transition(again, "Reconciling")


def test_the_moment_between_the_pods_success_and_the_jobs_complete_is_no_status_change() -> None:
    """One write fewer per run: a Training run whose pods just succeeded keeps its status until the Job controller
    records Complete; seen first that way (the operator restarted meanwhile) it says Finishing."""
    running = compute_status(ftj(), Observed(job=job(active=1), pods=(pod("Running"),)), NOW, "j-train")
    finished = Observed(job=job(succeeded=1), pods=(pod("Succeeded"),))
    later = NOW + timedelta(seconds=30)
    held = compute_status(ftj(status=running.to_wire()), finished, later, "j-train")
    assert operator_fields(held) == operator_fields(running)
    assert compute_status(ftj(), finished, NOW, "j-train").reason == "Finishing"


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
    assert health(status) == STALLED
    assert "spec.method.type" in (status.message or "")
    assert status.observed_generation == 3


def test_secrets_never_reach_status() -> None:
    model = ftj(baseModel={"uri": "hf://org/model", "credentialsSecretRef": {"name": "hf-token", "key": "tok"}})
    status = compute_status(model, Observed(job=job(active=1), pods=(pod("Running"),)), NOW, "j")
    assert "credentials" not in str(operator_fields(status))


GATED = {"suites": [{"name": "heldout", "metric": "perplexity"}], "gate": {"minScores": {"heldout": 9.0}}}
MISSED = {
    "result": {
        "artifactUri": "s3://o/j/",
        "sha256": SHA,
        "sizeBytes": 1,
        "gatePassed": False,
        "gateMessage": "gate failed: heldout.perplexity 12 is above the limit 9",
    }
}
DONE = Observed(job=job(("Complete", "", ""), succeeded=1))


def test_a_missed_gate_is_a_stalled_run_whose_training_succeeded() -> None:
    status = compute_status(ftj(status=MISSED, evaluation=GATED), DONE, NOW, "j", "j")
    assert (status.phase, status.reason) == ("Succeeded", "GateFailed")
    assert "heldout.perplexity 12 is above the limit 9" in (status.message or "")
    assert "publishUnvalidated" in (status.message or "")
    assert health(status) == STALLED
    assert cond(status, "Succeeded")[:2] == ("True", "Completed")
    assert cond(status, "Validated")[:2] == ("False", "GateFailed")


def test_publish_unvalidated_opts_in_to_a_ready_run() -> None:
    opted = {**GATED, "gate": {**GATED["gate"], "publishUnvalidated": True}}
    status = compute_status(ftj(status=MISSED, evaluation=opted), DONE, NOW, "j", "j")
    assert (status.phase, status.reason) == ("Succeeded", "PublishedUnvalidated")
    assert health(status) == SETTLED
    assert cond(status, "Validated")[:2] == ("False", "GateFailed")


def test_an_adapter_name_conflict_stalls_the_run_but_not_a_failure() -> None:
    conflict = "Adapter j already exists and was produced by FineTuneJob other"
    running = compute_status(ftj(), Observed(job=job(active=1), pods=(pod("Running"),)), NOW, "j", conflict=conflict)
    assert (running.phase, running.reason, running.message) == ("Running", "AdapterConflict", conflict)
    assert health(running) == STALLED
    failed = compute_status(ftj(), Observed(job=job(("Failed", "DeadlineExceeded", ""))), NOW, "j", conflict=conflict)
    assert failed.reason == "DeadlineExceeded"


RLHF = {
    "objective": {"type": "rlhf", "rlhf": {"algorithm": "grpo", "reward": {"adapterRef": {"name": "rm"}}}},
    "dataset": {"train": {"uri": "s3://d/prompts.jsonl"}, "format": "prompt"},
}


def reward_adapter(gate: dict[str, Any] | None, phase: str = "Ready") -> dict[str, Any]:
    spec: dict[str, Any] = {"artifact": {"uri": "s3://o/rm/"}}
    if gate is not None:
        spec["gate"] = gate
    return {"spec": spec, "status": {"phase": phase}}


@pytest.mark.parametrize(
    ("gate", "phase", "reason", "usable"),
    [
        (None, "Ready", None, True),
        ({"passed": True}, "Ready", None, True),
        ({"passed": False, "message": "too weak", "publishUnvalidated": True}, "Ready", None, True),
        # A status written before the gate was read (or by hand) does not make a rejected adapter usable.
        ({"passed": False, "message": "too weak"}, "Ready", "AdapterGateFailed", False),
        ({"passed": False, "message": "too weak"}, "Failed", "AdapterGateFailed", False),
        ({"passed": True}, "Pending", "AdapterNotReady", False),
    ],
)
def test_a_reward_adapter_its_gate_rejected_is_never_used(
    gate: dict[str, Any] | None, phase: str, reason: str | None, usable: bool
) -> None:
    model = ftj(**RLHF)
    observed = Observed(input_adapters={"rm": reward_adapter(gate, phase)})
    assert (adapter_artifact_uri(observed.input_adapters["rm"]) is not None) is usable
    assert plan(model, observed, "j").apply_preflight is usable
    status = compute_status(model, observed, NOW, "j")
    if usable:
        assert status.reason == "Preflight"
        return
    assert (status.phase, status.reason) == ("Pending", reason)
    if reason == "AdapterGateFailed":
        assert "too weak" in (status.message or "")
        assert health(status) == STALLED
    else:
        assert health(status) == IN_PROGRESS


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_a_terminal_phase_holds_for_its_generation_when_the_job_is_gone(phase: str) -> None:
    """The Job deleted after the run, or never accepted by the API server: only a new generation starts over."""
    before = {"phase": phase, "reason": "Done", "message": "it ended", "observedGeneration": 1}
    held = compute_status(ftj(before), Observed(), NOW, "j-train")
    assert (held.phase, held.reason, held.message) == (phase, "Done", "it ended")
    edited = compute_status(ftj(before, generation=2), Observed(), NOW, "j-train")
    assert (edited.phase, edited.reason) == ("Pending", "Preflight")
