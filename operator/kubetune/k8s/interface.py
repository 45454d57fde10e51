"""What the controllers see of the API server: URLs by kind, one error type, and the verbs they may use.

`KubeClient` is a Protocol so the controllers depend on these verbs only: the real `Kube` client
satisfies it against an API server, and fast unit tests pass an in-memory fake with the same
server-side apply behaviour.
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import quote

from kubetune.api.resources import KUBETUNE_RESOURCES, ResourceId

Obj = dict[str, Any]

_CORE = (
    ("ConfigMap", "configmaps"),
    ("Event", "events"),
    ("PersistentVolumeClaim", "persistentvolumeclaims"),
    ("Pod", "pods"),
    ("Secret", "secrets"),
    ("Service", "services"),
    ("ServiceAccount", "serviceaccounts"),
)
RESOURCES: dict[str, ResourceId] = {
    **{kind: ResourceId("", "v1", plural, kind) for kind, plural in _CORE},
    "Job": ResourceId("batch", "v1", "jobs", "Job"),
    "Role": ResourceId("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    "RoleBinding": ResourceId("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    "Workload": ResourceId("kueue.x-k8s.io", "v1beta2", "workloads", "Workload"),
    **KUBETUNE_RESOURCES,
}
"""Every kind the operator reads or writes."""


class KubeError(Exception):
    """An API error with its HTTP status and the server's message (never a request body)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{status} {reason}: {message}")


def path(kind: str, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    resource = RESOURCES[kind]
    root = f"/apis/{resource.api_version}" if resource.group else f"/api/{resource.version}"
    out = f"{root}/namespaces/{quote(namespace)}/{resource.plural}"
    if name:
        out += f"/{quote(name)}"
    if subresource:
        out += f"/{subresource}"
    return out


class KubeClient(Protocol):
    """The API verbs a reconcile uses; URLs come from `path`. Errors other than a 404 on `get` raise KubeError."""

    def get(self, url: str, *, metadata_only: bool = False) -> Obj | None:
        """The object, or None when it does not exist; `metadata_only` never returns a Secret's data."""
        ...

    def list(self, url: str, label_selector: str | None = None) -> list[Obj]: ...

    def apply(self, manifest: Obj, *, subresource: str | None = None, field_manager: str = ...) -> Obj:
        """Server-side apply (forced) under the operator's field manager unless another is named; returns
        the stored object."""
        ...

    def merge_patch(self, url: str, body: Obj) -> Obj: ...

    def create(self, url: str, body: Obj) -> Obj: ...

    def delete(self, url: str) -> None:
        """Deletes with background propagation (dependents go through garbage collection)."""
        ...
