"""Adapters: the one published from a finished FineTuneJob, and the merge Job for composed ones.

The published Adapter carries the full lineage (base revision, data digest, method, objective,
metrics, artifact digest) so it can be reproduced and audited without the FineTuneJob. Retention
is plain garbage collection: `DeleteWithJob` gives it an owner reference, `Retain` does not.
"""

from __future__ import annotations

from typing import Any

from kubetune.api.v1alpha1.adapter import Adapter, AdapterMethodSummary
from kubetune.api.v1alpha1.finetunejob import FineTuneJob, TrainResult
from kubetune.api.v1alpha1.methods import METHOD_FACTS
from kubetune.api.v1alpha1.pod_contract import (
    BASE_MODEL_LABEL,
    CACHE_DIR,
    CHECKPOINT_DIR,
    PVC_ROOT,
    SCRATCH_DIR,
    TRAINER_SERVICE_ACCOUNT,
)
from kubetune.api.v1alpha1.trainer_config import MergeInput, MergeTask, RuntimeSettings, StatusTarget, TrainerConfig
from kubetune.render import job, names, rbac
from kubetune.render.meta import Manifest, Owner, labels, owner_reference, propagated
from kubetune.render.names import label_value
from kubetune.render.trainer_config import pvc_claims, trainer_json
from kubetune.settings import OperatorSettings


def adapter_name(ftj: FineTuneJob) -> str:
    return ftj.spec.output.adapter_name or ftj.metadata.name or ""


def method_summary(ftj: FineTuneJob, result: TrainResult) -> AdapterMethodSummary:
    """What was trained; for `auto` the trainer reports what it resolved to."""
    method = ftj.spec.method
    kind = result.method or (method.type if method.type != "auto" else "lora")
    lora = getattr(method, "lora", None)
    facts = METHOD_FACTS.get(kind)
    if facts is not None and facts.family == "lora" and lora is not None:
        return AdapterMethodSummary.model_validate(
            {
                "type": kind,
                "rank": lora.rank,
                "alpha": lora.alpha,
                "targetModules": list(lora.target_modules),
                "quantization": getattr(method, "quantization", None),
            }
        )
    return AdapterMethodSummary.model_validate({"type": kind})


def constitution_lineage(ftj: FineTuneJob) -> dict[str, Any] | None:
    """The principles and model behind synthesised training data (dataset.constitution), if any."""
    constitution = ftj.spec.dataset.constitution
    if constitution is None:
        return None
    writer = f"adapter:{constitution.adapter_ref.name}" if constitution.adapter_ref else constitution.model
    return {"principles": list(constitution.principles), "model": writer or ftj.spec.base_model.uri}


def published_adapter(ftj: FineTuneJob, result: TrainResult) -> Manifest:
    spec = ftj.spec
    name = adapter_name(ftj)
    summary = method_summary(ftj, result)
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": ftj.metadata.namespace,
        "labels": {
            **labels(ftj.metadata.name or name, "adapter"),
            BASE_MODEL_LABEL: label_value(spec.base_model.uri.split("://", 1)[-1]),
        },
    }
    if spec.output.adapter_retention == "DeleteWithJob" and ftj.metadata.uid:
        metadata["ownerReferences"] = [owner_reference("FineTuneJob", ftj.metadata.name or "", ftj.metadata.uid)]
    revision = result.base_model_revision or spec.base_model.revision
    adapter = Adapter.model_validate(
        {
            "metadata": metadata,
            "spec": {
                "baseModel": {"uri": spec.base_model.uri, "revision": revision},
                "method": summary.to_wire(),
                "artifact": {
                    "uri": result.artifact_uri,
                    "format": "peft-safetensors" if METHOD_FACTS[summary.type].peft else "full-safetensors",
                    "sha256": result.sha256,
                    "sizeBytes": result.size_bytes,
                },
                "source": {
                    "fineTuneJob": {"name": ftj.metadata.name, "uid": ftj.metadata.uid},
                    "datasetDigest": result.dataset_digest,
                    "objective": spec.objective.type,
                    "constitution": constitution_lineage(ftj),
                },
                "metrics": dict(result.metrics),
                "gate": {
                    "passed": result.gate_passed,
                    "message": result.gate_message,
                    "publishUnvalidated": bool(spec.evaluation.gate and spec.evaluation.gate.publish_unvalidated),
                },
            },
        }
    )
    return adapter.to_wire()


