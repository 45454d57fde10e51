"""The operator's identity as the chart gives it: a ServiceAccount holding exactly the chart's RBAC (the Role of
watchNamespaces mode and the ClusterRole), reached through a TokenRequest token kubeconfig, and the chart's
ValidatingAdmissionPolicy that confines the shared trainer identity (with it the operator shares one per namespace).

An operator run with it is audited under its own user name (the dev control plane logs ServiceAccount requests),
which the RBAC test scans for 403s and the scale benchmark counts writes by.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune_dev.chart import template
from kubetune_dev.controlplane import LocalControlPlane
from kubetune_dev.controlplane.pki import write_token_kubeconfig

OPERATOR_SA = "kubetune-operator"
RBAC = "/apis/rbac.authorization.k8s.io/v1"


@dataclass(frozen=True)
class OperatorIdentity:
    kubeconfig: Path
    username: str
    """The audit log's user.username of every request made with `kubeconfig`."""
    cluster_role: str


def chart_rules(namespace: str, helm: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The Role (watchNamespaces mode) and cluster-scoped rules exactly as the chart renders them."""
    objects = template(helm, values={"watchNamespaces": f"{{{namespace}}}"})
    role = next(o for o in objects if o["kind"] == "Role")
    cluster = next(o for o in objects if o["kind"] == "ClusterRole")
    return role["rules"], cluster["rules"]


TRAINER_POLICY_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


def trainer_policy(helm: Path) -> list[dict[str, Any]]:
    """The policy and its binding exactly as the chart renders them (release `kubetune`: the operator's default
    `trainer_status_policy`)."""
    return [o for o in template(helm) if o["kind"] in TRAINER_POLICY_KINDS]


def install_trainer_policy(plane: LocalControlPlane) -> list[dict[str, Any]]:
    """Applies the chart's trainer policy (cluster-scoped; idempotent) and returns what it applied."""
    policy = trainer_policy(plane.binaries.helm)
    for manifest in policy:
        plane.client.apply(manifest)
    return policy


def grant_chart_identity(plane: LocalControlPlane, namespace: str, kubeconfig: Path) -> OperatorIdentity:
    """Creates the ServiceAccount, its Role/RoleBinding in `namespace` and a ClusterRole/Binding named after the
    namespace (`revoke` removes those two), installs the chart's trainer policy (cluster-wide, left in place: it
    only confines `kubetune-trainer` tokens), and writes a kubeconfig with a one-hour token to `kubeconfig`."""
    api = plane.client
    install_trainer_policy(plane)
    namespaced_rules, cluster_rules = chart_rules(namespace, plane.binaries.helm)
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": OPERATOR_SA}}
    api.create(f"/api/v1/namespaces/{namespace}/serviceaccounts", account)
    subject = [{"kind": "ServiceAccount", "name": OPERATOR_SA, "namespace": namespace}]
    api.create(f"{RBAC}/namespaces/{namespace}/roles", {"metadata": {"name": OPERATOR_SA}, "rules": namespaced_rules})
    api.create(f"{RBAC}/namespaces/{namespace}/rolebindings", _binding(OPERATOR_SA, "Role", subject))
    cluster_role = f"kubetune-operator-{namespace}"
    api.create(f"{RBAC}/clusterroles", {"metadata": {"name": cluster_role}, "rules": cluster_rules})
    api.create(f"{RBAC}/clusterrolebindings", _binding(cluster_role, "ClusterRole", subject))
    token = api.create(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{OPERATOR_SA}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}},
    )["status"]["token"]
    return OperatorIdentity(
        kubeconfig=write_token_kubeconfig(kubeconfig, plane.api_url, plane.pki.ca_cert, token),
        username=f"system:serviceaccount:{namespace}:{OPERATOR_SA}",
        cluster_role=cluster_role,
    )


def revoke(plane: LocalControlPlane, identity: OperatorIdentity) -> None:
    """Removes the cluster-scoped grants; the namespaced ones go with the namespace."""
    plane.client.delete(f"{RBAC}/clusterrolebindings/{identity.cluster_role}")
    plane.client.delete(f"{RBAC}/clusterroles/{identity.cluster_role}")


def _binding(name: str, kind: str, subject: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "subjects": subject,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name},
    }
