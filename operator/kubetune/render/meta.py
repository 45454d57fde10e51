"""Labels and owner references shared by every child, so selectors and GC work the same everywhere."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubetune.api.resources import KUBETUNE_RESOURCES
from kubetune.api.v1alpha1.pod_contract import (
    ADAPTER_LABEL,
    COMPONENT_LABEL,
    JOB_LABEL,
    MANAGED_BY_LABEL,
    OPERATOR_FIELD_MANAGER,
    OWNER_ANNOTATION,
)
from kubetune.render.names import label_value

KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_PRIORITY_CLASS_LABEL = "kueue.x-k8s.io/priority-class"

Manifest = dict[str, Any]


def labels(owner_name: str, component: str, owner_label: str = JOB_LABEL) -> dict[str, str]:
    """Standard app.kubernetes.io labels plus the owner label used to find pods and children."""
    value = label_value(owner_name)
    return {
        "app.kubernetes.io/name": "kubetune",
        "app.kubernetes.io/instance": value,
        COMPONENT_LABEL: component,
        "app.kubernetes.io/part-of": "kubetune",
        MANAGED_BY_LABEL: OPERATOR_FIELD_MANAGER,
        owner_label: value,
    }


def owner_reference(kind: str, name: str, uid: str) -> dict[str, Any]:
    """Controller reference: children are garbage-collected with the owner and map back to it."""
    return {
        "apiVersion": KUBETUNE_RESOURCES[kind].api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


@dataclass(frozen=True)
class Owner:
    """The kubetune object a child belongs to."""

    kind: str
    name: str
    namespace: str
    uid: str | None

    @property
    def label(self) -> str:
        return JOB_LABEL if self.kind == "FineTuneJob" else ADAPTER_LABEL


def metadata(name: str, owner: Owner, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner.name, component, owner.label),
        "annotations": {OWNER_ANNOTATION: f"{owner.kind}/{owner.name}"},
        **owner_references(owner),
    }


def propagated(annotations: dict[str, str], prefixes: tuple[str, ...]) -> dict[str, str]:
    """The owner's annotations that the operator settings say belong on its pods."""
    return {k: v for k, v in sorted(annotations.items()) if prefixes and k.startswith(prefixes)}


def owner_references(owner: Owner) -> dict[str, Any]:
    """Only for a stored owner: `kubetune render` of a file has no uid, and a reference needs one."""
    return {"ownerReferences": [owner_reference(owner.kind, owner.name, owner.uid)]} if owner.uid else {}
