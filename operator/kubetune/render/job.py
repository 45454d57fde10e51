"""The batch/v1 Job that runs the trainer (or the merge), with everything a GPU run needs.

The pod failure policy is the retry contract: a disruption (eviction, preemption, node drain) is
not the trainer's fault and is ignored, and so is exit code 143, the trainer stopped by SIGTERM (the
pod deleted or its Job suspended, e.g. by Kueue) after saving a checkpoint; exit code 78 means the spec
or data is wrong and retrying cannot help, so the Job fails at once; anything else counts against
`backoffLimit`. `terminationGracePeriodSeconds` is the time a SIGTERM leaves the trainer to save. A
multi-node run succeeds when index 0 succeeds (see `rank_zero_success_policy`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubetune.api.v1alpha1.common import SecretKeyRef
from kubetune.api.v1alpha1.pod_contract import (
    CACHE_DIR,
    COMPLETION_INDEX_ANNOTATION,
    CONFIG_ANNOTATION,
    CONFIG_DIR,
    CONFIG_FILE,
    PVC_ROOT,
    SCRATCH_DIR,
    TRAINER_CONTAINER,
)
from kubetune.api.v1alpha1.trainer_config import CONFIG_ERROR_EXIT_CODE, TERMINATED_EXIT_CODE, RuntimeSettings
from kubetune.render.meta import KUEUE_PRIORITY_CLASS_LABEL, KUEUE_QUEUE_LABEL, Manifest, Owner, metadata
from kubetune.render.names import pvc_volume_name
from kubetune.settings import OperatorSettings

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
TRAINER_MODULE = "kubetune_trainer"
LAUNCH_MODULE = "kubetune_trainer.launch"
CONFIG_FIELD = f"metadata.annotations['{CONFIG_ANNOTATION}']"


@dataclass(frozen=True)
class PodPlan:
    """What differs between a training and a merge pod; everything else is policy shared by both."""

    job_name: str
    owner: Owner
    component: str
    image: str
    service_account: str
    trainer_json: str
    """trainer.json, carried in the pod template's CONFIG_ANNOTATION and mounted through the downward API."""
    runtime: RuntimeSettings
    pvc_claims: dict[str, bool] = field(default_factory=dict)
    credentials: SecretKeyRef | None = None
    output_credentials: SecretKeyRef | None = None
    optional_secret_env: dict[str, SecretKeyRef] = field(default_factory=dict)
    """Env var -> Secret key that may be absent (MLflow's token or user and password)."""
    gpus: int = 0
    cpu: str | None = None
    memory: str | None = None
    shared_memory: str = "8Gi"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    priority_class: str | None = None
    queue_name: str | None = None
    workload_priority_class: str | None = None
    service_name: str | None = None
    suspend: bool = False
    backoff_limit: int = 3
    active_deadline_seconds: int | None = None
    pod_annotations: dict[str, str] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    arguments: tuple[str, ...] = ()
    """Appended to the trainer's command line (the preflight pod's `--preflight`)."""
    api_access: bool = True
    """Mount a ServiceAccount token: the trainer writes status with it; the preflight pod never talks to the API."""


def launcher_command(runtime: RuntimeSettings, rendezvous_port: int, arguments: tuple[str, ...] = ()) -> list[str]:
    """One process per GPU: plain python, the DeepSpeed launcher on one node, torchrun otherwise.

    A launcher runs under `kubetune_trainer.launch` (PID 1), which hands SIGTERM to the trainer processes and
    exits with the codes the pod failure policy reads (the launchers themselves exit 1 for everything).
    """
    tail = ["-m", TRAINER_MODULE, "--config", f"{CONFIG_DIR}/{CONFIG_FILE}", *arguments]
    if runtime.launcher == "python":
        return ["python", *tail]
    supervised = ["python", "-m", LAUNCH_MODULE, "--"]
    if runtime.launcher == "deepspeed":
        return [
            *supervised,
            "deepspeed",
            f"--num_gpus={runtime.processes_per_node}",
            "--module",
            TRAINER_MODULE,
            *tail[1:],
        ]
    if runtime.nodes == 1:
        return [
            *supervised,
            "torchrun",
            "--standalone",
            "--nnodes=1",
            f"--nproc-per-node={runtime.processes_per_node}",
            *tail,
        ]
    return [
        *supervised,
        "torchrun",
        f"--nnodes={runtime.nodes}",
        f"--nproc-per-node={runtime.processes_per_node}",
        "--node-rank=$(NODE_RANK)",
        "--master-addr=$(MASTER_ADDR)",
        f"--master-port={rendezvous_port}",
        *tail,
    ]


def _env(plan: PodPlan, settings: OperatorSettings) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "HOME", "value": SCRATCH_DIR},
        {"name": "HF_HOME", "value": f"{CACHE_DIR}/huggingface"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    for ref, name in (
        (plan.credentials, plan.runtime.model_token_env),
        (plan.output_credentials, plan.runtime.output_token_env),
    ):
        if ref is not None and name:
            env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    env += [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key, "optional": True}}}
        for name, ref in plan.optional_secret_env.items()
    ]
    env += [{"name": name, "value": value} for name, value in sorted(plan.extra_env.items())]
    if plan.runtime.nodes > 1 and plan.service_name:
        env += [
            {
                "name": "NODE_RANK",
                "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"}},
            },
            {"name": "MASTER_ADDR", "value": f"{plan.job_name}-0.{plan.service_name}"},
            {"name": "MASTER_PORT", "value": str(settings.rendezvous_port)},
        ]
    return env


