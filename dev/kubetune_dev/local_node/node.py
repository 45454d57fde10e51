"""Register the local Node and keep it Ready (status heartbeat and node Lease)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetune_dev.controlplane.kwok import GPU_RESOURCE

LOCAL_NODE_LABEL = "kubetune.io/local-node"
LEASE_NAMESPACE = "kube-node-lease"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def node_manifest(name: str, taints: Sequence[Mapping[str, str]] = ()) -> Any:
    """`taints` keep pods off this node unless they tolerate them (a test that shares its control plane)."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                LOCAL_NODE_LABEL: "true",
            },
        },
        "spec": {"taints": [dict(taint) for taint in taints]},
    }


def node_status(pods: int, gpus: int = 0) -> dict[str, Any]:
    """`gpus` > 0 advertises that many `nvidia.com/gpu` so GPU pods schedule here; they still run on the CPU."""
    cpus = str(os.cpu_count() or 1)
    memory = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // (1024 * 1024)}Mi"
    capacity = {"cpu": cpus, "memory": memory, "pods": str(pods), "ephemeral-storage": "100Gi"}
    if gpus:
        capacity[GPU_RESOURCE] = str(gpus)
    now = _now()

    def condition(kind: str, status: str, reason: str) -> dict[str, str]:
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": f"local node: {reason}",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }

    return {
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                condition("Ready", "True", "KubeletReady"),
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID"),
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "kubetune-local-node",
                "containerRuntimeVersion": "local-process://1",
                "osImage": "local",
                "kernelVersion": os.uname().release,
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kubeProxyVersion": "",
            },
        }
    }


def register(
    core: client.CoreV1Api, name: str, pods: int, gpus: int = 0, taints: Sequence[Mapping[str, str]] = ()
) -> None:
    try:
        core.create_node(node_manifest(name, taints))
    except ApiException as error:
        if error.status != 409:
            raise
    heartbeat(core, client.CoordinationV1Api(core.api_client), name, pods, gpus)


def heartbeat(core: client.CoreV1Api, leases: client.CoordinationV1Api, name: str, pods: int, gpus: int = 0) -> None:
    core.patch_node_status(name, node_status(pods, gpus))
    lease: Any = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": LEASE_NAMESPACE},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": _micro_now()},
    }
    try:
        leases.patch_namespaced_lease(name, LEASE_NAMESPACE, lease)
    except ApiException as error:
        if error.status != 404:
            raise
        leases.create_namespaced_lease(LEASE_NAMESPACE, lease)
