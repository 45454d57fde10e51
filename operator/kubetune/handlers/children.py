"""Jobs and pods the operator created: any change re-reconciles the owner named in their annotation."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from kubetune.api.v1alpha1.pod_contract import MANAGED_BY_LABEL, OPERATOR_FIELD_MANAGER, OWNER_ANNOTATION
from kubetune.handlers.runtime import Runtime, runtime_of

log = logging.getLogger(__name__)
MANAGED = {MANAGED_BY_LABEL: OPERATOR_FIELD_MANAGER}


def owner_of(annotations: Mapping[str, str]) -> tuple[str, str] | None:
    kind, _, name = str(annotations.get(OWNER_ANNOTATION, "")).partition("/")
    return (kind, name) if kind and name else None


def requeue_owner(runtime: Runtime, namespace: str, annotations: Mapping[str, str]) -> None:
    """Reconciles the owning kubetune object now; a failure is left to the resync loop."""
    owner = owner_of(annotations)
    if owner is None:
        return
    kind, name = owner
    reconcile = runtime.reconcilers.get(kind)
    if reconcile is None:
        return
    try:
        reconcile(namespace, name)
    except kopf.TemporaryError as error:
        log.warning("%s (the timer will retry)", error)


def child_event(namespace: str | None, annotations: Mapping[str, str], memo: kopf.Memo, **_: Any) -> None:
    requeue_owner(runtime_of(memo), namespace or "", annotations)


def register_children(registry: kopf.OperatorRegistry) -> None:
    kopf.on.event("batch", "v1", "jobs", labels=MANAGED, id="job_event", registry=registry)(child_event)
    kopf.on.event("", "v1", "pods", labels=MANAGED, id="pod_event", registry=registry)(child_event)
