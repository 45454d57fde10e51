"""Adapter status: published adapters are Ready at once; merged ones follow their sources and merge Job.

Bad merge input (a missing or not-Ready source, or sources on another base model) becomes a
condition with a message, never an exception, so one wrong Adapter cannot crash-loop the operator.
"""

from __future__ import annotations

from datetime import datetime

from kubetune.api.v1alpha1.adapter import Adapter, AdapterStatus
from kubetune.api.v1alpha1.finetunejob import TrainResult
from kubetune.api.v1alpha1.pod_contract import ADAPTER_TRAINER_FIELDS, TRAINER_CONTAINER
from kubetune.api.v1alpha1.trainer_config import CONFIG_ERROR_EXIT_CODE
from kubetune.decisions.conditions import Conditions, Verdict
from kubetune.decisions.observed import Obj, creation_order, job_condition, terminated
from kubetune.decisions.status import validated


def source_problem(adapter: Adapter, sources: dict[str, Obj | None]) -> Verdict | None:
    """Why the merge cannot run yet (Pending) or at all (Failed); None when every source is usable."""
    merge = adapter.spec.merge
    if merge is None:
        return None
    namespace = adapter.metadata.namespace
    revisions: dict[str, str] = {}
    for ref in merge.sources:
        source = sources.get(ref.name)
        if source is None:
            return Verdict(
                "Pending",
                "SourceNotFound",
                f"merge source Adapter {ref.name} not found in namespace {namespace}: create it or fix merge.sources",
            )
        base = source.get("spec", {}).get("baseModel", {})
        if base.get("uri") != adapter.spec.base_model.uri:
            return Verdict(
                "Failed",
                "BaseModelMismatch",
                f"merge source {ref.name} was trained on {base.get('uri')}, not {adapter.spec.base_model.uri}: "
                "adapters can only be merged on the same base model; remove it from merge.sources",
            )
        revisions[ref.name] = str(base.get("revision") or "")
        phase = source.get("status", {}).get("phase")
        if phase != "Ready":
            return Verdict(
                "Pending",
                "SourceNotReady",
                f"merge source Adapter {ref.name} is {phase or 'not Ready'}: the merge starts when it is Ready",
            )
    if len(set(revisions.values())) > 1:
        listed = ", ".join(f"{k}@{v}" for k, v in revisions.items())
        return Verdict(
            "Failed",
            "BaseModelMismatch",
            f"merge sources are on different revisions of {adapter.spec.base_model.uri} ({listed}): "
            "merge adapters trained on the same revision",
        )
    return None


def _merge_failure(job: Obj, pods: tuple[Obj, ...]) -> Verdict:
    failed = [p for p in pods if p.get("status", {}).get("phase") == "Failed"]
    done = terminated(max(failed, key=creation_order), TRAINER_CONTAINER) if failed else None
    message = str((done or {}).get("message") or "").strip().splitlines()
    line = message[-1] if message else ""
    if done and done.get("exitCode") == CONFIG_ERROR_EXIT_CODE:
        return Verdict("Failed", "ConfigError", line or "the merge configuration was rejected")
    failed_condition = job_condition(job, "Failed") or {}
    reason = str(failed_condition.get("reason") or "MergeFailed")
    return Verdict("Failed", reason, line or str(failed_condition.get("message") or "the merge Job failed"))


def merge_verdict(adapter: Adapter, sources: dict[str, Obj | None], job: Obj | None, pods: tuple[Obj, ...]) -> Verdict:
    if job is None:
        return source_problem(adapter, sources) or Verdict("Merging", "MergeStarting", "creating the merge Job")
    if job_condition(job, "Complete"):
        artifact = adapter.status.artifact if adapter.status else None
        if artifact is None:
            return Verdict("Failed", "NoArtifact", "the merge Job finished without reporting an artifact")
        return Verdict("Ready", "Merged", f"merged into {artifact.uri}")
    if job_condition(job, "Failed") or job_condition(job, "FailureTarget"):
        return _merge_failure(job, pods)
    return Verdict("Merging", "Merging", "the merge Job is running")


def adapter_status(
    adapter: Adapter,
    now: datetime,
    *,
    verdict: Verdict | None = None,
    job_name: str | None = None,
    result: TrainResult | None = None,
) -> AdapterStatus:
    """Status of a published adapter (no verdict: Ready) or a merged one (its merge verdict)."""
    previous = adapter.status or AdapterStatus()
    found = verdict or Verdict("Ready", "ArtifactPublished", "the adapter weights are published")
    book = Conditions(previous.conditions, adapter.metadata.generation, now)
    if result is not None:
        gate = book.make("Validated", *validated(result))
    else:
        kept = next((c for c in previous.conditions if c.type == "Validated"), None)
        gate = kept or book.make("Validated", "Unknown", "NotEvaluated", "no evaluation gate was applied")
    conditions = [book.make("Ready", "True" if found.phase == "Ready" else "False", found.reason, found.message), gate]
    return previous.model_copy(
        update={
            "phase": found.phase,
            "conditions": conditions,
            "observed_generation": adapter.metadata.generation,
            "job_name": job_name or previous.job_name,
            "artifact": previous.artifact or adapter.spec.artifact,
            "message": found.message[:2048],
        }
    )


def operator_fields(status: AdapterStatus, *, merged: bool) -> dict[str, object]:
    """The part of an Adapter's status the operator writes: all of it, except `artifact` of a merged
    Adapter, which the merge Job's trainer writes (one writer per field, as for FineTuneJobs)."""
    return {k: v for k, v in status.to_wire().items() if not (merged and k in ADAPTER_TRAINER_FIELDS)}
