"""Read what the status depends on. Secrets and PVCs are checked with metadata-only reads, so the
operator never even receives a Secret's data (and with the chart it holds no permission on Secrets at all)."""

from __future__ import annotations

from kubetune.api.v1alpha1.finetunejob import FineTuneJob, input_adapters
from kubetune.api.v1alpha1.pod_contract import JOB_NAME_LABEL
from kubetune.decisions.observed import Observed, creation_order
from kubetune.decisions.queueing import WORKLOAD_JOB_UID_LABEL
from kubetune.k8s.interface import KubeClient, KubeError, Obj, path


def live_object(kube: KubeClient, kind: str, namespace: str, name: str) -> Obj | None:
    """The object, or None when it is gone or being deleted (nothing left to reconcile)."""
    body = kube.get(path(kind, namespace, name))
    return None if body is None or body["metadata"].get("deletionTimestamp") else body


def job_and_pods(kube: KubeClient, namespace: str, job_name: str) -> tuple[Obj | None, tuple[Obj, ...]]:
    job = kube.get(path("Job", namespace, job_name))
    if job is None:
        return None, ()
    return job, tuple(kube.list(path("Pod", namespace), label_selector=f"{JOB_NAME_LABEL}={job_name}"))


def missing_claims(kube: KubeClient, namespace: str, claims: list[str]) -> tuple[str, ...]:
    return tuple(c for c in claims if kube.get(path("PersistentVolumeClaim", namespace, c), metadata_only=True) is None)


def kueue_workload(kube: KubeClient, namespace: str, job: Obj) -> Obj | None:
    """The newest Workload Kueue made for this Job; None when there is none yet or Kueue is not installed."""
    try:
        selector = f"{WORKLOAD_JOB_UID_LABEL}={job['metadata']['uid']}"
        found = kube.list(path("Workload", namespace), label_selector=selector)
    except KubeError as error:
        if error.status == 404:
            return None
        raise
    return max(found, key=creation_order) if found else None


def observe_finetunejob(
    kube: KubeClient,
    ftj: FineTuneJob,
    job_name: str,
    adapter_name: str,
    claims: list[str],
    *,
    check_secrets: bool = True,
    preflight_job_name: str | None = None,
) -> Observed:
    """`check_secrets=False` (no RBAC on Secrets) leaves a missing Secret to the pod: SecretNotFound from its
    CreateContainerConfigError instead of before the Job exists. The preflight Job is read when named: while
    status holds no passed check of the spec as it is."""
    namespace = ftj.metadata.namespace or "default"
    job, pods = job_and_pods(kube, namespace, job_name)
    preflight_job: Obj | None = None
    preflight_pods: tuple[Obj, ...] = ()
    if preflight_job_name is not None:
        preflight_job, preflight_pods = job_and_pods(kube, namespace, preflight_job_name)
    missing_secrets: tuple[str, ...] = ()
    missing_pvcs: tuple[str, ...] = ()
    if job is None or not any(p.get("status", {}).get("phase") == "Running" for p in pods):
        if check_secrets:
            missing_secrets = tuple(
                name
                for name in ftj.spec.secret_names()
                if kube.get(path("Secret", namespace, name), metadata_only=True) is None
            )
        missing_pvcs = missing_claims(kube, namespace, claims)
    adapter = kube.get(path("Adapter", namespace, adapter_name))
    inputs = {wanted.name: kube.get(path("Adapter", namespace, wanted.name)) for wanted in input_adapters(ftj.spec)}
    workload = None
    if job is not None and ftj.spec.resources.queue_name and job.get("spec", {}).get("suspend"):
        workload = kueue_workload(kube, namespace, job)  # only a queued run waits on Kueue's word
    return Observed(
        job=job,
        pods=pods,
        missing_secrets=missing_secrets,
        missing_pvcs=missing_pvcs,
        adapter=adapter,
        input_adapters=inputs,
        workload=workload,
        preflight_job=preflight_job,
        preflight_pods=preflight_pods,
    )
