"""A rendered child the API server refuses (here a real ValidatingAdmissionPolicy of the cluster) fails the run
once with the server's message; the operator does not send the same request on every resync, and a new
generation of the spec is tried again."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kubetune.api.v1alpha1.pod_contract import COMPONENT_LABEL, PREFLIGHT_COMPONENT
from kubetune.k8s.interface import KubeError
from kubetune.render.names import job_name
from kubetune_dev.controlplane.testing import Kubectl, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.tier_b]

MARK = "kwok.kubetune.io/refused"
"""Copied from the FineTuneJob onto its pod template (KUBETUNE_POD_ANNOTATION_PREFIXES), where the policy looks."""
MESSAGE = "trainer Jobs marked refused are not admitted in this namespace"
ADMISSION = "/apis/admissionregistration.k8s.io/v1"
PREFLIGHT_JOB = (
    f"(has(object.metadata.labels) && '{COMPONENT_LABEL}' in object.metadata.labels"
    f" && object.metadata.labels['{COMPONENT_LABEL}'] == '{PREFLIGHT_COMPONENT}')"
)
"""The CPU preflight Job passes: the policy refuses the training Job."""


def _policy(name: str, namespace: str) -> tuple[dict[str, Any], dict[str, Any]]:
    annotations = "object.spec.template.metadata.annotations"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["jobs"]}
                ]
            },
            "validations": [
                {
                    "expression": f"!has({annotations}) || !('{MARK}' in {annotations}) || {PREFLIGHT_JOB}",
                    "message": MESSAGE,
                    "reason": "Invalid",  # 422, as a webhook's or a field's validation error
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}},
        },
    }
    return policy, binding


@pytest.fixture
def refusing_policy(kube: Any, namespace: str) -> Iterator[str]:
    name = f"refuse-{namespace}"
    policy, binding = _policy(name, namespace)
    kube.create(f"{ADMISSION}/validatingadmissionpolicies", policy)
    kube.create(f"{ADMISSION}/validatingadmissionpolicybindings", binding)
    try:
        yield name
    finally:
        kube.request("DELETE", f"{ADMISSION}/validatingadmissionpolicybindings/{name}")
        kube.request("DELETE", f"{ADMISSION}/validatingadmissionpolicies/{name}")


def denials(kubectl: Kubectl, policy: str) -> int:
    """The API server's own count of requests this policy denied."""
    text = kubectl("get", "--raw", "/metrics").stdout
    labels = rf'[^}}]*enforcement_action="deny"[^}}]*policy="{policy}"[^}}]*'
    pattern = rf"^apiserver_validating_admission_policy_check_total{{{labels}}} (\S+)$"
    return sum(int(float(value)) for value in re.findall(pattern, text, re.MULTILINE))


def test_a_refused_job_fails_the_run_once_and_a_new_generation_is_tried_again(
    operator: Any, cluster: Any, kubectl: Kubectl, refusing_policy: str, ftj_body: Any
) -> None:
    kube, namespace = cluster.kube, cluster.namespace
    probe = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "probe", "namespace": namespace},
        "spec": {
            "template": {
                "metadata": {"annotations": {MARK: "true"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]},
            }
        },
    }

    def policy_in_force() -> bool:
        try:
            kube.request("POST", cluster.url("Job"), query={"dryRun": "All"}, body=probe)
        except KubeError as error:
            return error.status == 422 and MESSAGE in str(error)
        return False

    wait_until("the admission policy to be in force", policy_in_force, timeout=30, interval=0.5)
    before = denials(kubectl, refusing_policy)
    kube.create(cluster.url("FineTuneJob"), ftj_body("refused", namespace, {MARK: "true"}))
    failed = cluster.wait_phase("refused", "Failed")
    assert failed["reason"] == "InvalidSpec"
    assert MESSAGE in failed["message"]
    assert f"Job {job_name('refused')}" in failed["message"]
    assert cluster.get("Job", job_name("refused")) is None
    refused_once = denials(kubectl, refusing_policy) - before
    assert refused_once >= 1

    time.sleep(8)  # four resync periods (KUBETUNE_RESYNC_SECONDS=2): each would send the Job again
    assert denials(kubectl, refusing_policy) - before == refused_once, "the same spec was sent again"
    assert cluster.status("refused")["phase"] == "Failed"
    warnings = [
        event
        for event in cluster.list("Event")
        if event["involvedObject"]["name"] == "refused" and event["reason"] == "InvalidSpec"
    ]
    assert len(warnings) == 1, warnings

    edit = {"metadata": {"annotations": {MARK: None}}, "spec": {"backoffLimit": 2}}
    kube.merge_patch(cluster.url("FineTuneJob", "refused"), edit)
    wait_until("the Job of the new generation", lambda: cluster.get("Job", job_name("refused")), timeout=30)
    assert denials(kubectl, refusing_policy) - before == refused_once
