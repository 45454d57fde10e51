"""Jobs and pods the operator created: any change re-reconciles the owner named in their annotation."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from kubetune.api.v1alpha1.pod_contract import MANAGED_BY_LABEL, OPERATOR_FIELD_MANAGER, OWNER_ANNOTATION
from kubetune.handlers import adapter, finetunejob

log = logging.getLogger(__name__)
MANAGED = {MANAGED_BY_LABEL: OPERATOR_FIELD_MANAGER}


def _owner(annotations: Mapping[str, str]) -> tuple[str, str] | None:
    kind, _, name = str(annotations.get(OWNER_ANNOTATION, "")).partition("/")
    return (kind, name) if kind and name else None


def _requeue(namespace: str, annotations: Mapping[str, str], memo: Any) -> None:
    owner = _owner(annotations)
    if owner is None:
        return
    kind, name = owner
    try:
        if kind == "FineTuneJob":
            finetunejob.reconcile(memo.runtime, namespace, name)
        elif kind == "Adapter":
            adapter.reconcile(memo.runtime, namespace, name)
    except kopf.TemporaryError as error:
        log.warning("%s (the timer will retry)", error)


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
def job_event(namespace: str | None, annotations: Mapping[str, str], memo: Any, **_: Any) -> None:
    _requeue(namespace or "", annotations, memo)


@kopf.on.event("", "v1", "pods", labels=MANAGED)
def pod_event(namespace: str | None, annotations: Mapping[str, str], memo: Any, **_: Any) -> None:
    _requeue(namespace or "", annotations, memo)
