"""The preflight check on the operator side: its Job (pure render), its gate and status (pure), and the
controller's flow against the in-memory API server, including what it costs in API requests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kubetune.api.v1alpha1.finetunejob import FineTuneJob
from kubetune.api.v1alpha1.pod_contract import CONFIG_ANNOTATION
from kubetune.api.v1alpha1.preflight import gpu_memory_bytes, quantity_bytes, spec_digest
from kubetune.controllers.finetunejob import reconcile_finetunejob
from kubetune.decisions.observed import Observed
from kubetune.decisions.plan import plan
from kubetune.decisions.preflight import NO_REPORT, gate
from kubetune.decisions.status import compute_status
from kubetune.k8s.interface import Obj, path
from kubetune.render.bundle import bundle, preflight_bundle, render_bundle
from kubetune.settings import OperatorSettings
from support.fake_kube import FakeKube
from support.preflight_pod import SUMMARY, finish_preflight, preflight_job, report_message

pytestmark = pytest.mark.unit

NS = "ml"
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SETTINGS = OperatorSettings()
TARGETS_ERROR = (
    "kubetune-trainer: config error: method.lora.targetModules: q_projx not found in llama; linear modules are "
    "down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj (or use all-linear)"
)


def spec(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "baseModel": {"uri": "pvc://models/llama"},
        "dataset": {"train": {"uri": "pvc://data/train.jsonl"}},
        "method": {"type": "lora", "lora": {}},
        "resources": {"gpus": 2, "gpuProduct": "NVIDIA-H100-80GB-HBM3", "nodeSelector": {"pool": "gpu"}},
        "output": {"uri": "pvc://out/adapters/"},
    }
    return body | overrides


def ftj(status: dict[str, Any] | None = None, **overrides: Any) -> FineTuneJob:
    meta = {"name": "j", "namespace": NS, "generation": 1, "uid": "u-1"}
    return FineTuneJob.model_validate({"metadata": meta, "spec": spec(**overrides), "status": status})


def pod_spec(manifest: Obj) -> Obj:
    return dict(manifest["spec"]["template"]["spec"])


def test_the_preflight_job_is_a_cpu_pod_outside_the_gpu_queue_with_read_only_inputs() -> None:
    queued = ftj(
        resources={"gpus": 8, "gpuProduct": "NVIDIA-H100-80GB-HBM3", "queueName": "gpus", "nodeSelector": {"a": "b"}},
        suspend=True,
    )
    *identity, job = preflight_bundle(queued, SETTINGS)
    assert [m["kind"] for m in identity] == ["ServiceAccount", "Role", "RoleBinding"]
    training = bundle(queued, SETTINGS)
    assert identity == training[:3], "the training Job reuses the very same identity"
    config = job["spec"]["template"]["metadata"]["annotations"][CONFIG_ANNOTATION]
    assert config == training[-1]["spec"]["template"]["metadata"]["annotations"][CONFIG_ANNOTATION], (
        "the preflight pod checks the very document the training pods read"
    )
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "preflight"
    assert not [k for k in job["metadata"]["labels"] if k.startswith("kueue.x-k8s.io/")]
    assert job["spec"]["suspend"] is False, "neither spec.suspend nor the queue holds the check back"
    assert (job["spec"]["backoffLimit"], job["spec"]["activeDeadlineSeconds"]) == (1, 900)
    pod = pod_spec(job)
    (container,) = pod["containers"]
    assert container["command"][-3:] == ["--config", "/etc/kubetune/trainer.json", "--preflight"]
    assert container["command"][0] == "python"
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "4Gi"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "j-train"
    assert pod["nodeSelector"] == {"a": "b"}, "the run's placement without the GPU product"
    claims = {v["name"]: v["persistentVolumeClaim"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {  # the output claim stays free for the training pod
        "pvc-models": {"claimName": "models", "readOnly": True},
        "pvc-data": {"claimName": "data", "readOnly": True},
    }


def test_render_shows_the_preflight_job_before_the_training_job_unless_disabled() -> None:
    document = ftj().model_dump(by_alias=True, mode="json", exclude_none=True) | {"kind": "FineTuneJob"}
    kinds = [(m["kind"], m["metadata"]["name"]) for m in render_bundle(document, SETTINGS)]
    assert kinds[-2:] == [("Job", f"j-preflight-{spec_digest(ftj().spec)[7:15]}"), ("Job", "j-train")]
    document["spec"]["preflight"] = {"enabled": False}
    assert [m["metadata"]["name"] for m in render_bundle(document, SETTINGS) if m["kind"] == "Job"] == ["j-train"]


def test_the_spec_digest_ignores_suspend_only() -> None:
    digest = spec_digest(ftj().spec)
    assert spec_digest(ftj(suspend=True).spec) == digest
    assert spec_digest(ftj(method={"type": "lora", "lora": {"rank": 8}}).spec) != digest
    assert len(digest.removeprefix("sha256:")) == 64


def test_the_gpu_size_comes_from_the_spec_or_the_product_name() -> None:
    assert quantity_bytes("80Gi") == 80 * 2**30
    assert quantity_bytes("24G") == 24 * 10**9
    assert gpu_memory_bytes(ftj().spec) == 80 * 2**30
    a100 = {"gpus": 1, "gpuProduct": "NVIDIA-A100-SXM4-40GB"}
    assert gpu_memory_bytes(ftj(resources=a100).spec) == 40 * 2**30
    assert gpu_memory_bytes(ftj(resources={"gpus": 1, "gpuProduct": "Tesla-T4"}).spec) is None
    declared = ftj(resources={"gpus": 1, "gpuProduct": "Tesla-T4"}, preflight={"gpuMemory": "15Gi"})
    assert gpu_memory_bytes(declared.spec) == 15 * 2**30
    assert gpu_memory_bytes(ftj(resources={"gpus": 0}).spec) is None


COMPLETE = {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
FAILED_78 = {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]}}
DEADLINE = {
    "metadata": {"name": "j-preflight-x"},
    "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]},
}


def pod(phase: str, code: int | None = None, message: str = "", waiting: str | None = None) -> Obj:
    state: Obj = {"waiting": {"reason": waiting, "message": "no such image"}} if waiting else {}
    if code is not None:
        state = {"terminated": {"exitCode": code, "reason": "Error" if code else "Completed", "message": message}}
    meta = {"name": f"p-{phase}", "creationTimestamp": "2026-11-29T11:00:00Z"}
    return {"metadata": meta, "status": {"phase": phase, "containerStatuses": [{"name": "trainer", "state": state}]}}


def conditions(status: Any) -> dict[str, tuple[str, str, str]]:
    return {c.type: (c.status, c.reason, c.message) for c in status.conditions}


def test_status_follows_the_preflight_until_it_passes() -> None:
    run = ftj()
    digest = spec_digest(run.spec)

    def seen(job: Obj, *pods: Obj) -> Observed:
        return Observed(preflight_job=job, preflight_pods=pods)

    rows = [
        (Observed(), "Pending", "Preflight", "Checking"),
        (seen({"status": {"active": 1}}, pod("Running")), "Pending", "Preflight", "Checking"),
        (seen({}, pod("Pending", waiting="ErrImagePull")), "Pending", "ImagePullBackOff", "Checking"),
        (seen(FAILED_78, pod("Failed", 78, TARGETS_ERROR)), "Failed", "ConfigError", "ConfigError"),
        (seen(DEADLINE, pod("Failed", 137)), "Failed", "PreflightFailed", "PreflightFailed"),
        (seen(COMPLETE, pod("Succeeded", 0, report_message(digest))), "Pending", "Creating", "Passed"),
    ]
    for observed, phase, reason, passed in rows:
        status = compute_status(run, observed, NOW, "j-train")
        assert (status.phase, status.reason, conditions(status)["PreflightPassed"][1]) == (phase, reason, passed)
    failed = compute_status(run, rows[3][0], NOW, "j-train")
    assert failed.message == TARGETS_ERROR + " (fix the spec or the data; config errors are not retried)"
    assert conditions(failed)["PreflightPassed"][0] == "False"
    assert conditions(failed)["Stalled"][0] == "True"
    stuck = compute_status(run, rows[4][0], NOW, "j-train")
    assert "DeadlineExceeded" in (stuck.message or "")
    assert "spec.preflight.enabled: false" in (stuck.message or "")
    passed = compute_status(run, rows[5][0], NOW, "j-train")
    assert passed.preflight is not None
    assert passed.preflight.summary == SUMMARY
    assert conditions(passed)["PreflightPassed"] == ("True", "Passed", SUMMARY)


def test_only_a_passed_check_of_this_very_spec_opens_the_gate() -> None:
    run = ftj()
    assert plan(run, Observed(), "j").apply_preflight
    running = Observed(preflight_job={"status": {"active": 1}})
    assert not plan(run, running, "j").apply_preflight
    assert not plan(run, running, "j").apply_children
    other = report_message(spec_digest(ftj(method={"type": "lora", "lora": {"rank": 4}}).spec))
    stale = Observed(preflight_job=COMPLETE, preflight_pods=(pod("Succeeded", 0, other),))
    decided = plan(run, stale, "j")
    assert (decided.delete_preflight, decided.apply_children) == (True, False)
    silent = Observed(preflight_job=COMPLETE, preflight_pods=(pod("Succeeded", 0, ""),))
    passed_silently = gate(run, silent)
    assert passed_silently.open
    assert passed_silently.report is not None
    assert passed_silently.report.summary == NO_REPORT
    cached = ftj(status={"preflight": {"specDigest": spec_digest(run.spec), "summary": SUMMARY}})
    assert plan(cached, Observed(), "j").apply_children, "a passed check is not repeated"
    assert plan(ftj(status={"preflight": {"specDigest": "sha256:" + "0" * 64}}), Observed(), "j").apply_preflight
    disabled = ftj(preflight={"enabled": False})
    assert plan(disabled, Observed(), "j").apply_children
    assert conditions(compute_status(disabled, Observed(), NOW, "j-train"))["PreflightPassed"][:2] == (
        "Unknown",
        "Disabled",
    )


def reconcile(kube: FakeKube) -> Any:
    return reconcile_finetunejob(kube, NS, "j", SETTINGS, NOW)


def status(kube: FakeKube) -> dict[str, Any]:
    return dict((kube.stored("FineTuneJob", NS, "j") or {}).get("status") or {})


def create(kube: FakeKube, **overrides: Any) -> None:
    """A run whose inputs need no PersistentVolumeClaim (the fake API server has none)."""
    body = {"apiVersion": "kubetune.io/v1alpha1", "kind": "FineTuneJob", "metadata": {"name": "j"}}
    remote = {"baseModel": {"uri": "hf://org/llama"}, "dataset": {"train": {"uri": "s3://data/t.jsonl"}}}
    kube.create(path("FineTuneJob", NS), body | {"spec": spec(**remote, output={"uri": "s3://o/"}) | overrides})


def test_a_config_error_found_by_the_preflight_never_creates_the_gpu_job() -> None:
    kube = FakeKube()
    create(kube, method={"type": "lora", "lora": {"targetModules": ["q_projx"]}})
    reconcile(kube)
    finish_preflight(kube, NS, "j", exit_code=78, message=TARGETS_ERROR + "\n")
    reconcile(kube)
    failed = status(kube)
    assert (failed["phase"], failed["reason"]) == ("Failed", "ConfigError")
    assert failed["message"].startswith(TARGETS_ERROR)
    assert kube.stored("Job", NS, "j-train") is None
    assert [(e["type"], e["reason"]) for e in kube.events(NS)] == [("Warning", "ConfigError")]
    writes = len(kube.writes)
    reconcile(kube)
    assert kube.writes[writes:] == []


def test_a_passed_check_is_kept_for_its_spec_through_suspend_and_job_recreation() -> None:
    kube = FakeKube()
    create(kube)
    reconcile(kube)
    checked = finish_preflight(kube, NS, "j")
    reconcile(kube)
    kube.merge_patch(path("FineTuneJob", NS, "j"), {"spec": {"suspend": True}}, field_manager="kubectl")
    kube.delete(path("Job", NS, "j-train"))
    kube.delete(path("Job", NS, checked))
    reconcile(kube)
    assert kube.stored("Job", NS, "j-train")["spec"]["suspend"] is True
    assert kube.stored("Job", NS, checked) is None, "the verdict in status.preflight is not checked again"
    assert status(kube)["preflight"]["summary"] == SUMMARY


def test_a_report_lost_with_a_status_write_is_read_again_from_the_preflight_job() -> None:
    kube = FakeKube()
    create(kube)
    reconcile(kube)
    finish_preflight(kube, NS, "j")
    reconcile(kube)
    del kube.objects[("FineTuneJob", NS, "j")]["status"]["preflight"]  # as if that status write had failed
    reconcile(kube)
    assert status(kube)["preflight"]["summary"] == SUMMARY


def test_a_report_about_another_version_of_the_spec_is_checked_again() -> None:
    kube = FakeKube()
    create(kube)
    reconcile(kube)
    job = finish_preflight(kube, NS, "j", message=report_message("sha256:" + "1" * 64))
    reconcile(kube)
    assert kube.stored("Job", NS, job) is None
    assert kube.stored("Job", NS, "j-train") is None
    reconcile(kube)
    assert kube.stored("Job", NS, preflight_job(kube, NS, "j")) is not None
    assert status(kube)["reason"] == "Preflight"


class CountingKube(FakeKube):
    """Counts write requests, changing or not (a server-side apply of an unchanged object is still one)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    def apply(self, manifest: Obj, **kwargs: Any) -> Obj:
        self.requests += 1
        return super().apply(manifest, **kwargs)

    def create(self, url: str, body: Obj) -> Obj:
        self.requests += 1
        return super().create(url, body)


@pytest.mark.parametrize(("enabled", "requests", "changes"), [(False, 5, 5), (True, 7, 7)])
def test_what_the_preflight_costs_in_write_requests(enabled: bool, requests: int, changes: int) -> None:
    """From creation to the training Job: SA, Role, RoleBinding, Job and a status write (trainer.json travels in
    the Job; no Event: nothing needs the user). The preflight adds its Job and one more status write (Pending:
    Preflight, then Creating); the identity it applied is not applied again."""
    kube = CountingKube()
    create(kube, preflight={"enabled": enabled})
    spent = [0, 0]

    def counted_reconcile() -> None:
        requests_before, changes_before = kube.requests, len(kube.writes)
        reconcile(kube)
        spent[0] += kube.requests - requests_before
        spent[1] += len(kube.writes) - changes_before

    counted_reconcile()
    if enabled:
        finish_preflight(kube, NS, "j")
        counted_reconcile()
    assert kube.stored("Job", NS, "j-train") is not None
    assert spent == [requests, changes]
