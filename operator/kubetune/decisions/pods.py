"""Verdicts read off pods alone: why a pod cannot start, and what its trainer said when it exited.

Shared by the training Job's status and the preflight Job's, which run the same container.
"""

from __future__ import annotations

import re

from kubetune.api.v1alpha1.finetunejob import FineTuneJob
from kubetune.api.v1alpha1.pod_contract import TRAINER_CONTAINER
from kubetune.api.v1alpha1.trainer_config import CONFIG_ERROR_EXIT_CODE
from kubetune.decisions.conditions import Verdict
from kubetune.decisions.observed import (
    Obj,
    counted_failure,
    creation_order,
    is_active,
    pod_condition,
    terminated,
    waiting_reason,
)

IMAGE_PULL = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull")


MISSING_SECRET = re.compile(r'secret "([^"]+)" not found', re.IGNORECASE)
"""The kubelet's CreateContainerConfigError message for a secretKeyRef to a Secret that does not exist."""


def secret_not_found(names: str) -> Verdict:
    return Verdict(
        "Pending",
        "SecretNotFound",
        f"Secret {names} not found: create it in this namespace (baseModel.credentialsSecretRef, "
        "tracking.mlflow.credentialsSecretRef) or remove the reference; the run starts as soon as it exists",
    )


def last_failed(pods: tuple[Obj, ...]) -> Obj | None:
    failed = [p for p in pods if counted_failure(p)]
    return max(failed, key=creation_order) if failed else None


def exit_detail(pod: Obj | None) -> tuple[int | None, str, str]:
    """(exit code, reason, one-line termination message) of the trainer container."""
    done = terminated(pod, TRAINER_CONTAINER) if pod else None
    if not done:
        return None, "", ""
    message = str(done.get("message") or "").strip()
    lines = [line for line in message.splitlines() if line.strip()]
    return done.get("exitCode"), str(done.get("reason") or ""), (lines[-1] if lines else "")


def config_error(pods: tuple[Obj, ...], job_reason: str, job_message: str) -> Verdict | None:
    """The trainer's own one line when it exited with the config-error code (its Job fails at once)."""
    code, _, message = exit_detail(last_failed(pods))
    if code == CONFIG_ERROR_EXIT_CODE or (job_reason == "PodFailurePolicy" and code is None):
        return Verdict(
            "Failed",
            "ConfigError",
            (message or job_message) + " (fix the spec or the data; config errors are not retried)",
        )
    return None


def blocked(ftj: FineTuneJob, pods: tuple[Obj, ...], *, gpus: bool = True) -> Verdict | None:
    """A pod that cannot start without the user: its image, a missing Secret, no node that fits."""
    active = [p for p in pods if is_active(p)]
    for pod in active:
        waiting = waiting_reason(pod)
        if waiting and waiting[0] in IMAGE_PULL:
            image = ftj.spec.image or "the operator's trainer image"
            return Verdict(
                "Pending",
                "ImagePullBackOff",
                f"cannot pull {image}: {waiting[1] or waiting[0]}; check spec.image, the registry and imagePullSecrets",
            )
        if waiting and waiting[0] == "CreateContainerConfigError":
            missing = MISSING_SECRET.search(waiting[1] or "")
            if missing:
                return secret_not_found(missing.group(1))
            return Verdict("Pending", "CreateContainerConfigError", waiting[1] or "the pod cannot be configured")
    fix = (
        "request fewer GPUs (resources.gpus), or check resources.gpuProduct, nodeSelector and tolerations"
        if gpus
        else "the preflight pod (no GPU) needs a node that fits resources.nodeSelector and tolerations"
    )
    for pod in active:
        scheduled = pod_condition(pod, "PodScheduled")
        if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
            return Verdict("Pending", "Unschedulable", f"{scheduled.get('message') or 'no node fits the pod'}: {fix}")
    return None
