"""Headless Service for multi-node runs: stable DNS for index 0, the rendezvous host."""

from __future__ import annotations

from kubetune.api.v1alpha1.pod_contract import JOB_NAME_LABEL
from kubetune.render.meta import Manifest, Owner, metadata


def headless_service(name: str, owner: Owner, job_name: str, port: int) -> Manifest:
    """`publishNotReadyAddresses`: rendezvous happens before any pod is Ready."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, owner, "rendezvous"),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {JOB_NAME_LABEL: job_name},
            "ports": [{"name": "rendezvous", "port": port, "targetPort": port, "protocol": "TCP"}],
        },
    }
