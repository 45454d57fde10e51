"""Jobs and pods the operator created: any change goes into the read cache and enqueues the owner named in their
annotation, batched for `child_event_delay` seconds: a pod that is scheduled and starts, and its Job counting it, are
one reconcile."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from kubetune.api.v1alpha1.pod_contract import MANAGED_BY_LABEL, OPERATOR_FIELD_MANAGER, OWNER_ANNOTATION
from kubetune.handlers.runtime import Runtime, runtime_of

MANAGED = {MANAGED_BY_LABEL: OPERATOR_FIELD_MANAGER}
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={OPERATOR_FIELD_MANAGER}"
"""The same objects as the watches' label filter, for the read cache's LISTs."""


def owner_of(annotations: Mapping[str, str]) -> tuple[str, str] | None:
    kind, _, name = str(annotations.get(OWNER_ANNOTATION, "")).partition("/")
    return (kind, name) if kind and name else None


def requeue_owner(runtime: Runtime, namespace: str, annotations: Mapping[str, str]) -> None:
    """Enqueues the owning kubetune object (a kind the operator does not reconcile is ignored)."""
    owner = owner_of(annotations)
    if owner is not None and owner[0] in runtime.reconcilers:
        runtime.enqueue(owner[0], namespace, owner[1], runtime.settings.child_event_delay)


async def child_event(
    event: Mapping[str, Any], namespace: str | None, annotations: Mapping[str, str], memo: kopf.Memo, **_: Any
) -> None:
    runtime = runtime_of(memo)
    body = event["object"]
    runtime.observe(str(body.get("kind")), event.get("type"), body)
    requeue_owner(runtime, namespace or "", annotations)


def register_children(registry: kopf.OperatorRegistry) -> None:
    kopf.on.event("batch", "v1", "jobs", labels=MANAGED, id="job_event", registry=registry)(child_event)
    kopf.on.event("", "v1", "pods", labels=MANAGED, id="pod_event", registry=registry)(child_event)
