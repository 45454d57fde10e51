"""Everything one FineTuneJob needs, in the order it should be applied.

Identity comes before the Job so the first pod never starts without its ServiceAccount and Role (trainer.json
travels in the Job itself); the Service comes before the Job so index 0's DNS name exists at rendezvous. A run
that shares the namespace's identity (`shared_identity`) has none in its bundle: the controller applies that
one before the bundle, once per namespace.

The preflight Job comes first of all (`preflight_bundle`): the trainer image in `--preflight` mode in
a CPU pod. It carries the training pods' own trainer.json (it checks exactly the document they will
read) and runs under the training pods' ServiceAccount (its image pull Secrets and cloud identity) without a
token. It requests no GPU and carries no Kueue label, so it never waits in the GPU queue, and it
mounts only the claims of its inputs, read-only (the output claim stays free for the training pod).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from kubetune.api.problems import validate
from kubetune.api.v1alpha1.common import SecretKeyRef
from kubetune.api.v1alpha1.finetunejob import FineTuneJob, FineTuneJobSpec
from kubetune.api.v1alpha1.pod_contract import (
    PREFLIGHT_COMPONENT,
    PREFLIGHT_FLAG,
    TRAINER_COMPONENT,
    TRAINER_SERVICE_ACCOUNT,
)
from kubetune.api.v1alpha1.preflight import spec_digest
from kubetune.api.v1alpha1.tracking import MLFLOW_CREDENTIAL_KEYS
from kubetune.errors import InvalidResourceError
from kubetune.render import job, names, rbac, service
from kubetune.render.meta import Manifest, Owner, propagated
from kubetune.render.trainer_config import pvc_claims, trainer_config, trainer_json, writable_uris
from kubetune.settings import OperatorSettings

PREFLIGHT_BACKOFF_LIMIT = 1
"""One retry: a download that failed for the network gets a second chance, a config error (78) none."""
PREFLIGHT_SHARED_MEMORY = "256Mi"


def job_suspend(ftj: FineTuneJob, current: bool | None) -> bool:
    """Desired `spec.suspend` of the Job.

    `spec.suspend` wins. With a Kueue queue the Job is created suspended and afterwards Kueue owns
    the field, so the operator repeats whatever value the Job has now instead of fighting Kueue.
    """
    if ftj.spec.suspend:
        return True
    if ftj.spec.resources.queue_name:
        return True if current is None else current
    return False


def training_pod_plan(
    ftj: FineTuneJob, settings: OperatorSettings, suspend: bool, adapters: Mapping[str, str] | None = None
) -> job.PodPlan:
    name = ftj.metadata.name or ""
    spec = ftj.spec
    config = trainer_config(ftj, settings, adapters)
    selector = dict(spec.resources.node_selector)
    if spec.resources.gpu_product:
        selector[job.GPU_PRODUCT_LABEL] = spec.resources.gpu_product
    multi = spec.resources.nodes > 1
    return job.PodPlan(
        job_name=names.job_name(name),
        owner=owner_of(ftj),
        component=TRAINER_COMPONENT,
        image=spec.image or settings.trainer_image,
        service_account=trainer_account(ftj, settings),
        trainer_json=trainer_json(config),
        runtime=config.runtime,
        pvc_claims=pvc_claims([spec.to_wire(), config.adapters or {}], writable_uris(spec)),
        credentials=spec.base_model.credentials_secret_ref,
        output_credentials=spec.output.credentials_secret_ref,
        optional_secret_env=tracking_secret_env(spec),
        gpus=spec.resources.gpus,
        cpu=spec.resources.cpu,
        memory=spec.resources.memory,
        shared_memory=spec.resources.shared_memory,
        node_selector=selector,
        tolerations=[t.to_wire() for t in spec.resources.tolerations],
        priority_class=spec.resources.priority_class_name,
        queue_name=spec.resources.queue_name,
        workload_priority_class=spec.resources.workload_priority_class_name,
        service_name=names.service_name(name) if multi else None,
        suspend=suspend,
        backoff_limit=spec.backoff_limit,
        active_deadline_seconds=spec.active_deadline_seconds,
        pod_annotations=propagated(ftj.metadata.annotations, settings.pod_annotation_prefixes),
    )


def tracking_secret_env(spec: FineTuneJobSpec) -> dict[str, SecretKeyRef]:
    """The MLflow credentials: each documented key of the Secret as the env var of the same name."""
    mlflow = spec.tracking.mlflow if spec.tracking is not None else None
    if mlflow is None or mlflow.credentials_secret_ref is None:
        return {}
    name = mlflow.credentials_secret_ref.name
    return {key: SecretKeyRef(name=name, key=key) for key in MLFLOW_CREDENTIAL_KEYS}


def preflight_pod_plan(
    ftj: FineTuneJob, settings: OperatorSettings, adapters: Mapping[str, str] | None = None
) -> job.PodPlan:
    """The training pod's plan and placement without GPUs, queue, rendezvous or API access, with its own limits
    (and the same trainer.json, resolved Adapters included)."""
    spec = ftj.spec
    train = training_pod_plan(ftj, settings, suspend=False, adapters=adapters)
    single = {"strategy": "single", "launcher": "python", "nodes": 1, "processes_per_node": 1, "world_size": 1}
    return replace(
        train,
        job_name=names.preflight_job_name(ftj.metadata.name or "", spec_digest(spec)),
        component=PREFLIGHT_COMPONENT,
        runtime=train.runtime.model_copy(update=single),
        pvc_claims=pvc_claims([spec.base_model.to_wire(), spec.dataset.to_wire()]),
        gpus=0,
        cpu=settings.preflight_cpu,
        memory=settings.preflight_memory,
        shared_memory=PREFLIGHT_SHARED_MEMORY,
        node_selector=dict(spec.resources.node_selector),
        queue_name=None,
        workload_priority_class=None,
        service_name=None,
        suspend=False,
        backoff_limit=PREFLIGHT_BACKOFF_LIMIT,
        active_deadline_seconds=settings.preflight_deadline_seconds,
        extra_env={},
        optional_secret_env={},  # tracking is the training pod's business
        arguments=(PREFLIGHT_FLAG,),
        api_access=False,
    )


def owner_of(ftj: FineTuneJob) -> Owner:
    return Owner("FineTuneJob", ftj.metadata.name or "", ftj.metadata.namespace or "default", ftj.metadata.uid)


def shares_namespace_identity(ftj: FineTuneJob, settings: OperatorSettings) -> bool:
    """The namespace's identity serves the run unless the policy that confines it was not found at startup or the
    run asks for its own cloud identity (`spec.serviceAccountAnnotations` must be on its very ServiceAccount)."""
    return settings.namespace_trainer_identity and not ftj.spec.service_account_annotations


def trainer_account(ftj: FineTuneJob, settings: OperatorSettings) -> str:
    if shares_namespace_identity(ftj, settings):
        return TRAINER_SERVICE_ACCOUNT
    return names.job_name(ftj.metadata.name or "")


def shared_identity(ftj: FineTuneJob, settings: OperatorSettings) -> list[Manifest]:
    """The namespace's identity when the run uses it (applied once per namespace, not with each run), else none."""
    if not shares_namespace_identity(ftj, settings):
        return []
    return rbac.namespace_identity(ftj.metadata.namespace or "default", settings)


