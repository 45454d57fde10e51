"""kubetune_dev.controlplane.kueue as pure functions over a miniature of Kueue's config/components tree
(the real tree, from the built module, is used in tests/integration/test_kueue_control_plane.py)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from kubetune_dev.controlplane import kueue
from kubetune_dev.controlplane.paths import KueueFiles
from kubetune_dev.controlplane.pki import WebhookPki

pytestmark = pytest.mark.unit

MANIFESTS = """
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: mutating-webhook-configuration}
webhooks:
- name: mjob.kb.io
  clientConfig: {service: {name: webhook-service, namespace: system, path: /mutate-batch-v1-job}}
  rules: [{apiGroups: [batch], apiVersions: [v1], operations: [CREATE], resources: [jobs]}]
- name: mpod.kb.io
  clientConfig: {service: {name: webhook-service, namespace: system, path: /mutate--v1-pod}}
  rules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: validating-webhook-configuration}
webhooks:
- name: vworkload.kb.io
  clientConfig: {service: {name: webhook-service, namespace: system, path: /validate-kueue-x-k8s-io-v1beta2-workload}}
  rules: [{apiGroups: [kueue.x-k8s.io], apiVersions: [v1beta2], operations: [CREATE], resources: [workloads]}]
"""


def crd(name: str) -> dict[str, object]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {},
    }


@pytest.fixture
def layout(tmp_path: Path) -> kueue.KueueLayout:
    crd_dir, webhook_dir = tmp_path / "crd", tmp_path / "webhook"
    (crd_dir / "bases").mkdir(parents=True)
    (crd_dir / "patches").mkdir()
    webhook_dir.mkdir()
    (webhook_dir / "manifests.yaml").write_text(MANIFESTS)
    for name in ("workloads", "resourceflavors"):
        (crd_dir / "bases" / f"kueue.x-k8s.io_{name}.yaml").write_text(yaml.safe_dump(crd(f"{name}.kueue.x-k8s.io")))
    patch = {**crd("workloads.kueue.x-k8s.io"), "spec": {"conversion": {"strategy": "Webhook"}}}
    (crd_dir / "patches" / "webhook_in_workloads.yaml").write_text(yaml.safe_dump(patch))
    (crd_dir / "patches" / "webhook_in_resourceflavors.yaml").write_text(
        yaml.safe_dump(patch | {"metadata": {"name": "x"}})
    )
    # Only listed patches count: the resourceflavors one is commented out in Kueue's kustomization.
    (crd_dir / "kustomization.yaml").write_text("patches:\n- path: patches/webhook_in_workloads.yaml\n")
    ca = tmp_path / "ca.crt"
    ca.write_text("CA")
    pki = WebhookPki(tmp_path, ca, tmp_path / "ca.key", tmp_path / "s.crt", tmp_path / "s.key")
    files = KueueFiles(tmp_path / "kueue", crd_dir, webhook_dir)
    return kueue.KueueLayout(tmp_path / "work", files, pki, tmp_path / "kubeconfig", 9443, 8081, 8443)


def test_webhooks_point_at_loopback_and_only_for_served_groups(layout: kueue.KueueLayout) -> None:
    mutating, validating = kueue.webhook_configurations(layout)
    assert mutating["metadata"]["name"] == "kueue-mutating-webhook-configuration"  # what the rotator injects into
    assert validating["metadata"]["name"] == "kueue-validating-webhook-configuration"
    assert [h["name"] for h in mutating["webhooks"]] == ["mjob.kb.io"]  # the pod webhook is left out
    (hook,) = validating["webhooks"]
    assert hook["clientConfig"] == {
        "url": "https://127.0.0.1:9443/validate-kueue-x-k8s-io-v1beta2-workload",
        "caBundle": base64.b64encode(b"CA").decode(),
    }


def test_conversion_webhook_only_where_kueues_kustomization_enables_it(layout: kueue.KueueLayout) -> None:
    by_name = {c["metadata"]["name"]: c for c in kueue.crds(layout)}
    conversion = by_name["workloads.kueue.x-k8s.io"]["spec"]["conversion"]
    assert conversion["webhook"]["clientConfig"]["url"] == "https://127.0.0.1:9443/convert"
    assert "conversion" not in by_name["resourceflavors.kueue.x-k8s.io"]["spec"]


def test_configuration_binds_loopback_and_keeps_internal_cert_management(layout: kueue.KueueLayout) -> None:
    config = kueue.configuration(layout)
    assert config["webhook"] == {"host": "127.0.0.1", "port": 9443, "certDir": str(layout.cert_dir)}
    assert config["health"]["healthProbeBindAddress"] == "127.0.0.1:8081"
    assert config["metrics"]["bindAddress"] == "127.0.0.1:8443"
    assert config["leaderElection"] == {"leaderElect": False}
    assert config["internalCertManagement"]["enable"] is True
    assert config["integrations"]["frameworks"] == ["batch/job"]
    assert config["manageJobsWithoutQueueName"] is False


def test_cluster_queue_quota_is_the_kwok_gpu_capacity() -> None:
    flavor = kueue.cluster_queue()["spec"]["resourceGroups"][0]["flavors"][0]
    assert {r["name"]: r["nominalQuota"] for r in flavor["resources"]} == {
        "cpu": "64",
        "memory": "512Gi",
        "nvidia.com/gpu": "16",
    }


def test_a_queue_of_its_own_names_its_flavor_and_quota() -> None:
    queue = kueue.cluster_queue("one-gpu", "local", {"nvidia.com/gpu": "1"})
    (group,) = queue["spec"]["resourceGroups"]
    assert group["coveredResources"] == ["nvidia.com/gpu"]
    assert group["flavors"] == [{"name": "local", "resources": [{"name": "nvidia.com/gpu", "nominalQuota": "1"}]}]
    assert kueue.resource_flavor("local", {"kubetune.io/local-node": "true"})["spec"]["nodeLabels"] == {
        "kubetune.io/local-node": "true"
    }
    assert kueue.local_queue("ns", "q", "one-gpu")["spec"] == {"clusterQueue": "one-gpu"}
