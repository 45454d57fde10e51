"""Per-run identity for the trainer: it may read its own object and patch that object's status only.

Scoping by `resourceNames` means a compromised or buggy trainer can neither touch another run
nor read Secrets; the integration tests prove this with a real TokenRequest token.
"""

from __future__ import annotations

from collections.abc import Mapping

from kubetune.api.resources import KUBETUNE_RESOURCES
from kubetune.render.meta import Manifest, Owner, metadata


def service_account(
    name: str, owner: Owner, annotations: Mapping[str, str] | None = None, pull_secrets: tuple[str, ...] = ()
) -> Manifest:
    """The token is mounted by the pod spec only, not by default for anything else using this account.

    `annotations` bind the pods to a cloud identity (IRSA, Workload Identity); `pull_secrets` reach the
    pods through the ServiceAccount admission plugin.
    """
    meta = metadata(name, owner, "rbac")
    meta["annotations"] = {**(annotations or {}), **meta["annotations"]}
    account: Manifest = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}
    if pull_secrets:
        account["imagePullSecrets"] = [{"name": secret} for secret in pull_secrets]
    account["automountServiceAccountToken"] = False
    return account


def role(name: str, owner: Owner) -> Manifest:
    resource = KUBETUNE_RESOURCES[owner.kind]
    plural = resource.plural
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata(name, owner, "rbac"),
        "rules": [
            {
                "apiGroups": [resource.group],
                "resources": [f"{plural}/status"],
                "resourceNames": [owner.name],
                "verbs": ["get", "patch"],
            },
            {"apiGroups": [resource.group], "resources": [plural], "resourceNames": [owner.name], "verbs": ["get"]},
        ],
    }


def role_binding(name: str, owner: Owner) -> Manifest:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(name, owner, "rbac"),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": owner.namespace}],
    }


def identity(
    name: str, owner: Owner, annotations: Mapping[str, str] | None = None, pull_secrets: tuple[str, ...] = ()
) -> list[Manifest]:
    return [service_account(name, owner, annotations, pull_secrets), role(name, owner), role_binding(name, owner)]
