"""FineTuneJob status as a pure function of the object, what was observed, and the time.

The phase comes from the Job first (terminal conditions, suspension), then from its pods
(scheduling, image pulls, running); before the Job exists, from the preflight Job and its pod.
Every non-happy phase has a reason and a message that says what to change. `progress` and `result`
belong to the trainer: they are carried over untouched.
"""

from __future__ import annotations

from datetime import datetime

from kubetune.api.problems import Problem
from kubetune.api.v1alpha1.common import LocalObjectRef
from kubetune.api.v1alpha1.finetunejob import FineTuneJob, FineTuneJobStatus, ResolvedInputs, TrainResult
from kubetune.api.v1alpha1.pod_contract import FINETUNEJOB_TRAINER_FIELDS
from kubetune.api.v1alpha1.preflight import PreflightReport
from kubetune.decisions.adapter_inputs import unresolved_adapter
from kubetune.decisions.conditions import Conditions, Status, Verdict, timestamp
from kubetune.decisions.health import GATE_FAILED, health_conditions
from kubetune.decisions.observed import (
    Obj,
    Observed,
    failed_tries,
    is_active,
    job_condition,
)
from kubetune.decisions.pods import blocked, config_error, exit_detail, last_failed, secret_not_found
from kubetune.decisions.preflight import Gate, gate, preflight_passed, preflight_verdict
from kubetune.decisions.queueing import queued

TERMINAL = ("Succeeded", "Failed")


def missing_inputs(ftj: FineTuneJob, observed: Observed) -> Verdict | None:
    if observed.missing_secrets:
        return secret_not_found(", ".join(observed.missing_secrets))
    if observed.job is None:
        unresolved = unresolved_adapter(ftj.spec, observed.input_adapters)
        if unresolved is not None:
            return unresolved
    if observed.missing_pvcs:
        names = ", ".join(observed.missing_pvcs)
        return Verdict(
            "Pending",
            "PVCNotFound",
            f"PersistentVolumeClaim {names} not found: create it or fix the pvc:// URI; "
            "the run starts as soon as it exists",
        )
    return None


def failure(ftj: FineTuneJob, observed: Observed, job_reason: str, job_message: str) -> Verdict:
    """Why the Job failed, from its condition and the last trainer container that was not disrupted."""
    found = config_error(observed.pods, job_reason, job_message)
    if found is not None:
        return found
    code, reason, message = exit_detail(last_failed(observed.pods))
    if job_reason == "DeadlineExceeded":
        return Verdict(
            "Failed",
            "DeadlineExceeded",
            f"the run exceeded activeDeadlineSeconds={ftj.spec.active_deadline_seconds}: raise it, "
            "or lower training.epochs/maxSteps",
        )
    if reason == "OOMKilled":
        return Verdict(
            "Failed",
            "OOMKilled",
            "the trainer ran out of memory (OOMKilled): raise resources.memory, lower training.batchSize, "
            "enable training.gradientCheckpointing, or use method qlora",
        )
    if job_reason == "BackoffLimitExceeded":
        detail = f"; last exit code {code}" if code is not None else ""
        detail += f": {message}" if message else ""
        return Verdict(
            "Failed",
            "BackoffLimitExceeded",
            f"the trainer failed {ftj.spec.backoff_limit + 1} times (backoffLimit {ftj.spec.backoff_limit}){detail}",
        )
    return Verdict("Failed", job_reason or "JobFailed", job_message or message or "the training Job failed")


def _pod_verdict(ftj: FineTuneJob, observed: Observed) -> Verdict:
    """An active Job: blocked pods first (they need the user), then how many trainers run."""
    found = blocked(ftj, observed.pods)
    if found is not None:
        return found
    nodes = ftj.spec.resources.nodes
    active = [p for p in observed.pods if is_active(p)]
    running = [p for p in active if p.get("status", {}).get("phase") == "Running"]
    if running and len(running) >= nodes:
        return Verdict("Running", "Training", f"{len(running)}/{nodes} trainer pod(s) running")
    if active:
        return Verdict("Initializing", "Initializing", f"{len(running)}/{nodes} trainer pod(s) running; starting")
    if any(p.get("status", {}).get("phase") == "Succeeded" for p in observed.pods):
        # The pods are done but the Job controller has not recorded Complete yet: not back to Pending.
        return Verdict("Running", "Finishing", "the trainer finished; waiting for the Job to complete")
    return Verdict("Pending", "Creating", "waiting for the Job controller to create the trainer pods")


