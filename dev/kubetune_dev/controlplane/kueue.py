"""Kueue as a component of the local control plane, as data: its Configuration, CRDs, webhooks and queues.

The manager runs on the host like the other components, so the apiserver reaches its webhooks at
``https://127.0.0.1:<port>`` (``clientConfig.url``) instead of through a Service. Everything else is taken
from the same module version as the binary (hack/build-kueue.sh keeps its ``config/components``): the CRD
bases, which CRDs get a conversion webhook (the patches its crd/kustomization.yaml lists), and the webhook
names, paths and rules (webhook/manifests.yaml).

Certificates: with ``internalCertManagement.enable: false`` Kueue v0.17 reads metrics certificates from the
fixed path /etc/kueue/metrics/certs (cmd/kueue/main.go) and exits without them, so internal management stays
on and is handed certificates the dev cluster made (pki.generate_webhook_pki) in the Secret its rotator reads.
The rotator finds them valid, keeps them, and injects their CA into the webhook configurations and CRDs named
in pkg/util/cert, exactly as in a real install; the files it expects the Secret volume to provide are written
into the webhook certDir.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubetune_dev.controlplane.components import Component
from kubetune_dev.controlplane.kwok import (
    GPU_NODE_COUNT,
    GPU_PRODUCT,
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    GPUS_PER_NODE,
    NODE_CPU,
    NODE_MEMORY_GI,
)
from kubetune_dev.controlplane.paths import KueueFiles
from kubetune_dev.controlplane.pki import WebhookPki, b64, generate_webhook_pki

NAMESPACE = "kueue-system"
# Kueue's defaults (apis/config/v1beta2/defaults.go); the rotator derives every name below from them.
WEBHOOK_SERVICE = "kueue-webhook-service"
WEBHOOK_SECRET = "kueue-webhook-server-cert"
CA_NAME = "kueue-ca"  # pkg/util/cert: the CA's name and organization
CA_ORGANIZATION = "kueue"
NAME_PREFIX = "kueue-"  # config/default's namePrefix, which the rotator expects on the webhook configurations
SERVICE_DNS = f"{WEBHOOK_SERVICE}.{NAMESPACE}.svc"
FRAMEWORKS = ("batch/job",)
# Webhooks of other frameworks (pods, Deployments, JobSets, Kubeflow, Ray...) are left out: their integrations
# are off, so Kueue would answer them with no-op webhooks, and every pod creation would pay a webhook call.
SERVED_GROUPS = frozenset({"kueue.x-k8s.io", "batch"})

RESOURCE_FLAVOR = "kwok-gpu"
CLUSTER_QUEUE = "kubetune-dev"
LOCAL_QUEUE = "team-a"  # the name examples/queued-kueue.yaml uses
API = "kueue.x-k8s.io/v1beta2"


@dataclass(frozen=True)
class KueueLayout:
    """Everything the manager's files and command line refer to."""

    workdir: Path
    files: KueueFiles
    pki: WebhookPki
    kubeconfig: Path
    webhook_port: int
    health_port: int
    metrics_port: int

    @property
    def config_file(self) -> Path:
        return self.workdir / "config.yaml"

    @property
    def cert_dir(self) -> Path:
        return self.workdir / "webhook-certs"

    @property
    def webhook_url(self) -> str:
        return f"https://127.0.0.1:{self.webhook_port}"


def generate_pki(directory: Path) -> WebhookPki:
    return generate_webhook_pki(directory, CA_NAME, CA_ORGANIZATION, SERVICE_DNS)