def run_identity(ftj: FineTuneJob, settings: OperatorSettings) -> list[Manifest]:
    """The run's own ServiceAccount, Role and RoleBinding (shared by the preflight and the training pods), unless
    it uses the namespace's identity."""
    if shares_namespace_identity(ftj, settings):
        return []
    owner = owner_of(ftj)
    account = names.job_name(owner.name)
    annotations = {
        **settings.service_account_annotations_for(owner.namespace),
        **ftj.spec.service_account_annotations,
    }
    return rbac.identity(account, owner, annotations, settings.image_pull_secrets)


def preflight_bundle(
    ftj: FineTuneJob, settings: OperatorSettings, adapters: Mapping[str, str] | None = None
) -> list[Manifest]:
    """What the run needs before its checks pass: its identity, then the preflight Job."""
    return [*run_identity(ftj, settings), job.job(preflight_pod_plan(ftj, settings, adapters), settings)]


def bundle(
    ftj: FineTuneJob,
    settings: OperatorSettings,
    current_suspend: bool | None = None,
    adapters: Mapping[str, str] | None = None,
    with_identity: bool = True,
) -> list[Manifest]:
    """[ServiceAccount, Role, RoleBinding], [headless Service], Job.

    `adapters` are the resolved artifacts of the Adapters the spec names, by name (`trainer_config`).
    `with_identity=False` leaves out the identity the preflight bundle of the same spec applied already.
    """
    plan = training_pod_plan(ftj, settings, job_suspend(ftj, current_suspend), adapters)
    out = run_identity(ftj, settings) if with_identity else []
    if plan.service_name:
        out.append(service.headless_service(plan.service_name, owner_of(ftj), plan.job_name, settings.rendezvous_port))
    out.append(job.job(plan, settings))
    return out


def render_bundle(document: dict[str, Any], settings: OperatorSettings) -> list[dict[str, Any]]:
    """For `kubetune render FILE`: validate a FineTuneJob document and return its children, the preflight
    Job (unless `spec.preflight.enabled` is false) before the training Job.

    Raises InvalidResourceError (with one actionable line per problem) for a bad document.
    """
    ftj, problems = validate(FineTuneJob, document)
    if ftj is None:
        raise InvalidResourceError("FineTuneJob", problems)
    children = bundle(ftj, settings)
    if not ftj.spec.preflight.enabled:
        return children
    return [*children[:-1], job.job(preflight_pod_plan(ftj, settings), settings), children[-1]]