def verdict(ftj: FineTuneJob, observed: Observed, checks: Gate) -> Verdict:
    job = observed.job
    if job is None:
        return (
            missing_inputs(ftj, observed)
            or preflight_verdict(ftj, observed, checks)
            or Verdict("Pending", "Creating", "creating the training Job")
        )
    if job_condition(job, "Complete") or job_condition(job, "SuccessCriteriaMet"):
        return Verdict("Succeeded", "Completed", "training finished")
    failed = job_condition(job, "Failed") or job_condition(job, "FailureTarget")
    if failed:
        return failure(ftj, observed, str(failed.get("reason") or ""), str(failed.get("message") or ""))
    if job.get("spec", {}).get("suspend"):
        if ftj.spec.suspend:
            return Verdict("Suspended", "Suspended", "suspended by spec.suspend: set it to false to resume")
        return queued(str(ftj.spec.resources.queue_name), observed.workload)
    pods = _pod_verdict(ftj, observed)
    if pods.phase != "Running":
        return missing_inputs(ftj, observed) or pods
    return pods


def attempts(job: Obj | None, pods: tuple[Obj, ...], phase: str, previous: int) -> int:
    """Failed tries plus the current one. A try is one pod per node: a crash of an N-node run fails N pods
    (the Job's `failed` counts N) but is one try. Pods the Job's policy ignores (disruptions, a trainer stopped
    by SIGTERM) are no failed try; the Job's count, per node, covers failed pods that are gone."""
    if job is None:
        return previous
    status = job.get("status", {})
    nodes = max(int(job.get("spec", {}).get("completions") or 1), 1)
    failed = max(failed_tries(pods), -(-int(status.get("failed") or 0) // nodes))
    # the pods, not the Job's `active`, which lags behind a pod that just failed (that try is over)
    trying = any(is_active(p) or p.get("status", {}).get("phase") == "Succeeded" for p in pods)
    current = 1 if (trying or phase in ("Running", "Succeeded")) else 0
    if phase == "Failed":
        current = 0 if failed else 1
    return max(previous, failed + current)


def gate_validated(passed: bool, message: str | None) -> tuple[Status, str, str]:
    """The Validated condition of a run or Adapter whose gate was checked."""
    if passed:
        return "True", "GatePassed", "the adapter passed the evaluation gate"
    return "False", GATE_FAILED, message or "the adapter missed the evaluation gate thresholds"


def validated(result: TrainResult | None) -> tuple[Status, str, str]:
    if result is None:
        return "Unknown", "AwaitingEvaluation", "the evaluation gate is checked when training finishes"
    return gate_validated(result.gate_passed, result.gate_message)


def delivered(ftj: FineTuneJob, found: Verdict, result: TrainResult | None, conflict: str | None) -> Verdict:
    """What the run delivers, for Ready, Stalled and status.reason: a finished run whose adapter cannot
    be used (its name is taken, or it missed the gate) is not Ready, although training Succeeded."""
    if conflict and found.phase != "Failed":
        return Verdict(found.phase, "AdapterConflict", conflict)
    if found.phase != "Succeeded" or result is None or result.gate_passed:
        return found
    detail = result.gate_message or "the adapter missed the evaluation gate thresholds"
    gate = ftj.spec.evaluation.gate
    if gate is not None and gate.publish_unvalidated:
        return Verdict(
            "Succeeded",
            "PublishedUnvalidated",
            f"training finished; {detail}; the Adapter is published Ready anyway (evaluation.gate.publishUnvalidated)",
        )
    return Verdict(
        "Succeeded",
        GATE_FAILED,
        f"training finished but the adapter is not published Ready: {detail}; retrain, or set "
        "evaluation.gate.publishUnvalidated: true to publish it anyway",
    )


def compute_status(
    ftj: FineTuneJob,
    observed: Observed,
    now: datetime,
    job_name: str,
    adapter_ref: str | None = None,
    *,
    conflict: str | None = None,
) -> FineTuneJobStatus:
    previous = ftj.status or FineTuneJobStatus()
    checks = gate(ftj, observed)
    job = observed.job
    found = verdict(ftj, observed, checks)
    if job is None and previous.phase in TERMINAL and previous.observed_generation == ftj.metadata.generation:
        # Final for this generation, Job or no Job (deleted after the run, or never accepted by the API server):
        # only a spec change, which is a new generation, starts over.
        found = Verdict(previous.phase, previous.reason or previous.phase, previous.message or previous.phase)
    elif found.reason == "Finishing" and previous.phase == "Running" and previous.reason == "Training":
        # The Job controller records Complete within moments of its pods' success: a status of its own for that
        # moment would be one more write per run, and no one acts on it.
        found = Verdict("Running", "Training", previous.message or found.message)
    return _build(
        previous,
        found,
        delivered(ftj, found, previous.result, conflict),
        ftj.metadata.generation,
        now,
        job=job,
        job_name=job_name if job is not None else previous.job_name,
        adapter_ref=adapter_ref,
        attempts_now=attempts(job, observed.pods, found.phase, previous.attempts),
        preflight=preflight_passed(checks, found),
        report=checks.report if checks.open and checks.report is not None else previous.preflight,
    )


def invalid_status(
    previous: FineTuneJobStatus | None, generation: int | None, problems: list[Problem], now: datetime
) -> FineTuneJobStatus:
    """A body the API server accepted but the operator cannot use (e.g. a CRD older than the operator)."""
    message = "; ".join(p.line("spec") if not p.path else f"{p.path}: {p.message}" for p in problems)[:1900]
    found = Verdict("Failed", "InvalidSpec", f"{message} (fix the spec and re-create the FineTuneJob)")
    before = previous or FineTuneJobStatus()
    return _build(
        before,
        found,
        found,
        generation,
        now,
        job=None,
        job_name=before.job_name,
        adapter_ref=None,
        attempts_now=before.attempts,
        preflight=("Unknown", "InvalidSpec", "the spec is not valid, so it was not checked"),
        report=before.preflight,
    )


def _build(
    previous: FineTuneJobStatus,
    found: Verdict,
    outcome: Verdict,
    generation: int | None,
    now: datetime,
    *,
    job: Obj | None,
    job_name: str | None,
    adapter_ref: str | None,
    attempts_now: int,
    preflight: tuple[Status, str, str],
    report: PreflightReport | None,
) -> FineTuneJobStatus:
    phase = found.phase
    start = previous.start_time
    if start is None and phase in ("Running", "Succeeded"):
        start = timestamp(now)
    done = previous.completion_time
    if done is None and phase in TERMINAL:
        done = (job or {}).get("status", {}).get("completionTime") or timestamp(now)
    book = Conditions(previous.conditions, generation, now)
    result = previous.result
    conditions = [
        *health_conditions(book, outcome),
        book.flag("Succeeded", phase == "Succeeded", found),
        book.flag("Failed", phase == "Failed", found),
        book.flag("Suspended", phase in ("Suspended", "Queued"), found),
        book.make("PreflightPassed", *preflight),
        book.make("Validated", *validated(result)),
    ]
    resolved = previous.resolved
    if result is not None and (result.base_model_revision or result.dataset_digest):
        resolved = ResolvedInputs(base_model_revision=result.base_model_revision, dataset_digest=result.dataset_digest)
    return previous.model_copy(
        update={
            "phase": phase,
            "conditions": conditions,
            "observed_generation": generation,
            "job_name": job_name,
            "attempts": attempts_now,
            "start_time": start,
            "completion_time": done,
            "resolved": resolved,
            "adapter_ref": LocalObjectRef(name=adapter_ref) if adapter_ref else previous.adapter_ref,
            "preflight": report,
            "reason": outcome.reason,
            "message": outcome.message[:2048],
        }
    )


def operator_fields(status: FineTuneJobStatus) -> dict[str, object]:
    """The part of status the operator writes: all but the trainer's fields, which stay with its field manager."""
    return {key: value for key, value in status.to_wire().items() if key not in FINETUNEJOB_TRAINER_FIELDS}