def merge_output_uri(adapter: Adapter, first_source_uri: str, settings: OperatorSettings) -> str:
    """Next to the first source's artifact unless the operator configures a prefix."""
    name = adapter.metadata.name or "merged"
    if settings.merge_output_prefix:
        return f"{settings.merge_output_prefix.rstrip('/')}/{name}/"
    parent = first_source_uri.rstrip("/").rsplit("/", 1)[0]
    return f"{parent}/{name}/"


def merge_task(adapter: Adapter, sources: list[Adapter], settings: OperatorSettings) -> MergeTask:
    """Sources must already be checked (present, Ready, same base) by the reconcile layer."""
    merge = adapter.spec.merge
    if merge is None:
        raise ValueError(f"Adapter {adapter.metadata.name} has no merge block")
    by_name = {s.metadata.name: s for s in sources}
    inputs = []
    for ref in merge.sources:
        source = by_name[ref.name]
        artifact = (source.status.artifact if source.status else None) or source.spec.artifact
        inputs.append(
            MergeInput(
                name=ref.name,
                artifact_uri=artifact.uri if artifact else "",
                weight=ref.weight,
                method=source.spec.method,
            )
        )
    return MergeTask(
        base_model=adapter.spec.base_model,
        sources=inputs,
        combination=merge.combination,
        density=merge.density,
        output_uri=merge_output_uri(adapter, inputs[0].artifact_uri, settings),
    )


def merge_bundle(adapter: Adapter, sources: list[Adapter], settings: OperatorSettings) -> list[Manifest]:
    """The merge Job (with trainer.json), after its own ServiceAccount, Role (this Adapter's status only) and
    RoleBinding unless it runs as the namespace's identity (`merge_identity`): merge pods are named after their
    Job, which the operator writes into `status.jobName`, so the chart's policy confines them as it does trainers."""
    name = adapter.metadata.name or ""
    namespace = adapter.metadata.namespace or "default"
    task = merge_task(adapter, sources, settings)
    runtime = RuntimeSettings(
        cache_dir=CACHE_DIR,
        work_dir=SCRATCH_DIR,
        checkpoint_dir=CHECKPOINT_DIR,
        pvc_mount_root=PVC_ROOT,
        metrics_port=settings.trainer_metrics_port,
        progress_interval_seconds=settings.progress_interval_seconds,
        termination_grace_seconds=settings.termination_grace_seconds,
    )
    config = TrainerConfig(
        mode="merge",
        target=StatusTarget(kind="Adapter", namespace=namespace, name=name),
        merge=task,
        runtime=runtime,
    )
    identity = TRAINER_SERVICE_ACCOUNT if settings.namespace_trainer_identity else names.merge_job_name(name)
    owner = Owner("Adapter", name, namespace, adapter.metadata.uid)
    plan = job.PodPlan(
        job_name=names.merge_job_name(name),
        owner=owner,
        component="merge",
        image=settings.trainer_image,
        service_account=identity,
        trainer_json=trainer_json(config),
        runtime=runtime,
        pvc_claims=pvc_claims(task.to_wire(), writable_uris=(task.output_uri,)),
        backoff_limit=1,
        pod_annotations=propagated(adapter.metadata.annotations, settings.pod_annotation_prefixes),
    )
    if settings.namespace_trainer_identity:
        return [job.job(plan, settings)]
    annotations = settings.service_account_annotations_for(namespace)
    return [*rbac.identity(identity, owner, annotations, settings.image_pull_secrets), job.job(plan, settings)]


def merge_identity(adapter: Adapter, settings: OperatorSettings) -> list[Manifest]:
    """The namespace's identity for the merge Job (applied once per namespace), when the operator shares it."""
    if not settings.namespace_trainer_identity:
        return []
    return rbac.namespace_identity(adapter.metadata.namespace or "default", settings)
