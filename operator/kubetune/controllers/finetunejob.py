"""One level-based reconcile of a FineTuneJob: read, decide (pure), apply, write status once.

The object is re-read here rather than taken from the triggering event, so whichever event (its
own change, a Job or pod change, a timer tick, a restart) triggers it, the outcome is the same.
Publishing applies the Adapter object only: its status is written by the Adapter controller alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime

from kubetune.api.problems import Problem, validate
from kubetune.api.v1alpha1.finetunejob import FineTuneJob, FineTuneJobStatus
from kubetune.api.v1alpha1.preflight import spec_digest
from kubetune.decisions import preflight
from kubetune.decisions.adapter_inputs import adapter_uris
from kubetune.decisions.conditions import timestamp
from kubetune.decisions.plan import children_stale, plan
from kubetune.decisions.status import compute_status, invalid_status, operator_fields
from kubetune.k8s.interface import KubeClient, Obj, path
from kubetune.k8s.observe import live_object, observe_finetunejob
from kubetune.k8s.writes import (
    AppliedOnce,
    ChildRejectedError,
    apply_all,
    emit_event,
    write_status,
    write_trainer_status,
)
from kubetune.render.adapter import adapter_name, published_adapter
from kubetune.render.bundle import bundle, job_suspend, preflight_bundle, shared_identity
from kubetune.render.names import job_name, preflight_job_name
from kubetune.render.trainer_config import pvc_claims
from kubetune.settings import OperatorSettings

log = logging.getLogger(__name__)
WARNING_REASONS = frozenset(
    {
        "AdapterNotFound",
        "Unschedulable",
        "ImagePullBackOff",
        "CreateContainerConfigError",
        "SecretNotFound",
        "PVCNotFound",
        "AdapterConflict",
        "AdapterGateFailed",
        "AdapterNotUsable",
        "GateFailed",
    }
)


@dataclass(frozen=True)
class Outcome:
    """What metrics and logs need from one reconcile: no per-object state kept elsewhere."""

    namespace: str
    name: str
    method: str
    before: str | None
    after: str
    reason: str
    created: str | None
    start_time: str | None
    completion_time: str | None


def lenient_status(body: Obj) -> FineTuneJobStatus | None:
    """The stored status, or None if it cannot be read (it is recomputed, never trusted blindly)."""
    raw = body.get("status")
    if not raw:
        return None
    try:
        return FineTuneJobStatus.model_validate(raw)
    except ValueError:
        log.warning("unreadable status on %s; recomputing it", body["metadata"].get("name"))
        return None


def event_type(
    before: str | None, before_reason: str | None, status: FineTuneJobStatus, lifecycle_events: bool
) -> str | None:
    """The Event a status change is worth, if any: Warning for a failure or a new reason that needs the user,
    Normal for another change of phase when `lifecycle_events` asks for them. A reason that only tells progress
    within a phase (Preflight -> Creating) is in status alone: an Event is one more write per run, and `kubectl
    describe` shows the status conditions beside the Events."""
    if status.phase == "Failed" or status.reason in WARNING_REASONS:
        changed = status.phase != before or status.reason != before_reason
        return "Warning" if changed else None
    return "Normal" if lifecycle_events and status.phase != before else None


def _declared_method(body: Obj) -> str:
    """The method type of a body that failed validation, for metrics: whatever shape its spec has."""
    spec = body.get("spec")
    method = spec.get("method") if isinstance(spec, dict) else None
    declared = method.get("type") if isinstance(method, dict) else None
    return declared if isinstance(declared, str) else "unknown"


def reconcile_finetunejob(
    kube: KubeClient,
    namespace: str,
    name: str,
    settings: OperatorSettings,
    now: datetime,
    *,
    applied: AppliedOnce | None = None,
) -> Outcome | None:
    """Returns what happened for metrics and logs; None when the object is gone or being deleted. `applied`: the
    process's memory of the namespace identities it applied (none: applied whenever a bundle is)."""
    body = live_object(kube, "FineTuneJob", namespace, name)
    if body is None:
        return None
    previous = lenient_status(body)
    document = {k: v for k, v in body.items() if k != "status"}
    ftj, problems = validate(FineTuneJob, document)
    before = previous.phase if previous else None
    before_reason = previous.reason if previous else None
    meta = body["metadata"]
    if ftj is None:
        status = invalid_status(previous, meta.get("generation"), problems, now)
        method = _declared_method(body)
    else:
        ftj = ftj.model_copy(update={"status": previous})
        try:
            status = _reconcile(kube, ftj, settings, now, applied or AppliedOnce())
        except ChildRejectedError as rejected:
            status = invalid_status(previous, meta.get("generation"), [Problem("", str(rejected))], now)
        method = ftj.spec.method.type
    wrote = write_status(kube, body, operator_fields(status))
    kind = event_type(before, before_reason, status, settings.lifecycle_events) if wrote else None
    if kind is not None:
        emit_event(
            kube,
            body,
            event_type=kind,
            reason=status.reason or status.phase,
            message=status.message or status.phase,
            timestamp=timestamp(now),
        )
    return Outcome(
        namespace=namespace,
        name=name,
        method=method,
        before=before,
        after=status.phase,
        reason=status.reason or "",
        created=meta.get("creationTimestamp"),
        start_time=status.start_time,
        completion_time=status.completion_time,
    )


