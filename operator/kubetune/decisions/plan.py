"""Which side effects one reconcile of a FineTuneJob should have, decided from observed state only.

Level-based: the same observations always give the same plan, so a restart, a duplicate event or
a timer tick repeats nothing that already happened (children are applied by deterministic name).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from kubetune.api.v1alpha1.finetunejob import FineTuneJob, TrainResult
from kubetune.api.v1alpha1.pod_contract import ADAPTER_TRAINER_FIELDS
from kubetune.decisions import preflight
from kubetune.decisions.adapter_inputs import unresolved_adapter
from kubetune.decisions.observed import Obj, Observed, termination_result
from kubetune.decisions.status import TERMINAL


@dataclass(frozen=True)
class Plan:
    apply_children: bool
    publish_adapter: bool
    adapter_ref: str | None = None
    adapter_conflict: str | None = None
    recovered_result: TrainResult | None = None
    """The trainer finished but its `status.result` write never landed: the result from its termination message,
    to be written in its place (the next reconcile publishes it like any result)."""
    apply_preflight: bool = False
    """Create the preflight Job (with the run's identity): no training Job until it passes."""
    delete_preflight: bool = False
    """Its pod checked another version of the spec: delete it, the next reconcile creates it again."""
    identity_applied: bool = False
    """The preflight Job of this very spec exists: the run's identity was applied with it, and the training
    bundle need not apply it again (three write requests less per run)."""


def children_stale(ftj: FineTuneJob, job: Obj | None, desired_suspend: bool) -> bool:
    """Apply only when something can differ: no Job yet, a new generation, or suspend out of step."""
    if job is None:
        return True
    status = ftj.status
    if status is None or status.observed_generation != ftj.metadata.generation:
        return True
    return bool(job.get("spec", {}).get("suspend")) != desired_suspend


def _adapter_source(adapter: Obj) -> str | None:
    name = adapter.get("spec", {}).get("source", {}).get("fineTuneJob", {}).get("name")
    return str(name) if name else None


def plan(ftj: FineTuneJob, observed: Observed, adapter_name: str) -> Plan:
    status = ftj.status
    finished = status is not None and status.phase in TERMINAL and status.observed_generation == ftj.metadata.generation
    adapter_missing = unresolved_adapter(ftj.spec, observed.input_adapters) is not None
    waiting = observed.job is None and (bool(observed.missing_secrets or observed.missing_pvcs) or adapter_missing)
    checks = preflight.gate(ftj, observed)
    acting = not finished and not waiting
    apply_children = acting and checks.open
    create_checks, redo_checks = acting and checks.stage == "missing", checks.stage == "stale"
    result = status.result if status else None
    adapter = observed.adapter
    if adapter is not None and _adapter_source(adapter) not in (None, ftj.metadata.name):
        return Plan(
            apply_children,
            publish_adapter=False,
            adapter_conflict=f"Adapter {adapter_name} already exists and was produced by FineTuneJob "
            f"{_adapter_source(adapter)}: set spec.output.adapterName to another name",
            apply_preflight=create_checks,
            delete_preflight=redo_checks,
        )
    job_done = observed.job is not None and any(
        c.get("type") in ("Complete", "SuccessCriteriaMet") and c.get("status") == "True"
        for c in observed.job.get("status", {}).get("conditions") or []
    )
    recovered = termination_result(observed.pods) if job_done and result is None else None
    published_sha = (adapter or {}).get("spec", {}).get("artifact", {}).get("sha256")
    publish = result is not None and (job_done or (status is not None and status.phase == "Succeeded"))
    publish = publish and (adapter is None or published_sha != (result.sha256 if result else None))
    ref = adapter_name if (publish or adapter is not None) else None
    return Plan(
        apply_children,
        publish_adapter=publish,
        adapter_ref=ref,
        recovered_result=recovered,
        apply_preflight=create_checks,
        delete_preflight=redo_checks,
        identity_applied=checks.stage == "passed",
    )


def settled(kind: str, body: Obj) -> bool:
    """Nothing more will happen to it without a change of its own (which its watch event brings).

    Failed runs and succeeded runs that published (or have nothing to publish yet: the trainer's
    result write is itself an event) are settled, as are trained Adapters and finished merges.
    """
    status = body.get("status") or {}
    generation = body.get("metadata", {}).get("generation")
    if status.get("observedGeneration") != generation:
        return False
    phase = status.get("phase")
    if kind == "Adapter":
        return "merge" not in (body.get("spec") or {}) or phase in ("Ready", "Failed")
    if phase == "Failed":
        return True
    return phase == "Succeeded" and (bool(status.get("adapterRef")) or not status.get("result"))


def reconcile_inputs(kind: str, body: Obj) -> str:
    """A digest of what a reconcile of this object reacts to: its spec (generation), metadata, deletion and what
    the trainer reports that needs action (a FineTuneJob's result, a merged Adapter's artifact).

    The operator's own status writes and the trainer's periodic `progress` leave it unchanged, so those watch
    events need no reconcile: the work they would cause is a read-only no-op (Job and pod changes come through
    their own events).
    """
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    reported = ("result",) if kind == "FineTuneJob" else ADAPTER_TRAINER_FIELDS
    inputs = [meta.get(k) for k in ("generation", "deletionTimestamp", "labels", "annotations")]
    inputs += [status.get(field) for field in reported]
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]
