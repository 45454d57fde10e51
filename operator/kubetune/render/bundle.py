"""Everything one FineTuneJob needs, in the order it should be applied.

Identity and config come before the Job so the first pod never starts without its ServiceAccount,
Role or trainer.json; the Service comes before the Job so index 0's DNS name exists at rendezvous.
"""

from __future__ import annotations

from typing import Any

from kubetune.api.problems import validate
from kubetune.api.v1alpha1.finetunejob import FineTuneJob
from kubetune.api.v1alpha1.pod_contract import REWARD_MODEL_URI_ENV
from kubetune.errors import InvalidResourceError
from kubetune.render import configmap, job, names, rbac, service
from kubetune.render.meta import Manifest, Owner, propagated
from kubetune.render.trainer_config import checkpoint_storage, pvc_claims, trainer_config
from kubetune.settings import OperatorSettings


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
    ftj: FineTuneJob, settings: OperatorSettings, suspend: bool, reward_model_uri: str | None = None
) -> job.PodPlan:
    name = ftj.metadata.name or ""
    spec = ftj.spec
    config = trainer_config(ftj, settings)
    selector = dict(spec.resources.node_selector)
    if spec.resources.gpu_product:
        selector[job.GPU_PRODUCT_LABEL] = spec.resources.gpu_product
    multi = spec.resources.nodes > 1
    return job.PodPlan(
        job_name=names.job_name(name),
        owner=owner_of(ftj),
        component="trainer",
        image=spec.image or settings.trainer_image,
        service_account=names.job_name(name),
        config_map=names.job_name(name),
        runtime=config.runtime,
        pvc_claims=pvc_claims(
            [spec.to_wire(), reward_model_uri], writable_uris=(spec.output.uri, checkpoint_storage(spec))
        ),
        credentials=spec.base_model.credentials_secret_ref,
        output_credentials=spec.output.credentials_secret_ref,
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
        extra_env={REWARD_MODEL_URI_ENV: reward_model_uri} if reward_model_uri else {},
    )


def owner_of(ftj: FineTuneJob) -> Owner:
    return Owner("FineTuneJob", ftj.metadata.name or "", ftj.metadata.namespace or "default", ftj.metadata.uid)


def bundle(
    ftj: FineTuneJob,
    settings: OperatorSettings,
    current_suspend: bool | None = None,
    reward_model_uri: str | None = None,
) -> list[Manifest]:
    """ServiceAccount, Role, RoleBinding, ConfigMap, [headless Service], Job.

    `reward_model_uri` is the resolved artifact of an rlhf reward Adapter (the cluster knows it;
    `kubetune render` of a file does not, and then the variable is left out).
    """
    owner = owner_of(ftj)
    plan = training_pod_plan(ftj, settings, job_suspend(ftj, current_suspend), reward_model_uri)
    annotations = {
        **settings.service_account_annotations_for(owner.namespace),
        **ftj.spec.service_account_annotations,
    }
    out = [
        *rbac.identity(plan.service_account, owner, annotations, settings.image_pull_secrets),
        configmap.config_map(plan.config_map, owner, trainer_config(ftj, settings)),
    ]
    if plan.service_name:
        out.append(service.headless_service(plan.service_name, owner, plan.job_name, settings.rendezvous_port))
    out.append(job.job(plan, settings))
    return out


def render_bundle(document: dict[str, Any], settings: OperatorSettings) -> list[dict[str, Any]]:
    """For `kubetune render FILE`: validate a FineTuneJob document and return its children.

    Raises InvalidResourceError (with one actionable line per problem) for a bad document.
    """
    ftj, problems = validate(FineTuneJob, document)
    if ftj is None:
        raise InvalidResourceError("FineTuneJob", problems)
    return bundle(ftj, settings)
