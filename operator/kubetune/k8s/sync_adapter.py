"""One level-based reconcile of an Adapter: published ones are Ready unless their evaluation gate rejected
them; merged ones run a merge Job.

Bad merge input (missing, not Ready, gate-rejected or different-base sources) ends in a condition on the Adapter
and an Event, and the merge Job is simply not created, so nothing retries in a loop.
"""

from __future__ import annotations

import logging
from datetime import datetime

from kubetune.api.problems import validate
from kubetune.api.v1alpha1.adapter import Adapter
from kubetune.k8s.client import Kube, Obj, path
from kubetune.k8s.observe import job_and_pods
from kubetune.k8s.writes import apply_all, emit_event, write_status
from kubetune.reconcile.adapter_status import adapter_status, invalid_adapter_status, merge_verdict, source_problem
from kubetune.reconcile.conditions import Verdict, timestamp
from kubetune.render.adapter import merge_bundle
from kubetune.render.names import merge_job_name
from kubetune.settings import OperatorSettings

log = logging.getLogger(__name__)


def sync_adapter(kube: Kube, namespace: str, name: str, settings: OperatorSettings, now: datetime) -> str | None:
    """Returns the Adapter's phase after the reconcile (None if it is gone)."""
    body = kube.get(path("Adapter", namespace, name))
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    adapter, problems = validate(Adapter, body)
    if adapter is None:
        adapter, _ = validate(Adapter, {k: v for k, v in body.items() if k != "status"})
    if adapter is None:
        status = invalid_adapter_status(body["metadata"].get("generation"), problems, now)
    elif adapter.spec.merge is None:
        status = adapter_status(adapter, now)
    else:
        status = adapter_status(adapter, now, verdict=_merge(kube, adapter, settings), job_name=merge_job_name(name))
    before = (body.get("status") or {}).get("phase")
    wrote = write_status(kube, body, status.to_wire())
    if wrote and status.phase != before:
        kind = "Warning" if status.phase == "Failed" else "Normal"
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


def _sources(kube: Kube, adapter: Adapter) -> dict[str, Obj | None]:
    namespace = adapter.metadata.namespace or "default"
    merge = adapter.spec.merge
    return {ref.name: kube.get(path("Adapter", namespace, ref.name)) for ref in (merge.sources if merge else [])}


def _merge(kube: Kube, adapter: Adapter, settings: OperatorSettings) -> Verdict:
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
        stored = apply_all(kube, merge_bundle(adapter, models, settings))
        job = stored.get("Job")
    return merge_verdict(adapter, sources, job, pods)
