"""The preflight pod as the fast controller tests play it: the Job controller and kubelet of `fake_kube`."""

from __future__ import annotations

import json

from kubetune.api.v1alpha1.finetunejob import FineTuneJob
from kubetune.api.v1alpha1.pod_contract import JOB_NAME_LABEL
from kubetune.api.v1alpha1.preflight import PreflightReport, spec_digest
from kubetune.k8s.interface import path
from kubetune.render.names import preflight_job_name
from support.fake_kube import JOB_CONTROLLER, FakeKube

SUMMARY = "lora: 15.20 GiB per device (weights 14.96, ...); fits 80.00 GiB"


def current_digest(kube: FakeKube, namespace: str, name: str) -> str:
    body = kube.stored("FineTuneJob", namespace, name) or {}
    return spec_digest(FineTuneJob.model_validate({k: v for k, v in body.items() if k != "status"}).spec)


def preflight_job(kube: FakeKube, namespace: str, name: str) -> str:
    """The name of the preflight Job of the run's spec as it is now."""
    return preflight_job_name(name, current_digest(kube, namespace, name))


def report_message(digest: str) -> str:
    """What a passing preflight pod leaves as its termination message."""
    report = PreflightReport(spec_digest=digest, method="lora", memory_estimate_bytes=16 * 2**30, summary=SUMMARY)
    return json.dumps(report.to_wire())


def finish_preflight(
    kube: FakeKube, namespace: str, name: str, *, exit_code: int = 0, message: str | None = None
) -> str:
    """The preflight pod runs the checks and exits (its report, or the trainer's one-line error, is its
    termination message); the Job controller records the outcome. Returns the Job's name."""
    job = preflight_job(kube, namespace, name)
    done = {"exitCode": exit_code, "message": report_message(current_digest(kube, namespace, name))}
    if message is not None:
        done["message"] = message
    pod = {"metadata": {"name": f"{job}-pf123", "labels": {JOB_NAME_LABEL: job}}, "spec": {"containers": []}}
    kube.create(path("Pod", namespace), pod)
    phase = "Succeeded" if exit_code == 0 else "Failed"
    states = [{"name": "trainer", "state": {"terminated": done}}]
    kube.apply_status("Pod", namespace, f"{job}-pf123", {"phase": phase, "containerStatuses": states}, "kubelet")
    condition = {"type": "Complete", "status": "True", "reason": "CompletionsReached"}
    if exit_code == 78:
        condition = {"type": "Failed", "status": "True", "reason": "PodFailurePolicy", "message": "exit code 78"}
    elif exit_code:
        condition = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "too many"}
    kube.apply_status("Job", namespace, job, {"conditions": [condition]}, JOB_CONTROLLER)
    return job