def _volumes(plan: PodPlan, settings: OperatorSettings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Read-only root filesystem: every writable path is an explicit volume."""
    cache: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": settings.model_cache_claim}}
        if settings.model_cache_claim
        else {"emptyDir": {}}
    )
    volumes: list[dict[str, Any]] = [
        {"name": "config", "downwardAPI": {"items": [{"path": CONFIG_FILE, "fieldRef": {"fieldPath": CONFIG_FIELD}}]}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": plan.shared_memory}},
        {"name": "scratch", "emptyDir": {"sizeLimit": settings.scratch_size}},
        {"name": "tmp", "emptyDir": {"sizeLimit": settings.tmp_size}},
        {"name": "model-cache", **cache},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "scratch", "mountPath": SCRATCH_DIR},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "model-cache", "mountPath": CACHE_DIR},
    ]
    for claim, writable in plan.pvc_claims.items():
        volume = pvc_volume_name(claim)
        volumes.append({"name": volume, "persistentVolumeClaim": {"claimName": claim, "readOnly": not writable}})
        mounts.append({"name": volume, "mountPath": f"{PVC_ROOT}/{claim}", "readOnly": not writable})
    return volumes, mounts


def _resources(plan: PodPlan) -> dict[str, Any]:
    amounts: dict[str, str] = {}
    if plan.cpu:
        amounts["cpu"] = plan.cpu
    if plan.memory:
        amounts["memory"] = plan.memory
    if plan.gpus:
        amounts[GPU_RESOURCE] = str(plan.gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)} if amounts else {}


def _container(plan: PodPlan, settings: OperatorSettings) -> dict[str, Any]:
    _, mounts = _volumes(plan, settings)
    container: dict[str, Any] = {
        "name": TRAINER_CONTAINER,
        "image": plan.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": launcher_command(plan.runtime, settings.rendezvous_port, plan.arguments),
        "env": _env(plan, settings),
        "ports": [{"name": "metrics", "containerPort": settings.trainer_metrics_port, "protocol": "TCP"}],
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if settings.storage_secret_name:
        container["envFrom"] = [{"secretRef": {"name": settings.storage_secret_name, "optional": True}}]
    if plan.runtime.nodes > 1:
        container["ports"].append({"name": "rendezvous", "containerPort": settings.rendezvous_port, "protocol": "TCP"})
    resources = _resources(plan)
    if resources:
        container["resources"] = resources
    return container


def _pod_spec(plan: PodPlan, settings: OperatorSettings) -> dict[str, Any]:
    volumes, _ = _volumes(plan, settings)
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": plan.runtime.termination_grace_seconds,
        "serviceAccountName": plan.service_account,
        "automountServiceAccountToken": plan.api_access,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_user,
            "runAsGroup": settings.run_as_user,
            "fsGroup": settings.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(plan, settings)],
        "volumes": volumes,
    }
    if plan.node_selector:
        spec["nodeSelector"] = dict(sorted(plan.node_selector.items()))
    if plan.tolerations:
        spec["tolerations"] = plan.tolerations
    if plan.priority_class:
        spec["priorityClassName"] = plan.priority_class
    if plan.service_name and plan.runtime.nodes > 1:
        spec["subdomain"] = plan.service_name
    return spec


def pod_failure_policy() -> dict[str, Any]:
    return {
        "rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {
                "action": "Ignore",
                "onExitCodes": {
                    "containerName": TRAINER_CONTAINER,
                    "operator": "In",
                    "values": [TERMINATED_EXIT_CODE],
                },
            },
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": TRAINER_CONTAINER,
                    "operator": "In",
                    "values": [CONFIG_ERROR_EXIT_CODE],
                },
            },
        ]
    }


def rank_zero_success_policy() -> dict[str, Any]:
    """Index 0 runs rank 0, which publishes the artifact and `status.result`: its success is the run's.

    Without this, an index that crashed after rank 0 finished is recreated by the Job, and the new
    pod waits for a rendezvous that no rank 0 will ever join (torchrun's 900 s timeout, per retry).
    """
    return {"rules": [{"succeededIndexes": "0"}]}


def job(plan: PodPlan, settings: OperatorSettings) -> Manifest:
    meta = metadata(plan.job_name, plan.owner, plan.component)
    kueue = {KUEUE_QUEUE_LABEL: plan.queue_name, KUEUE_PRIORITY_CLASS_LABEL: plan.workload_priority_class}
    meta["labels"].update({key: value for key, value in kueue.items() if value})
    pod_labels = {k: v for k, v in meta["labels"].items() if k not in kueue}
    spec: dict[str, Any] = {
        "suspend": plan.suspend,
        "backoffLimit": plan.backoff_limit,
        "podFailurePolicy": pod_failure_policy(),
        "completions": plan.runtime.nodes,
        "parallelism": plan.runtime.nodes,
        "template": {
            "metadata": {
                "labels": pod_labels,
                "annotations": {**plan.pod_annotations, **meta["annotations"], CONFIG_ANNOTATION: plan.trainer_json},
            },
            "spec": _pod_spec(plan, settings),
        },
    }
    if plan.runtime.nodes > 1:
        spec["completionMode"] = "Indexed"
        spec["successPolicy"] = rank_zero_success_policy()
    if plan.active_deadline_seconds:
        spec["activeDeadlineSeconds"] = plan.active_deadline_seconds
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": spec}
