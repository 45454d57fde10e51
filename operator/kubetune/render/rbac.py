"""The trainer's identity: the ServiceAccount its pods run as and a Role that lets them write their run's status.

Two shapes. One per namespace (`namespace_identity`), shared by every run there and owned by none: its Role may
patch the status of any FineTuneJob or Adapter of the namespace, and the chart's ValidatingAdmissionPolicy narrows
that to the run whose Job the token's pod belongs to (the API server checks the pod-name claim of the bound token
against `status.jobName`). One per run (`identity`), owned by the run: scoped by `resourceNames` instead, for a
run with its own cloud identity (`spec.serviceAccountAnnotations`) and for an operator that did not find the
policy. Either way a compromised or buggy trainer can neither touch another run nor read Secrets; the
integration tests prove both with real TokenRequest tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubetune.api.resources import ADAPTER, FINETUNEJOB, GROUP, KUBETUNE_RESOURCES
from kubetune.api.v1alpha1.pod_contract import MANAGED_BY_LABEL, OPERATOR_FIELD_MANAGER, TRAINER_SERVICE_ACCOUNT
from kubetune.render.meta import Manifest, Owner, metadata
from kubetune.settings import OperatorSettings

NAMESPACE_IDENTITY_COMPONENT = "trainer-identity"


def service_account(
    meta: dict[str, Any], annotations: Mapping[str, str] | None = None, pull_secrets: tuple[str, ...] = ()
) -> Manifest:
    """The token is mounted by the pod spec only, not by default for anything else using this account.

    `annotations` bind the pods to a cloud identity (IRSA, Workload Identity); `pull_secrets` reach the
    pods through the ServiceAccount admission plugin.
    """
    merged = {**(annotations or {}), **meta.get("annotations", {})}
    account: Manifest = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {**meta, "annotations": merged}}
    if not merged:
        del account["metadata"]["annotations"]
    if pull_secrets:
        account["imagePullSecrets"] = [{"name": secret} for secret in pull_secrets]
    account["automountServiceAccountToken"] = False
    return account


def role(meta: dict[str, Any], rules: list[dict[str, Any]]) -> Manifest:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta, "rules": rules}


def role_binding(meta: dict[str, Any]) -> Manifest:
    name = meta["name"]
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": meta["namespace"]}],
    }


def identity(
    name: str, owner: Owner, annotations: Mapping[str, str] | None = None, pull_secrets: tuple[str, ...] = ()
) -> list[Manifest]:
    """One run's identity: it may read its own object and patch that object's status only."""
    resource = KUBETUNE_RESOURCES[owner.kind]
    plural = resource.plural
    rules = [
        {
            "apiGroups": [resource.group],
            "resources": [f"{plural}/status"],
            "resourceNames": [owner.name],
            "verbs": ["get", "patch"],
        },
        {"apiGroups": [resource.group], "resources": [plural], "resourceNames": [owner.name], "verbs": ["get"]},
    ]
    account = service_account(metadata(name, owner, "rbac"), annotations, pull_secrets)
    return [account, role(metadata(name, owner, "rbac"), rules), role_binding(metadata(name, owner, "rbac"))]


def namespace_identity(namespace: str, settings: OperatorSettings) -> list[Manifest]:
    """The namespace's shared identity. Only `patch` on the status subresources: the trainer writes its fields with
    server-side apply and never reads an object, and admission (the policy) cannot narrow reads, so a `get` here
    would let every trainer read every run's spec in the namespace."""
    statuses = [f"{resource.plural}/status" for resource in (FINETUNEJOB, ADAPTER)]
    rules = [{"apiGroups": [GROUP], "resources": statuses, "verbs": ["patch"]}]

    def meta() -> dict[str, Any]:
        return {
            "name": TRAINER_SERVICE_ACCOUNT,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "kubetune",
                "app.kubernetes.io/component": NAMESPACE_IDENTITY_COMPONENT,
                "app.kubernetes.io/part-of": "kubetune",
                MANAGED_BY_LABEL: OPERATOR_FIELD_MANAGER,
            },
        }

    account = service_account(meta(), settings.service_account_annotations_for(namespace), settings.image_pull_secrets)
    return [account, role(meta(), rules), role_binding(meta())]
