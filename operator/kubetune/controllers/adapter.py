"""One level-based reconcile of an Adapter: published ones are Ready unless their evaluation gate rejected
them; merged ones run a merge Job.

Bad merge input (missing, not Ready, gate-rejected or different-base sources) ends in a condition on the Adapter
and an Event, and the merge Job is simply not created, so nothing retries in a loop.
This is the only operator code that writes an Adapter's status; the merge Job's trainer writes
`status.artifact` of a merged Adapter, and the operator never re-sends it.
"""

from __future__ import annotations

from datetime import datetime

from kubetune.api.problems import validate
from kubetune.api.v1alpha1.adapter import Adapter
from kubetune.decisions.adapter_status import (
    adapter_status,
    invalid_adapter_status,
    merge_verdict,
    operator_fields,
    source_problem,
)
from kubetune.decisions.conditions import Verdict, timestamp
from kubetune.k8s.interface import KubeClient, Obj, path
from kubetune.k8s.observe import job_and_pods, live_object
from kubetune.k8s.writes import AppliedOnce, ChildRejectedError, apply_all, emit_event, write_status
from kubetune.render.adapter import merge_bundle, merge_identity
from kubetune.render.names import merge_job_name
from kubetune.settings import OperatorSettings


def reconcile_adapter(
    kube: KubeClient,
    namespace: str,
    name: str,
    settings: OperatorSettings,
    now: datetime,
    *,
    applied: AppliedOnce | None = None,
) -> str | None:
    """Returns the Adapter's phase after the reconcile (None if it is gone); `applied` as for FineTuneJobs."""
    body = live_object(kube, "Adapter", namespace, name)
    if body is None:
        return None
    adapter, problems = validate(Adapter, body)
    if adapter is None:
        adapter, _ = validate(Adapter, {k: v for k, v in body.items() if k != "status"})
    if adapter is None:
        status = invalid_adapter_status(body["metadata"].get("generation"), problems, now)
    elif adapter.spec.merge is None:
        status = adapter_status(adapter, now)
    else:
        status = adapter_status(
            adapter,
            now,
            verdict=_merge(kube, adapter, settings, applied or AppliedOnce()),
            job_name=merge_job_name(name),
        )
    before = (body.get("status") or {}).get("phase")
    spec = body.get("spec")
    wrote = write_status(kube, body, operator_fields(status, merged=isinstance(spec, dict) and "merge" in spec))
    kind = "Warning" if status.phase == "Failed" else "Normal"
    if wrote and status.phase != before and (kind == "Warning" or settings.lifecycle_events):
        reason = next((c.reason for c in status.conditions if c.type == "Ready"), status.phase)
        emit_event(
            kube,
            body,
            event_type=kind,
            reason=reason or status.phase,
            message=status.message or status.phase,
            timestamp=timestamp(now),
        )
    return status.phase


def _sources(kube: KubeClient, adapter: Adapter) -> dict[str, Obj | None]:
    namespace = adapter.metadata.namespace or "default"
    merge = adapter.spec.merge
    return {ref.name: kube.get(path("Adapter", namespace, ref.name)) for ref in (merge.sources if merge else [])}


def _merge(kube: KubeClient, adapter: Adapter, settings: OperatorSettings, applied: AppliedOnce) -> Verdict:
    namespace = adapter.metadata.namespace or "default"
    name = adapter.metadata.name or ""
    job, pods = job_and_pods(kube, namespace, merge_job_name(name))
    sources = _sources(kube, adapter)
    if job is None:
        problem = source_problem(adapter, sources)
        if problem is not None:
            return problem
        models: list[Adapter] = []
        for source_name, source in sources.items():
            model, issues = validate(Adapter, source or {})
            if model is None:
                detail = "; ".join(f"{p.path}: {p.message}" for p in issues)
                return Verdict("Failed", "SourceInvalid", f"merge source {source_name} cannot be read: {detail}")
            models.append(model)
        try:
            applied.apply(kube, merge_identity(adapter, settings))
            stored = apply_all(kube, merge_bundle(adapter, models, settings))
        except ChildRejectedError as rejected:
            return Verdict("Failed", "InvalidSpec", f"{rejected}: fix the spec")
        job = stored.get("Job")
    return merge_verdict(adapter, sources, job, pods)
