"""What the k8s layer saw, as plain data, and small readers over pod and Job dicts.

Reading raw API dicts here (not typed client models) keeps status a pure function that table
tests can feed with literal dicts copied from a real cluster.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubetune.api.v1alpha1.finetunejob import TrainResult
from kubetune.api.v1alpha1.pod_contract import (
    COMPLETION_INDEX_ANNOTATION,
    RESULT_MESSAGE_PREFIX,
    TRAINER_CONTAINER,
)
from kubetune.api.v1alpha1.trainer_config import TERMINATED_EXIT_CODE

Obj = dict[str, Any]


@dataclass(frozen=True)
class Observed:
    """Everything the status of one FineTuneJob depends on, besides its own body and the clock."""

    job: Obj | None = None
    pods: tuple[Obj, ...] = ()
    missing_secrets: tuple[str, ...] = ()
    missing_pvcs: tuple[str, ...] = ()
    input_adapters: Mapping[str, Obj | None] = field(default_factory=dict)
    """Every Adapter the spec names (reward model, cost models, judges, constitution writer), by name; None: absent."""
    adapter: Obj | None = None
    workload: Obj | None = None
    """Kueue's Workload for the Job, read while a queued Job is suspended (None: none, or no Kueue)."""
    preflight_job: Obj | None = None
    """The preflight Job of the current spec, read only while it gates the training Job."""
    preflight_pods: tuple[Obj, ...] = ()


def gate_failure(adapter: Obj | None) -> str | None:
    """Why the evaluation gate rejected this Adapter, unless its run chose to publish it anyway."""
    gate = (adapter or {}).get("spec", {}).get("gate") or {}
    if gate.get("passed", True) or gate.get("publishUnvalidated"):
        return None
    return str(gate.get("message") or "it missed the evaluation gate thresholds")


def adapter_artifact_uri(adapter: Obj | None) -> str | None:
    """The weights of a Ready Adapter (merged ones report theirs in status); never one its gate rejected,
    whatever a stale status says."""
    if adapter is None or adapter.get("status", {}).get("phase") != "Ready" or gate_failure(adapter) is not None:
        return None
    artifact = adapter.get("status", {}).get("artifact") or adapter.get("spec", {}).get("artifact") or {}
    uri = artifact.get("uri")
    return str(uri) if uri else None


def job_condition(job: Obj | None, kind: str) -> Obj | None:
    """The Job condition of this type if it is True."""
    for condition in (job or {}).get("status", {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return dict(condition)
    return None


def pod_condition(pod: Obj, kind: str) -> Obj | None:
    for condition in pod.get("status", {}).get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return None


def is_disrupted(pod: Obj) -> bool:
    """Evicted or preempted: the DisruptionTarget condition (the Job ignores these failures)."""
    condition = pod_condition(pod, "DisruptionTarget")
    return bool(condition and condition.get("status") == "True") or pod.get("status", {}).get("reason") == "Evicted"


def is_active(pod: Obj) -> bool:
    phase = pod.get("status", {}).get("phase")
    return phase in ("Pending", "Running", None) and not pod.get("metadata", {}).get("deletionTimestamp")


def container_states(pod: Obj) -> list[Obj]:
    status = pod.get("status", {})
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def terminated(pod: Obj, container: str | None = None) -> Obj | None:
    """The terminated state of the (named) container, current or last."""
    for state in container_states(pod):
        if container and state.get("name") != container:
            continue
        for key in ("state", "lastState"):
            done = (state.get(key) or {}).get("terminated")
            if done:
                return dict(done)
    return None


def waiting_reason(pod: Obj) -> tuple[str, str] | None:
    for state in container_states(pod):
        waiting = (state.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            return str(waiting["reason"]), str(waiting.get("message") or "")
    return None


def creation_order(pod: Obj) -> str:
    return str(pod.get("metadata", {}).get("creationTimestamp") or "")


def completion_index(pod: Obj) -> int:
    """The pod's index in an Indexed Job (0 for a single-node run, whose pods carry no index)."""
    raw = pod.get("metadata", {}).get("annotations", {}).get(COMPLETION_INDEX_ANNOTATION, "0")
    return int(raw) if str(raw).isdigit() else 0


def counted_failure(pod: Obj) -> bool:
    """A failed pod the Job counts against backoffLimit: not a disruption, not a trainer stopped by SIGTERM."""
    if pod.get("status", {}).get("phase") != "Failed" or is_disrupted(pod):
        return False
    done = terminated(pod, TRAINER_CONTAINER)
    return not (done and done.get("exitCode") == TERMINATED_EXIT_CODE)


def failed_tries(pods: tuple[Obj, ...]) -> int:
    """Failed tries: a multi-node try fails all its pods (one per index), so the most failures of any one index."""
    per_index = Counter(completion_index(p) for p in pods if counted_failure(p))
    return max(per_index.values(), default=0)


def termination_result(pods: tuple[Obj, ...]) -> TrainResult | None:
    """The result a succeeded trainer left in its termination message (newest pod first), for when its
    status write never landed; None when no pod has one or it does not parse."""
    succeeded = [p for p in pods if p.get("status", {}).get("phase") == "Succeeded" and completion_index(p) == 0]
    for pod in sorted(succeeded, key=creation_order, reverse=True):
        message = str((terminated(pod, TRAINER_CONTAINER) or {}).get("message") or "")
        for line in message.splitlines():
            if line.startswith(RESULT_MESSAGE_PREFIX):
                try:
                    return TrainResult.model_validate(json.loads(line.removeprefix(RESULT_MESSAGE_PREFIX)))
                except ValueError:  # pydantic's ValidationError included
                    break
    return None