def _reconcile(
    kube: KubeClient, ftj: FineTuneJob, settings: OperatorSettings, now: datetime, applied: AppliedOnce
) -> FineTuneJobStatus:
    name = ftj.metadata.name or ""
    job = job_name(name)
    target = adapter_name(ftj)
    claims = list(pvc_claims(ftj.spec.to_wire()))
    checks = preflight_job_name(name, spec_digest(ftj.spec)) if preflight.awaiting(ftj) else None
    observed = observe_finetunejob(
        kube, ftj, job, target, claims, check_secrets=settings.check_secrets, preflight_job_name=checks
    )
    decided = plan(ftj, observed, target)
    adapters = adapter_uris(ftj.spec, observed.input_adapters)
    if decided.apply_preflight:
        applied.apply(kube, shared_identity(ftj, settings))
        stored = apply_all(kube, preflight_bundle(ftj, settings, adapters), started=False)
        observed = replace(observed, preflight_job=stored.get("Job"))
    if decided.delete_preflight and checks is not None:
        kube.delete(path("Job", ftj.metadata.namespace or "default", checks))
    if decided.apply_children:
        current = observed.job.get("spec", {}).get("suspend") if observed.job else None
        if children_stale(ftj, observed.job, job_suspend(ftj, current)):
            started = ftj.status is not None and ftj.status.start_time is not None
            applied.apply(kube, shared_identity(ftj, settings))
            children = bundle(ftj, settings, current, adapters, with_identity=not decided.identity_applied)
            stored = apply_all(kube, children, started=started)
            observed = replace(observed, job=stored.get("Job"))
    if decided.recovered_result is not None:
        log.warning("%s: the trainer's result write never landed; recovered it from its termination message", name)
        progress = ftj.status.progress if ftj.status else None
        trainer_fields = {"result": decided.recovered_result.to_wire()}
        if progress is not None:
            trainer_fields["progress"] = progress.to_wire()
        write_trainer_status(kube, "FineTuneJob", ftj.metadata.namespace or "default", name, trainer_fields)
    if decided.publish_adapter and ftj.status is not None and ftj.status.result is not None:
        _publish(kube, ftj)
    return compute_status(ftj, observed, now, job, decided.adapter_ref, conflict=decided.adapter_conflict)


def _publish(kube: KubeClient, ftj: FineTuneJob) -> None:
    """Creates or updates the Adapter; its watch event brings the Adapter reconcile, which writes its status and
    posts its Event (ArtifactPublished, or why it is not Ready): no second Event from here."""
    result = ftj.status.result if ftj.status else None
    if result is not None:
        kube.apply(published_adapter(ftj, result))
