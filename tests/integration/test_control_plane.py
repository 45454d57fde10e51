"""The local control plane is a real Kubernetes: version, RBAC with TokenRequest and audit, namespace
lifecycle, scheduling of GPU requests by the real scheduler, and pod outcomes driven through kwok."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune_dev.controlplane import LocalControlPlane
from kubetune_dev.controlplane.client import AdminClient, condition
from kubetune_dev.controlplane.kwok import (
    ANNOTATION_EXIT_CODE,
    ANNOTATION_KEEP_RUNNING,
    ANNOTATION_RUN_FOR,
    GPU_PRODUCT,
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
)
from kubetune_dev.controlplane.paths import read_versions
from kubetune_dev.controlplane.pki import write_token_kubeconfig
from kubetune_dev.controlplane.testing import Kubectl, wait_until

pytestmark = pytest.mark.integration


def _pod(name: str, gpus: int = 0, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    resources = {"limits": {GPU_RESOURCE: str(gpus)}} if gpus else {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "registry.invalid/trainer:0", "resources": resources}],
        },
    }


def _job(name: str, gpus: int = 1, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    pod = _pod("unused", gpus, annotations)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {"metadata": {"annotations": pod["metadata"]["annotations"]}, "spec": pod["spec"]},
        },
    }


def _phase(api: AdminClient, ns: str, pod: str) -> str | None:
    obj = api.get_or_none(f"/api/v1/namespaces/{ns}/pods/{pod}")
    return None if obj is None else obj.get("status", {}).get("phase")


def _job_pods(api: AdminClient, ns: str, job: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api.get(f"/api/v1/namespaces/{ns}/pods?labelSelector=job-name%3D{job}")["items"]
    return items


def _job_condition(api: AdminClient, ns: str, job: str, kind: str) -> dict[str, Any] | None:
    cond = condition(api.get(f"/apis/batch/v1/namespaces/{ns}/jobs/{job}"), kind)
    return cond if cond and cond.get("status") == "True" else None


def test_apiserver_reports_the_pinned_version(api: AdminClient) -> None:
    assert api.get("/version")["gitVersion"] == read_versions().kube


def test_rbac_token_request_and_audit_log(
    control_plane: LocalControlPlane, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    """A ServiceAccount token minted through TokenRequest is bound by RBAC, and its denial is audited."""
    ns = namespace
    kubectl("create", "serviceaccount", "reader", "-n", ns)
    kubectl("create", "role", "cm-reader", "--verb=get,list", "--resource=configmaps", "-n", ns)
    kubectl("create", "rolebinding", "cm-reader", "--role=cm-reader", f"--serviceaccount={ns}:reader", "-n", ns)
    token = kubectl("create", "token", "reader", "-n", ns, "--duration=10m").stdout.strip()
    assert token.count(".") == 2  # a JWT signed with the service-account key

    sa_kubectl = kubectl.as_kubeconfig(
        write_token_kubeconfig(tmp_path / "sa.kubeconfig", control_plane.api_url, control_plane.pki.ca_cert, token)
    )
    whoami = sa_kubectl.json("auth", "whoami")
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{ns}:reader"
    allowed = sa_kubectl("get", "configmaps", "-n", ns, check=False)
    assert allowed.returncode == 0, allowed.stderr
    denied = sa_kubectl("get", "secrets", "-n", ns, check=False)
    assert denied.returncode != 0
    assert f'User "system:serviceaccount:{ns}:reader" cannot list resource "secrets"' in denied.stderr

    def audited_denial() -> dict[str, Any] | None:
        for line in control_plane.audit_log.read_text().splitlines():
            event = json.loads(line)
            if (
                event["user"]["username"] == f"system:serviceaccount:{ns}:reader"
                and event.get("responseStatus", {}).get("code") == 403
                and event["objectRef"]["resource"] == "secrets"
            ):
                return event
        return None

    event = wait_until("the 403 in the audit log", audited_denial, timeout=10)
    assert event["verb"] == "list"


@pytest.mark.tier_b
def test_namespace_deletion_finishes(api: AdminClient, kubectl: Kubectl) -> None:
    """The namespace controller empties and finalises a namespace, including a running pod kwok deletes."""
    ns = f"t-nsdelete-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", ns)
    kubectl("create", "configmap", "c", "--from-literal=a=b", "-n", ns)
    kubectl(
        "apply",
        "-n",
        ns,
        "-f",
        "-",
        input=yaml.safe_dump(_pod("sleeper", annotations={ANNOTATION_KEEP_RUNNING: "true"})),
    )
    wait_until("pod sleeper Running", lambda: _phase(api, ns, "sleeper") == "Running")
    kubectl("delete", "namespace", ns, "--wait=false")
    wait_until(f"namespace {ns} gone", lambda: api.get_or_none(f"/api/v1/namespaces/{ns}") is None, timeout=90)


@pytest.mark.tier_b
def test_fake_gpu_nodes_are_ready(api: AdminClient) -> None:
    nodes = api.get(f"/api/v1/nodes?labelSelector={GPU_PRODUCT_LABEL}%3D{GPU_PRODUCT}")["items"]
    assert len(nodes) == 2
    for node in nodes:
        assert node["status"]["allocatable"][GPU_RESOURCE] == "8"
        ready = condition(node, "Ready")
        assert ready is not None
        assert ready["status"] == "True"


@pytest.mark.tier_b
def test_gpu_job_is_scheduled_and_completes(api: AdminClient, kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(_job("train", gpus=1)))
    complete = wait_until("Job train Complete", lambda: _job_condition(api, namespace, "train", "Complete"))
    assert complete["reason"] == "CompletionsReached"
    (pod,) = _job_pods(api, namespace, "train")
    node = api.get(f"/api/v1/nodes/{pod['spec']['nodeName']}")
    assert node["metadata"]["labels"][GPU_PRODUCT_LABEL] == GPU_PRODUCT
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    events = kubectl.json(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={pod['metadata']['name']}"
    )
    scheduled = [e for e in events["items"] if e["reason"] == "Scheduled"]
    assert scheduled, events
    reporter = scheduled[0].get("reportingComponent") or scheduled[0]["source"].get("component")
    assert reporter == "default-scheduler"
    assert f"to {node['metadata']['name']}" in scheduled[0]["message"]


@pytest.mark.tier_b
def test_pod_asking_for_more_gpus_than_any_node_stays_pending(
    api: AdminClient, kubectl: Kubectl, namespace: str
) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(_pod("too-big", gpus=16)))

    def unschedulable() -> dict[str, Any] | None:
        cond = condition(api.get(f"/api/v1/namespaces/{namespace}/pods/too-big"), "PodScheduled")
        return cond if cond and cond.get("reason") == "Unschedulable" else None

    cond = wait_until("PodScheduled=False/Unschedulable", unschedulable)
    assert cond["status"] == "False"
    assert f"Insufficient {GPU_RESOURCE}" in cond["message"]
    time.sleep(2)  # the scheduler retries; it must still be Pending and unbound afterwards
    pod = api.get(f"/api/v1/namespaces/{namespace}/pods/too-big")
    assert pod["status"]["phase"] == "Pending"
    assert "nodeName" not in pod["spec"]


@pytest.mark.tier_b
def test_kwok_exit_code_annotation_fails_pod_and_job(api: AdminClient, kubectl: Kubectl, namespace: str) -> None:
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=yaml.safe_dump(_pod("oom", gpus=1, annotations={ANNOTATION_EXIT_CODE: "137"})),
    )
    kubectl(
        "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(_job("bad", annotations={ANNOTATION_EXIT_CODE: "3"}))
    )
    wait_until("pod oom Failed", lambda: _phase(api, namespace, "oom") == "Failed")
    terminated = api.get(f"/api/v1/namespaces/{namespace}/pods/oom")["status"]["containerStatuses"][0]["state"][
        "terminated"
    ]
    assert terminated["exitCode"] == 137
    assert terminated["reason"] == "Error"
    failed = wait_until("Job bad Failed", lambda: _job_condition(api, namespace, "bad", "Failed"))
    assert failed["reason"] == "BackoffLimitExceeded"
    (pod,) = _job_pods(api, namespace, "bad")
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3


@pytest.mark.tier_b
def test_kwok_run_for_delays_and_keep_running_never_finishes(
    api: AdminClient, kubectl: Kubectl, namespace: str
) -> None:
    kubectl(
        "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(_job("slow", annotations={ANNOTATION_RUN_FOR: "3s"}))
    )
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=yaml.safe_dump(_job("hung", annotations={ANNOTATION_KEEP_RUNNING: "true"})),
    )
    wait_until(
        "Job slow pod Running",
        lambda: [p for p in _job_pods(api, namespace, "slow") if p["status"].get("phase") == "Running"],
    )
    started = time.monotonic()
    wait_until("Job slow Complete", lambda: _job_condition(api, namespace, "slow", "Complete"), timeout=30)
    assert time.monotonic() - started >= 2.0  # run-for 3s, minus polling slack
    (hung,) = _job_pods(api, namespace, "hung")
    assert hung["status"]["phase"] == "Running"
    assert _job_condition(api, namespace, "hung", "Complete") is None


@pytest.mark.tier_b
def test_helm_install_waits_for_hook_job_and_deployment(
    control_plane: LocalControlPlane, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    """helm v4 from the cache: a pre-install hook Job completes through kwok and `--wait=watcher` sees the
    Deployment's kwok pod Ready, so chart tests on Tier B do not hang."""
    helm = str(control_plane.binaries.helm)
    chart = tmp_path / "chart"
    subprocess.run([helm, "create", str(chart)], check=True, capture_output=True)
    for extra in ("tests", "hpa.yaml", "ingress.yaml", "httproute.yaml"):
        path = chart / "templates" / extra
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    hook = _job("{{ .Release.Name }}-pre", gpus=0)
    hook["metadata"]["annotations"] = {"helm.sh/hook": "pre-install"}
    (chart / "templates" / "hook.yaml").write_text(yaml.safe_dump(hook))
    result = subprocess.run(
        [helm, "install", "t", str(chart), "-n", namespace, "--kubeconfig", str(control_plane.kubeconfig_path),
         "--wait=watcher", "--wait-for-jobs", "--timeout=90s"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "STATUS: deployed" in result.stdout
    deployment = kubectl.json("get", "deployment", "t-chart", "-n", namespace)
    assert deployment["status"]["readyReplicas"] == 1
    job = kubectl.json("get", "job", "t-pre", "-n", namespace)
    assert job["status"]["succeeded"] == 1