def configuration(layout: KueueLayout) -> dict[str, Any]:
    """config.kueue.x-k8s.io/v1beta2 Configuration: loopback only, one replica, Jobs with a queue-name only."""
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": NAMESPACE,
        "manageJobsWithoutQueueName": False,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{layout.health_port}"},
        "metrics": {"bindAddress": f"127.0.0.1:{layout.metrics_port}"},
        "webhook": {"host": "127.0.0.1", "port": layout.webhook_port, "certDir": str(layout.cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {
            "enable": True,
            "webhookServiceName": WEBHOOK_SERVICE,
            "webhookSecretName": WEBHOOK_SECRET,
        },
        "integrations": {"frameworks": list(FRAMEWORKS)},
        # The visibility API is an aggregated apiserver, reachable only through a Service: not on loopback.
        "featureGates": {"VisibilityOnDemand": False},
        "clientConnection": {"qps": 50, "burst": 100},
    }


def component(layout: KueueLayout) -> Component:
    return Component(
        name="kueue",
        argv=[str(layout.files.manager), f"--config={layout.config_file}"],
        # Ready once the certificates are in place and the webhook server listens (cmd/kueue/main.go).
        health_url=f"http://127.0.0.1:{layout.health_port}/readyz",
        env={"KUBECONFIG": str(layout.kubeconfig)},
    )


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def converted_crds(crd_dir: Path) -> set[str]:
    """Names of the CRDs whose patch in crd/kustomization.yaml turns on the conversion webhook."""
    kustomization = yaml.safe_load((crd_dir / "kustomization.yaml").read_text())
    names = set()
    for patch in kustomization.get("patches") or []:
        for doc in _documents(crd_dir / patch["path"]):
            if (doc.get("spec", {}).get("conversion") or {}).get("strategy") == "Webhook":
                names.add(doc["metadata"]["name"])
    return names


def crds(layout: KueueLayout) -> list[dict[str, Any]]:
    """The CRD bases, with the conversion webhook at ``<url>/convert`` where Kueue's kustomization puts one."""
    crd_dir = layout.files.crd_dir
    converted = converted_crds(crd_dir)
    out = []
    for path in sorted((crd_dir / "bases").glob("*.yaml")):
        for crd in _documents(path):
            if crd["metadata"]["name"] in converted:
                crd["spec"]["conversion"] = {
                    "strategy": "Webhook",
                    "webhook": {
                        "clientConfig": {"url": f"{layout.webhook_url}/convert", "caBundle": b64(layout.pki.ca_cert)},
                        "conversionReviewVersions": ["v1"],
                    },
                }
            out.append(crd)
    return out


def _served(webhook: dict[str, Any]) -> bool:
    return all(set(rule.get("apiGroups") or []) <= SERVED_GROUPS for rule in webhook.get("rules") or [])


def webhook_configurations(layout: KueueLayout) -> list[dict[str, Any]]:
    """manifests.yaml with the kustomize name prefix, each Service reference turned into a loopback URL."""
    out = []
    for config in _documents(layout.files.webhook_dir / "manifests.yaml"):
        hooks = []
        for hook in filter(_served, config.get("webhooks") or []):
            path = hook["clientConfig"]["service"]["path"]
            hooks.append(
                {**hook, "clientConfig": {"url": f"{layout.webhook_url}{path}", "caBundle": b64(layout.pki.ca_cert)}}
            )
        metadata = {"name": NAME_PREFIX + config["metadata"]["name"]}
        out.append({**config, "metadata": metadata, "webhooks": hooks})
    return out


def certificate_secret(pki: WebhookPki) -> dict[str, Any]:
    """The Secret the rotator reads; it keeps these because they verify against its own checks."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": WEBHOOK_SECRET, "namespace": NAMESPACE},
        "type": "Opaque",
        "data": {
            "ca.crt": b64(pki.ca_cert),
            "ca.key": b64(pki.ca_key),
            "tls.crt": b64(pki.serving_cert),
            "tls.key": b64(pki.serving_key),
        },
    }


def resource_flavor(name: str = RESOURCE_FLAVOR, node_labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Admitted pods get the flavor's node labels as nodeSelector: by default those the kwok GPU nodes carry."""
    labels = {GPU_PRODUCT_LABEL: GPU_PRODUCT} if node_labels is None else node_labels
    return {
        "apiVersion": API,
        "kind": "ResourceFlavor",
        "metadata": {"name": name},
        "spec": {"nodeLabels": dict(labels)},
    }


def cluster_queue(
    name: str = CLUSTER_QUEUE, flavor: str = RESOURCE_FLAVOR, quotas: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """One flavor with `quotas` (default: the kwok GPU nodes' capacity); a higher WorkloadPriorityClass preempts
    a lower one."""
    if quotas is None:
        quotas = {
            "cpu": str(GPU_NODE_COUNT * NODE_CPU),
            "memory": f"{GPU_NODE_COUNT * NODE_MEMORY_GI}Gi",
            GPU_RESOURCE: str(GPU_NODE_COUNT * GPUS_PER_NODE),
        }
    return {
        "apiVersion": API,
        "kind": "ClusterQueue",
        "metadata": {"name": name},
        "spec": {
            "namespaceSelector": {},
            "queueingStrategy": "BestEffortFIFO",
            "preemption": {"withinClusterQueue": "LowerPriority"},
            "resourceGroups": [
                {
                    "coveredResources": list(quotas),
                    "flavors": [
                        {
                            "name": flavor,
                            "resources": [{"name": key, "nominalQuota": value} for key, value in quotas.items()],
                        }
                    ],
                }
            ],
        },
    }


def local_queue(namespace: str, name: str = LOCAL_QUEUE, cluster: str = CLUSTER_QUEUE) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "LocalQueue",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterQueue": cluster},
    }


def workload_priority_class(name: str, value: int, description: str = "") -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "WorkloadPriorityClass",
        "metadata": {"name": name},
        "value": value,
        "description": description,
    }


def write_files(layout: KueueLayout) -> None:
    """The Configuration, and the serving certificate where a Secret volume would put it."""
    layout.workdir.mkdir(parents=True, exist_ok=True)
    layout.config_file.write_text(yaml.safe_dump(configuration(layout), sort_keys=False))
    layout.cert_dir.mkdir(parents=True, exist_ok=True)
    for source, target in ((layout.pki.serving_cert, "tls.crt"), (layout.pki.serving_key, "tls.key")):
        (layout.cert_dir / target).write_bytes(source.read_bytes())
        (layout.cert_dir / target).chmod(0o600)
