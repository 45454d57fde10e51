"""The Adapter controller's flow against the in-memory API server: published adapters, the merge flow,
bad sources, and who writes which status field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from kubetune.api.v1alpha1.pod_contract import (
    CONFIG_ANNOTATION,
    JOB_NAME_LABEL,
    OPERATOR_FIELD_MANAGER,
    TRAINER_FIELD_MANAGER,
)
from kubetune.controllers.adapter import reconcile_adapter
from kubetune.k8s.interface import path
from kubetune.settings import OperatorSettings
from support.fake_kube import JOB_CONTROLLER, FakeKube

pytestmark = pytest.mark.unit

NS = "ml"
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SETTINGS = OperatorSettings()
SHA = "b" * 64
MERGE = {"sources": [{"name": "legal", "weight": 0.6}, {"name": "tax", "weight": 0.4}], "combination": "linear"}


def adapter(name: str, base: str = "hf://org/model", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"baseModel": {"uri": base, "revision": "r1"}}
    if "merge" not in spec:
        body["method"] = {"type": "lora", "rank": 8, "alpha": 16}
        body["artifact"] = {"uri": f"s3://adapters/{name}/", "sha256": SHA, "sizeBytes": 1}
    body.update(spec)
    return {"apiVersion": "kubetune.io/v1alpha1", "kind": "Adapter", "metadata": {"name": name}, "spec": body}


def reconcile(kube: FakeKube, name: str) -> str | None:
    return reconcile_adapter(kube, NS, name, SETTINGS, NOW)


def status(kube: FakeKube, name: str) -> dict[str, Any]:
    return dict((kube.stored("Adapter", NS, name) or {}).get("status") or {})


def ready_condition(kube: FakeKube, name: str) -> dict[str, Any]:
    return next(c for c in status(kube, name)["conditions"] if c["type"] == "Ready")


@pytest.fixture
def kube() -> FakeKube:
    fake = FakeKube()
    for name in ("legal", "tax"):
        fake.create(path("Adapter", NS), adapter(name))
    return fake


def test_a_published_adapter_is_ready_with_its_artifact(kube: FakeKube) -> None:
    assert reconcile(kube, "legal") == "Ready"
    ready = status(kube, "legal")
    assert ready["artifact"]["uri"] == "s3://adapters/legal/"
    assert ready_condition(kube, "legal")["reason"] == "ArtifactPublished"
    validated = next(c for c in ready["conditions"] if c["type"] == "Validated")
    assert (validated["status"], validated["reason"]) == ("Unknown", "NotEvaluated")
    assert set(kube.status_owners("Adapter", NS, "legal")) == {OPERATOR_FIELD_MANAGER}
    assert kube.events(NS) == [], "Ready needs no one: its Normal Event is opt-in (lifecycle_events)"
    writes = len(kube.writes)
    reconcile(kube, "legal")
    assert kube.writes[writes:] == []


def test_merge_flow_with_one_writer_per_status_field(kube: FakeKube) -> None:
    for name in ("legal", "tax"):
        reconcile(kube, name)
    kube.create(path("Adapter", NS), adapter("merged", merge=MERGE))
    assert reconcile(kube, "merged") == "Merging"
    for kind in ("ServiceAccount", "Role", "RoleBinding", "Job"):
        assert kube.stored(kind, NS, "merged-merge") is not None, kind
    template = kube.stored("Job", NS, "merged-merge")["spec"]["template"]
    config = json.loads(template["metadata"]["annotations"][CONFIG_ANNOTATION])
    assert config["mode"] == "merge"
    assert [s["artifactUri"] for s in config["merge"]["sources"]] == ["s3://adapters/legal/", "s3://adapters/tax/"]
    assert config["merge"]["outputUri"] == "s3://adapters/merged/"
    assert status(kube, "merged")["jobName"] == "merged-merge"

    artifact = {"uri": "s3://adapters/merged/", "format": "peft-safetensors", "sha256": SHA, "sizeBytes": 2}
    kube.trainer_reports("Adapter", NS, "merged", {"artifact": artifact})
    conditions = [{"type": "Complete", "status": "True"}]
    kube.apply_status("Job", NS, "merged-merge", {"succeeded": 1, "conditions": conditions}, JOB_CONTROLLER)
    assert reconcile(kube, "merged") == "Ready"
    assert ready_condition(kube, "merged")["reason"] == "Merged"
    assert status(kube, "merged")["artifact"] == artifact
    owners = kube.status_owners("Adapter", NS, "merged")
    assert owners[TRAINER_FIELD_MANAGER] == {"artifact"}
    assert "artifact" not in owners[OPERATOR_FIELD_MANAGER]


def test_a_failed_merge_reports_the_trainers_config_error(kube: FakeKube) -> None:
    for name in ("legal", "tax"):
        reconcile(kube, name)
    kube.create(path("Adapter", NS), adapter("merged", merge=MERGE))
    reconcile(kube, "merged")
    pod = {"metadata": {"name": "merged-merge-x", "labels": {JOB_NAME_LABEL: "merged-merge"}}, "spec": {}}
    kube.create(path("Pod", NS), pod)
    terminated = {"exitCode": 78, "message": "kubetune-trainer: config error: source weights differ in shape"}
    pod_status = {"phase": "Failed", "containerStatuses": [{"name": "trainer", "state": {"terminated": terminated}}]}
    kube.apply_status("Pod", NS, "merged-merge-x", pod_status, "kubelet")
    failed = [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]
    kube.apply_status("Job", NS, "merged-merge", {"failed": 1, "conditions": failed}, JOB_CONTROLLER)
    assert reconcile(kube, "merged") == "Failed"
    assert ready_condition(kube, "merged")["reason"] == "ConfigError"
    assert "differ in shape" in status(kube, "merged")["message"]
    assert [(e["type"], e["reason"]) for e in kube.events(NS)][-1] == ("Warning", "ConfigError")


@pytest.mark.parametrize(
    ("sources", "phase", "reason", "named"),
    [
        ({"sources": [{"name": "legal"}, {"name": "nope"}]}, "Pending", "SourceNotFound", "nope"),
        ({"sources": [{"name": "legal"}, {"name": "other"}]}, "Failed", "BaseModelMismatch", "hf://org/other"),
        ({"sources": [{"name": "legal"}, {"name": "unready"}]}, "Pending", "SourceNotReady", "unready"),
    ],
)
def test_bad_sources_are_conditions_and_no_merge_job(
    kube: FakeKube, sources: dict[str, Any], phase: str, reason: str, named: str
) -> None:
    kube.create(path("Adapter", NS), adapter("other", base="hf://org/other"))
    kube.create(path("Adapter", NS), adapter("unready"))
    for name in ("legal", "other"):
        reconcile(kube, name)
    kube.create(path("Adapter", NS), adapter("merged", merge=sources))
    assert reconcile(kube, "merged") == phase
    ready = ready_condition(kube, "merged")
    assert ready["reason"] == reason
    assert named in ready["message"]
    assert kube.stored("Job", NS, "merged-merge") is None


def test_an_unreadable_adapter_fails_with_its_problem(kube: FakeKube) -> None:
    kube.create(path("Adapter", NS), adapter("broken", method={"type": "lora", "rank": 0}))
    assert reconcile(kube, "broken") == "Failed"
    assert "invalid Adapter" in status(kube, "broken")["message"]
    assert "spec.method: Invalid value: 0" in status(kube, "broken")["message"]


def test_a_missing_adapter_is_not_reconciled(kube: FakeKube) -> None:
    assert reconcile(kube, "gone") is None
    assert kube.writes[-1] == ("create", "Adapter", "tax")
