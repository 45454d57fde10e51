"""Whether the preflight check holds back the training Job, what it found, and how status says so.

The training Job is created only after the preflight pod of the current spec passed. `spec_digest` ties
a report to the spec it checked, and the operator keeps the passing report in `status.preflight`, so an
unchanged spec is checked once, whatever restarts or re-creations follow. The report travels as the
pod's termination message: reading it costs no write by the pod.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from kubetune.api.v1alpha1.finetunejob import FineTuneJob
from kubetune.api.v1alpha1.pod_contract import TRAINER_CONTAINER
from kubetune.api.v1alpha1.preflight import PreflightReport, spec_digest
from kubetune.decisions.conditions import Status, Verdict
from kubetune.decisions.observed import Obj, Observed, creation_order, job_condition, terminated
from kubetune.decisions.pods import blocked, config_error, exit_detail, last_failed

Stage = Literal["off", "started", "cached", "missing", "running", "passed", "stale", "failed"]
"""off: spec.preflight.enabled is false; started: a training Job exists already (made by an operator
without preflight, or before an edit of the spec, which its pod then checks); cached: passed for this
spec before; missing: no preflight Job yet; stale: its pod checked another version of the spec (the Job
is re-created)."""
OPEN = frozenset({"off", "started", "cached", "passed"})
NO_REPORT = "the preflight pod passed without a report (a trainer image without --preflight support?)"


@dataclass(frozen=True)
class Gate:
    stage: Stage
    report: PreflightReport | None = None

    @property
    def open(self) -> bool:
        """The training Job may be applied."""
        return self.stage in OPEN


def cached_report(ftj: FineTuneJob) -> PreflightReport | None:
    """The stored report, if it is for the spec as it is now."""
    report = ftj.status.preflight if ftj.status else None
    return report if report is not None and report.spec_digest == spec_digest(ftj.spec) else None


def awaiting(ftj: FineTuneJob) -> bool:
    """Status holds no passed check of the spec as it is: its preflight Job is worth reading."""
    return ftj.spec.preflight.enabled and cached_report(ftj) is None


def pod_report(pods: tuple[Obj, ...]) -> PreflightReport | None:
    """The report the newest succeeded preflight pod left as its termination message."""
    done = [p for p in pods if p.get("status", {}).get("phase") == "Succeeded"]
    if not done:
        return None
    message = str((terminated(max(done, key=creation_order), TRAINER_CONTAINER) or {}).get("message") or "")
    try:
        return PreflightReport.model_validate_json(message.strip())
    except ValidationError:
        return None


def gate(ftj: FineTuneJob, observed: Observed) -> Gate:
    if not ftj.spec.preflight.enabled:
        return Gate("off")
    cached = cached_report(ftj)
    if cached is not None:
        return Gate("cached", cached)
    job = observed.preflight_job
    if job is not None and (job_condition(job, "Complete") or job_condition(job, "SuccessCriteriaMet")):
        digest = spec_digest(ftj.spec)
        report = pod_report(observed.preflight_pods) or PreflightReport(spec_digest=digest, summary=NO_REPORT)
        return Gate("passed" if report.spec_digest == digest else "stale", report)
    if observed.job is not None:
        return Gate("started", ftj.status.preflight if ftj.status else None)
    if job is None:
        return Gate("missing")
    if job_condition(job, "Failed") or job_condition(job, "FailureTarget"):
        return Gate("failed")
    return Gate("running")


def preflight_failure(observed: Observed) -> Verdict:
    """A config error found by the preflight pod reads as one found by a training pod; anything else says
    how to get past a check that cannot run."""
    job = observed.preflight_job or {}
    failed = job_condition(job, "Failed") or job_condition(job, "FailureTarget") or {}
    reason, message = str(failed.get("reason") or ""), str(failed.get("message") or "")
    found = config_error(observed.preflight_pods, reason, message)
    if found is not None:
        return found
    code, exit_reason, line = exit_detail(last_failed(observed.preflight_pods))
    detail = "; ".join(x for x in (reason, exit_reason, f"exit code {code}" if code is not None else "", line) if x)
    return Verdict(
        "Failed",
        "PreflightFailed",
        f"the preflight check could not run ({detail or message or 'the preflight Job failed'}): see kubectl logs "
        f"job/{job.get('metadata', {}).get('name', '')}; set spec.preflight.enabled: false to leave the checks to "
        "the training pod",
    )


def preflight_verdict(ftj: FineTuneJob, observed: Observed, checks: Gate) -> Verdict | None:
    """While the preflight holds the training Job back: its blocked pod, its failure, or that it runs."""
    if checks.stage == "failed":
        return preflight_failure(observed)
    if checks.open:
        return None
    return blocked(ftj, observed.preflight_pods, gpus=False) or Verdict(
        "Pending",
        "Preflight",
        "checking the spec against the base model's config and tokenizer and the data's format in a CPU pod; "
        "the GPU Job is created when the checks pass",
    )


def preflight_passed(checks: Gate, found: Verdict) -> tuple[Status, str, str]:
    """The PreflightPassed condition: the report's summary once passed, the failure, or why it is unknown."""
    if checks.open and checks.report is not None:
        return "True", "Passed", checks.report.summary or "the preflight checks passed"
    if checks.stage == "failed":
        return "False", found.reason, found.message
    if checks.stage == "off":
        return "Unknown", "Disabled", "spec.preflight.enabled is false: the training pod runs the checks"
    if checks.stage == "started":
        return "Unknown", "NotRun", "the training Job was created without a preflight of this spec: its pod checks it"
    return "Unknown", "Checking", "the preflight pod checks the spec before the GPU Job is created"
