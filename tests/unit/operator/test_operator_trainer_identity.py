"""One trainer identity per namespace: what is rendered, when it is applied (once per process and settings), and
when the operator shares it at all (the chart's policy found at startup). The policy itself is tested against the
real API server: tests/integration/operator/test_operator_trainer_identity.py."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from kubetune.api.v1alpha1.finetunejob import FineTuneJob
from kubetune.api.v1alpha1.pod_contract import TRAINER_SERVICE_ACCOUNT
from kubetune.controllers.adapter import reconcile_adapter
from kubetune.controllers.finetunejob import reconcile_finetunejob
from kubetune.decisions.trainer_policy import binding_url, policy_problem, policy_url
from kubetune.handlers.startup import with_trainer_identity
from kubetune.k8s.interface import KubeError, Obj, path
from kubetune.k8s.writes import AppliedOnce
from kubetune.render.bundle import bundle, preflight_bundle, shared_identity
from kubetune.render.rbac import namespace_identity
from kubetune.settings import OperatorSettings
from support.fake_kube import FakeKube

NS = "ml"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SHARED = OperatorSettings(namespace_trainer_identity=True)
IDENTITY = ["ServiceAccount", "Role", "RoleBinding"]
POLICY = "kubetune-trainer-status"


def spec(**overrides: Any) -> dict[str, Any]:
    remote = {"baseModel": {"uri": "hf://org/llama"}, "dataset": {"train": {"uri": "s3://data/t.jsonl"}}}
    return {**remote, "method": {"type": "lora", "lora": {}}, "output": {"uri": "s3://o/"}, **overrides}


def ftj(name: str = "j", **overrides: Any) -> FineTuneJob:
    meta = {"name": name, "namespace": NS, "generation": 1, "uid": "u-1"}
    return FineTuneJob.model_validate({"metadata": meta, "spec": spec(**overrides)})


def service_account(manifests: list[Obj]) -> str:
    (job,) = [m for m in manifests if m["kind"] == "Job"]
    return str(job["spec"]["template"]["spec"]["serviceAccountName"])


def test_the_namespace_identity_may_only_patch_statuses_and_belongs_to_no_run() -> None:
    settings = OperatorSettings(
        service_account_annotations={"team": "all"},
        service_account_annotations_by_namespace={NS: {"eks.amazonaws.com/role-arn": "arn:ml"}},
        image_pull_secrets=("regcred",),
    )
    account, role, binding = namespace_identity(NS, settings)
    assert [m["kind"] for m in (account, role, binding)] == IDENTITY
    assert {m["metadata"]["name"] for m in (account, role, binding)} == {TRAINER_SERVICE_ACCOUNT}
    assert not any("ownerReferences" in m["metadata"] for m in (account, role, binding)), "it outlives every run"
    assert account["metadata"]["annotations"] == {"team": "all", "eks.amazonaws.com/role-arn": "arn:ml"}
    assert account["imagePullSecrets"] == [{"name": "regcred"}]
    assert account["automountServiceAccountToken"] is False
    assert role["rules"] == [
        {"apiGroups": ["kubetune.io"], "resources": ["finetunejobs/status", "adapters/status"], "verbs": ["patch"]}
    ]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": TRAINER_SERVICE_ACCOUNT, "namespace": NS}]
    assert "annotations" not in namespace_identity(NS, OperatorSettings())[0]["metadata"]


def test_a_run_uses_the_namespace_identity_only_where_the_operator_shares_it() -> None:
    shared = [*preflight_bundle(ftj(), SHARED), *bundle(ftj(), SHARED)]
    assert [m["kind"] for m in shared] == ["Job", "Job"]
    assert {service_account([m]) for m in shared} == {TRAINER_SERVICE_ACCOUNT}
    assert [m["kind"] for m in shared_identity(ftj(), SHARED)] == IDENTITY
    per_run = bundle(ftj(), OperatorSettings())
    assert [m["kind"] for m in per_run] == [*IDENTITY, "Job"]
    assert service_account(per_run) == "j-train"
    assert shared_identity(ftj(), OperatorSettings()) == []


def test_a_run_with_its_own_cloud_identity_keeps_its_own_service_account() -> None:
    own = ftj(serviceAccountAnnotations={"eks.amazonaws.com/role-arn": "arn:run"})
    manifests = bundle(own, SHARED)
    assert [m["kind"] for m in manifests] == [*IDENTITY, "Job"]
    assert manifests[0]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == "arn:run"
    assert manifests[1]["rules"][0]["resourceNames"] == ["j"]
    assert service_account(manifests) == "j-train"
    assert shared_identity(own, SHARED) == []


class CountingKube(FakeKube):
    """Counts applies, changed or not (the fake records only changes)."""

    def __init__(self) -> None:
        super().__init__()
        self.applied: list[tuple[str, str]] = []

    def apply(self, manifest: Obj, **kwargs: Any) -> Obj:
        self.applied.append((manifest["kind"], manifest["metadata"]["name"]))
        return super().apply(manifest, **kwargs)


def create(kube: FakeKube, name: str, **overrides: Any) -> None:
    body = {"apiVersion": "kubetune.io/v1alpha1", "kind": "FineTuneJob", "metadata": {"name": name}}
    kube.create(path("FineTuneJob", NS), body | {"spec": spec(**overrides)})


def identity_applies(kube: CountingKube) -> int:
    return sum(1 for kind, name in kube.applied if (kind, name) == ("ServiceAccount", TRAINER_SERVICE_ACCOUNT))


def test_the_namespace_identity_is_applied_once_per_process_and_settings() -> None:
    kube, applied = CountingKube(), AppliedOnce()
    for name in ("a", "b", "c"):
        create(kube, name)
        reconcile_finetunejob(kube, NS, name, SHARED, NOW, applied=applied)
    assert identity_applies(kube) == 1
    assert {service_account([j]) for j in kube.list(path("Job", NS))} == {TRAINER_SERVICE_ACCOUNT}
    assert kube.stored("ServiceAccount", NS, "a-train") is None
    changed = SHARED.model_copy(update={"image_pull_secrets": ("regcred",)})
    create(kube, "d")
    reconcile_finetunejob(kube, NS, "d", changed, NOW, applied=applied)
    assert identity_applies(kube) == 2, "new settings render another identity: applied again"
    assert kube.stored("ServiceAccount", NS, TRAINER_SERVICE_ACCOUNT)["imagePullSecrets"] == [{"name": "regcred"}]
    create(kube, "e")
    reconcile_finetunejob(kube, NS, "e", changed, NOW, applied=AppliedOnce())  # a restarted operator
    assert identity_applies(kube) == 3


def test_the_memory_of_an_apply_ends_so_a_deleted_identity_comes_back() -> None:
    kube, now = CountingKube(), [0.0]
    applied = AppliedOnce(max_age=600, clock=lambda: now[0])
    for name, at in (("a", 0.0), ("b", 599.0), ("c", 601.0)):
        now[0] = at
        create(kube, name)
        reconcile_finetunejob(kube, NS, name, SHARED, NOW, applied=applied)
    assert identity_applies(kube) == 2


def test_a_merge_job_runs_as_the_namespace_identity() -> None:
    kube, applied = CountingKube(), AppliedOnce()
    for name in ("legal", "tax"):
        base = {"baseModel": {"uri": "hf://org/model", "revision": "r1"}, "method": {"type": "lora", "rank": 8}}
        artifact = {"uri": f"s3://adapters/{name}/", "sha256": "b" * 64, "sizeBytes": 1}
        kube.create(path("Adapter", NS), {"metadata": {"name": name}, "spec": base | {"artifact": artifact}})
        reconcile_adapter(kube, NS, name, SHARED, NOW, applied=applied)
    merge = {"sources": [{"name": "legal"}, {"name": "tax"}], "combination": "linear"}
    base = {"uri": "hf://org/model", "revision": "r1"}
    kube.create(path("Adapter", NS), {"metadata": {"name": "m"}, "spec": {"baseModel": base, "merge": merge}})
    assert reconcile_adapter(kube, NS, "m", SHARED, NOW, applied=applied) == "Merging"
    assert service_account([kube.stored("Job", NS, "m-merge")]) == TRAINER_SERVICE_ACCOUNT
    assert kube.stored("ServiceAccount", NS, "m-merge") is None
    assert identity_applies(kube) == 1
    assert kube.stored("Adapter", NS, "m")["status"]["jobName"] == "m-merge", "what the policy checks the pod by"


def binding(policy: str = POLICY, actions: tuple[str, ...] = ("Deny",)) -> Obj:
    return {"spec": {"policyName": policy, "validationActions": list(actions)}}


@pytest.mark.parametrize(
    ("policy", "bound", "problem"),
    [
        ({}, binding(), None),
        (None, binding(), "ValidatingAdmissionPolicy kubetune-trainer-status not found"),
        ({}, None, "ValidatingAdmissionPolicyBinding kubetune-trainer-status not found"),
        ({}, binding(policy="other"), "binds 'other'"),
        ({}, binding(actions=("Warn", "Audit")), "does not deny"),
    ],
)
def test_only_a_denying_binding_of_the_policy_confines_the_shared_identity(
    policy: Obj | None, bound: Obj | None, problem: str | None
) -> None:
    found = policy_problem(POLICY, policy, bound)
    assert found == problem if problem is None else problem in (found or "")


class PolicyKube:
    """What `with_trainer_identity` reads: the policy and its binding, or an error."""

    def __init__(self, objects: dict[str, Obj], error: KubeError | None = None) -> None:
        self.objects, self.error = objects, error

    def get(self, url: str, *, metadata_only: bool = False) -> Obj | None:
        if self.error is not None:
            raise self.error
        return self.objects.get(url)


@pytest.mark.parametrize(
    ("kube", "shared", "warning"),
    [
        (PolicyKube({policy_url(POLICY): {}, binding_url(POLICY): binding()}), True, None),
        (PolicyKube({}), False, "ValidatingAdmissionPolicy kubetune-trainer-status not found"),
        (PolicyKube({}, KubeError(403, "Forbidden", "no")), False, "cannot read ValidatingAdmissionPolicy"),
    ],
)
def test_startup_shares_the_identity_only_with_the_policy_in_force_and_says_so_once_otherwise(
    kube: PolicyKube, shared: bool, warning: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="kubetune.handlers.startup"):
        settings = with_trainer_identity(OperatorSettings(), kube)  # type: ignore[arg-type]
    assert settings.namespace_trainer_identity is shared
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if warning is None:
        assert warnings == []
    else:
        (line,) = warnings
        assert warning in line
        assert "one per run" in line


def test_sharing_is_never_read_from_the_environment() -> None:
    environ = {"KUBETUNE_NAMESPACE_TRAINER_IDENTITY": "true", "KUBETUNE_TRAINER_STATUS_POLICY": "p"}
    settings = OperatorSettings.from_env(environ)
    assert (settings.namespace_trainer_identity, settings.trainer_status_policy) == (False, "p")
