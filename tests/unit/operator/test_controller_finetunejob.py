"""The FineTuneJob controller's flow against the in-memory API server: what one reconcile reads and writes.

The decisions themselves (every phase and reason) are table-tested in test_operator_status.py; here the
question is which objects and fields end up where, under which field manager, and that a second
reconcile of an unchanged world writes nothing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from kubetune.api.resources import API_VERSION
from kubetune.api.v1alpha1.pod_contract import (
    CONFIG_ANNOTATION,
    JOB_NAME_LABEL,
    OPERATOR_FIELD_MANAGER,
    TRAINER_FIELD_MANAGER,
)
from kubetune.controllers.adapter import reconcile_adapter
from kubetune.controllers.finetunejob import reconcile_finetunejob
from kubetune.k8s.interface import KubeError, path
from kubetune.settings import OperatorSettings
from support.fake_kube import JOB_CONTROLLER, FakeKube
from support.preflight_pod import SUMMARY
from support.preflight_pod import finish_preflight as play_preflight
from support.preflight_pod import preflight_job as support_preflight_job

pytestmark = pytest.mark.unit

NS = "ml"
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SETTINGS = OperatorSettings()
SHA = "c" * 64
GATE = {"suites": [{"name": "heldout", "metric": "perplexity"}], "gate": {"minScores": {"heldout": 3.0}}}
OPT_IN = {**GATE, "gate": {**GATE["gate"], "publishUnvalidated": True}}
MISSED = "gate failed: heldout.perplexity 3.5 is above the limit 3"
CHILDREN = ("ServiceAccount", "Role", "RoleBinding", "Job")


def finetunejob(name: str = "j", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "baseModel": {"uri": "hf://org/model"},
        "dataset": {"train": {"uri": "s3://d/train.jsonl"}},
        "method": {"type": "lora", "lora": {"rank": 8}},
        "objective": {"type": "sft"},
        "resources": {"gpus": 1},
        "output": {"uri": f"s3://o/{name}/"},
    }
    body.update(spec)
    return {"apiVersion": "kubetune.io/v1alpha1", "kind": "FineTuneJob", "metadata": {"name": name}, "spec": body}


def reconcile(kube: FakeKube, name: str = "j", settings: OperatorSettings = SETTINGS) -> Any:
    return reconcile_finetunejob(kube, NS, name, settings, NOW)


def status(kube: FakeKube, name: str = "j") -> dict[str, Any]:
    return dict((kube.stored("FineTuneJob", NS, name) or {}).get("status") or {})


def start_pod(kube: FakeKube, job: str, phase: str = "Running") -> None:
    """The Job controller creates a pod and the kubelet runs it."""
    pod = {"metadata": {"name": f"{job}-abcde", "labels": {JOB_NAME_LABEL: job}}, "spec": {"containers": []}}
    kube.create(path("Pod", NS), pod)
    kube.apply_status("Pod", NS, f"{job}-abcde", {"phase": phase}, "kubelet")
    kube.apply_status("Job", NS, job, {"active": 1}, JOB_CONTROLLER)


def complete(kube: FakeKube, job: str) -> None:
    conditions = [{"type": "Complete", "status": "True", "reason": "CompletionsReached"}]
    kube.apply_status("Job", NS, job, {"succeeded": 1, "conditions": conditions}, JOB_CONTROLLER)
    kube.apply_status("Pod", NS, f"{job}-abcde", {"phase": "Succeeded"}, "kubelet")


def preflight_job(kube: FakeKube, name: str = "j") -> str:
    return support_preflight_job(kube, NS, name)


def finish_preflight(kube: FakeKube, name: str = "j", **outcome: Any) -> str:
    return play_preflight(kube, NS, name, **outcome)


def created(kube: FakeKube, name: str = "j") -> Any:
    """A new run, through its preflight check up to its training Job."""
    kube.create(path("FineTuneJob", NS), finetunejob(name))
    reconcile(kube, name)
    finish_preflight(kube, name)
    return reconcile(kube, name)


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


def test_a_new_run_gets_its_children_and_a_pending_status(kube: FakeKube) -> None:
    kube.create(path("FineTuneJob", NS), finetunejob())
    outcome = reconcile(kube)
    checking = status(kube)
    assert (checking["phase"], checking["reason"]) == ("Pending", "Preflight")
    assert kube.stored("Job", NS, "j-train") is None, "no GPU Job before the preflight passed"
    assert kube.stored("Job", NS, preflight_job(kube)) is not None
    assert (outcome.before, outcome.after, outcome.method) == (None, "Pending", "lora")
    finish_preflight(kube)
    reconcile(kube)
    for kind in CHILDREN:
        child = kube.stored(kind, NS, "j-train")
        assert child is not None, kind
        assert child["metadata"]["annotations"]["kubetune.io/owner"] == "FineTuneJob/j"
        assert child["metadata"]["ownerReferences"][0]["kind"] == "FineTuneJob"
    assert kube.stored("Job", NS, "j-train")["spec"]["suspend"] is False
    assert (status(kube)["phase"], status(kube)["reason"]) == ("Pending", "Creating")
    assert status(kube)["observedGeneration"] == 1
    assert status(kube)["preflight"]["summary"] == SUMMARY
    assert conditions(kube.stored("FineTuneJob", NS, "j"))["PreflightPassed"] == ("True", "Passed")
    assert kube.events(NS) == [], "Normal Events are opt-in (lifecycle_events): the phase is in status"
    assert kube.status_owners("FineTuneJob", NS, "j")[OPERATOR_FIELD_MANAGER] >= {"phase", "conditions", "preflight"}


def test_a_second_reconcile_of_an_unchanged_world_writes_nothing(kube: FakeKube) -> None:
    kube.create(path("FineTuneJob", NS), finetunejob())
    reconcile(kube)
    writes = len(kube.writes)
    reconcile(kube)
    assert kube.writes[writes:] == []
    finish_preflight(kube)
    reconcile(kube)
    writes = len(kube.writes)
    reconcile(kube)
    assert kube.writes[writes:] == []


def test_observed_pods_move_the_phase_and_the_trainers_fields_stay_its_own(kube: FakeKube) -> None:
    created(kube)
    start_pod(kube, "j-train")
    kube.trainer_reports("FineTuneJob", NS, "j", {"progress": {"step": 5, "totalSteps": 10, "percent": 50}})
    outcome = reconcile(kube)
    running = status(kube)
    assert (running["phase"], running["reason"]) == ("Running", "Training")
    assert running["startTime"] == "2026-11-29T12:00:00Z"
    assert running["progress"]["step"] == 5
    assert (outcome.before, outcome.after) == ("Pending", "Running")
    owners = kube.status_owners("FineTuneJob", NS, "j")
    assert owners[TRAINER_FIELD_MANAGER] == {"progress"}
    assert not owners[OPERATOR_FIELD_MANAGER] & {"progress", "result"}
    assert kube.events(NS) == []


def run_to_success(
    kube: FakeKube, name: str, result: dict[str, Any], settings: OperatorSettings = SETTINGS, **spec: Any
) -> None:
    """A run from creation to a completed Job whose trainer reported `result`, one reconcile per step."""
    kube.create(path("FineTuneJob", NS), finetunejob(name, **spec))
    reconcile(kube, name, settings)
    finish_preflight(kube, name)
    reconcile(kube, name, settings)
    start_pod(kube, f"{name}-train")
    reconcile(kube, name, settings)
    kube.trainer_reports("FineTuneJob", NS, name, {"result": result})
    complete(kube, f"{name}-train")
    reconcile(kube, name, settings)


def test_lifecycle_events_post_a_normal_event_per_phase_and_the_adapters_own(kube: FakeKube) -> None:
    """Opt-in: one Event per change of phase (none for progress within one), the Adapter's from its controller."""
    loud = OperatorSettings(lifecycle_events=True)
    result = {"artifactUri": "s3://o/j/final/", "sha256": SHA, "sizeBytes": 10, "gatePassed": True}
    run_to_success(kube, "j", result, loud)
    assert reconcile_adapter(kube, NS, "j", loud, NOW) == "Ready"
    posted = [(e["involvedObject"]["kind"], e["type"], e["reason"]) for e in kube.events(NS)]
    assert posted == [
        ("FineTuneJob", "Normal", "Preflight"),
        ("FineTuneJob", "Normal", "Training"),
        ("FineTuneJob", "Normal", "Completed"),
        ("Adapter", "Normal", "ArtifactPublished"),
    ]


def test_success_publishes_the_adapter_whose_status_the_adapter_controller_writes(kube: FakeKube) -> None:
    result = {"artifactUri": "s3://o/j/final/", "sha256": SHA, "sizeBytes": 10, "gatePassed": False}
    run_to_success(kube, "j", {**result, "baseModelRevision": "abc"}, evaluation=OPT_IN)
    done = status(kube)
    assert (done["phase"], done["adapterRef"]) == ("Succeeded", {"name": "j"})
    adapter = kube.stored("Adapter", NS, "j")
    assert adapter is not None
    assert adapter["spec"]["artifact"]["sha256"] == SHA
    assert adapter["spec"]["baseModel"] == {"uri": "hf://org/model", "revision": "abc"}
    assert adapter["spec"]["source"]["fineTuneJob"]["name"] == "j"
    assert "status" not in adapter  # one writer: the Adapter controller, on the Adapter's own event

    assert reconcile_adapter(kube, NS, "j", SETTINGS, NOW) == "Ready"
    assert kube.events(NS) == [], "a success needs no one: no Event unless lifecycle_events asks for them"
    adapter_status = kube.stored("Adapter", NS, "j")["status"]
    validated = next(c for c in adapter_status["conditions"] if c["type"] == "Validated")
    assert (validated["status"], validated["reason"]) == ("False", "GateFailed")
    assert set(kube.status_owners("Adapter", NS, "j")) == {OPERATOR_FIELD_MANAGER}

    writes = len(kube.writes)
    reconcile(kube)
    assert kube.writes[writes:] == []  # published once per result


def test_a_result_whose_write_never_landed_is_recovered_from_the_termination_message(kube: FakeKube) -> None:
    """The trainer exited 0 with the result in its termination message, but no status write of it landed."""
    created(kube)
    start_pod(kube, "j-train")
    kube.trainer_reports("FineTuneJob", NS, "j", {"progress": {"step": 10, "totalSteps": 10}})
    reconcile(kube)
    result = {"artifactUri": "s3://o/j/j/", "sha256": SHA, "sizeBytes": 10, "gatePassed": True, "method": "lora"}
    message = "kubetune-result: " + json.dumps(result) + "\n"
    complete(kube, "j-train")
    terminated = {"exitCode": 0, "reason": "Completed", "message": message}
    kube.apply_status(
        "Pod",
        NS,
        "j-train-abcde",
        {"phase": "Succeeded", "containerStatuses": [{"name": "trainer", "state": {"terminated": terminated}}]},
        "kubelet",
    )
    reconcile(kube)
    recovered = status(kube)
    assert recovered["result"]["sha256"] == SHA
    assert recovered["progress"]["step"] == 10, "the trainer's progress is written with it, as the trainer would"
    owners = kube.status_owners("FineTuneJob", NS, "j")
    assert owners[TRAINER_FIELD_MANAGER] == {"progress", "result"}, "written in the trainer's name, not the operator's"
    assert kube.stored("Adapter", NS, "j") is None, "published by the next reconcile, like any result"

    reconcile(kube)
    assert kube.stored("Adapter", NS, "j")["spec"]["artifact"]["sha256"] == SHA
    assert status(kube)["adapterRef"] == {"name": "j"}
    writes = len(kube.writes)
    reconcile(kube)
    assert kube.writes[writes:] == [], "recovered once"


def test_an_invalid_spec_fails_with_its_problem_and_creates_nothing(kube: FakeKube) -> None:
    # The API server's schema would refuse this; an operator newer than the installed CRD can still see it.
    kube.create(path("FineTuneJob", NS), finetunejob(method={"type": "lora", "lora": {"rank": 0}}))
    outcome = reconcile(kube)
    failed = status(kube)
    assert (failed["phase"], failed["reason"]) == ("Failed", "InvalidSpec")
    assert "method.lora.rank" in failed["message"]
    assert outcome.method == "lora"
    assert [kind for kind, _, _ in kube.objects if kind in CHILDREN] == []
    assert [(e["type"], e["reason"]) for e in kube.events(NS)] == [("Warning", "InvalidSpec")]


def test_a_missing_secret_waits_without_children_until_it_exists(kube: FakeKube) -> None:
    base = {"uri": "hf://org/model", "credentialsSecretRef": {"name": "hf-token"}}
    kube.create(path("FineTuneJob", NS), finetunejob(baseModel=base))
    reconcile(kube)
    assert status(kube)["reason"] == "SecretNotFound"
    assert kube.stored("Job", NS, "j-train") is None
    assert [(e["type"], e["reason"]) for e in kube.events(NS)] == [("Warning", "SecretNotFound")]
    kube.create(path("Secret", NS), {"metadata": {"name": "hf-token"}, "data": {"token": "czNjcjN0"}})
    reconcile(kube)
    job = finish_preflight(kube)
    reconcile(kube)
    for name in (job, "j-train"):  # the preflight pod downloads the config of a gated model too
        env = kube.stored("Job", NS, name)["spec"]["template"]["spec"]["containers"][0]["env"]
        token = next(e for e in env if e["name"] == "KUBETUNE_MODEL_TOKEN")
        assert token["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "token"}
    assert "czNjcjN0" not in str(kube.stored("FineTuneJob", NS, "j"))


def test_a_missing_mlflow_secret_waits_too(kube: FakeKube) -> None:
    mlflow = {"trackingUri": "https://mlflow.example", "credentialsSecretRef": {"name": "mlflow-auth"}}
    kube.create(path("FineTuneJob", NS), finetunejob(tracking={"mlflow": mlflow}))
    reconcile(kube)
    assert status(kube)["reason"] == "SecretNotFound"
    assert "Secret mlflow-auth not found" in status(kube)["message"]
    assert kube.stored("Job", NS, "j-train") is None
    kube.create(path("Secret", NS), {"metadata": {"name": "mlflow-auth"}, "data": {"MLFLOW_TRACKING_TOKEN": "dDBr"}})
    reconcile(kube)
    preflight = finish_preflight(kube)
    reconcile(kube)

    def mlflow_env(job: str) -> list[str]:
        env = kube.stored("Job", NS, job)["spec"]["template"]["spec"]["containers"][0]["env"]
        return [e["name"] for e in env if e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "mlflow-auth"]

    assert "MLFLOW_TRACKING_TOKEN" in mlflow_env("j-train")
    assert mlflow_env(preflight) == [], "the preflight pod does not track: it gets no MLflow credentials"


def test_a_spec_change_before_the_start_recreates_the_job(kube: FakeKube) -> None:
    """A queued Job's pod template is immutable: it is deleted, and the new spec is checked and gets its Job."""
    kube.create(path("FineTuneJob", NS), finetunejob(resources={"gpus": 1, "queueName": "team"}))
    reconcile(kube)
    first = finish_preflight(kube)
    reconcile(kube)
    assert kube.stored("Job", NS, "j-train")["spec"]["suspend"] is True
    assert status(kube)["phase"] == "Queued"
    kube.merge_patch(path("FineTuneJob", NS, "j"), {"spec": {"resources": {"gpus": 2}}}, field_manager="kubectl")
    reconcile(kube)
    assert kube.stored("Job", NS, "j-train") is None
    reconcile(kube)
    assert kube.stored("Job", NS, "j-train") is None
    assert preflight_job(kube) != first, "the edited spec is checked by its own preflight Job"
    finish_preflight(kube)
    reconcile(kube)
    job = kube.stored("Job", NS, "j-train")
    limits = job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "2"
    assert status(kube)["observedGeneration"] == 2


def test_an_adapter_of_another_run_is_not_overwritten(kube: FakeKube) -> None:
    foreign = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Adapter",
        "metadata": {"name": "j"},
        "spec": {
            "baseModel": {"uri": "hf://org/model"},
            "artifact": {"uri": "s3://o/other/"},
            "source": {"fineTuneJob": {"name": "other"}},
        },
    }
    kube.create(path("Adapter", NS), foreign)
    kube.create(path("FineTuneJob", NS), finetunejob())
    kube.trainer_reports(
        "FineTuneJob", NS, "j", {"result": {"artifactUri": "s3://o/j/", "sha256": SHA, "sizeBytes": 1}}
    )
    reconcile(kube)
    finish_preflight(kube)
    reconcile(kube)
    start_pod(kube, "j-train")
    complete(kube, "j-train")
    reconcile(kube)
    assert status(kube)["reason"] == "AdapterConflict"
    assert "spec.output.adapterName" in status(kube)["message"]
    assert kube.stored("Adapter", NS, "j")["spec"]["source"]["fineTuneJob"]["name"] == "other"


def test_a_deleted_run_is_not_reconciled(kube: FakeKube) -> None:
    created(kube)
    kube.delete(path("FineTuneJob", NS, "j"))
    assert kube.stored("Job", NS, "j-train") is None  # children follow through their owner reference
    assert reconcile(kube) is None


def conditions(body: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in (body.get("status") or {}).get("conditions") or []}


def trained(name: str, passed: bool) -> dict[str, Any]:
    """The trainer's result of a run that passed its evaluation gate or missed it."""
    result = {"artifactUri": f"s3://o/{name}/", "sha256": SHA, "sizeBytes": 10, "baseModelRevision": "abc"}
    return {**result, "gatePassed": True} if passed else {**result, "gatePassed": False, "gateMessage": MISSED}


@pytest.mark.parametrize(
    ("evaluation", "phase", "reason", "usable"),
    [(GATE, "Failed", "GateFailed", False), (OPT_IN, "Ready", "PublishedUnvalidated", True)],
    ids=["gate failed", "publishUnvalidated"],
)
def test_an_adapter_that_missed_its_gate_is_used_only_when_its_run_opted_in(
    kube: FakeKube, evaluation: dict[str, Any], phase: str, reason: str, usable: bool
) -> None:
    run_to_success(kube, "good", trained("good", True), evaluation=GATE)
    run_to_success(kube, "weak", trained("weak", False), evaluation=evaluation, objective={"type": "reward"})
    run = kube.stored("FineTuneJob", NS, "weak")
    assert (run["status"]["phase"], run["status"]["reason"]) == ("Succeeded", reason)
    assert conditions(run)["Stalled"][0] == ("False" if usable else "True")
    gate = kube.stored("Adapter", NS, "weak")["spec"]["gate"]
    assert gate == {"passed": False, "message": MISSED, "publishUnvalidated": usable}

    assert [reconcile_adapter(kube, NS, name, SETTINGS, NOW) for name in ("good", "weak")] == ["Ready", phase]
    weak = kube.stored("Adapter", NS, "weak")
    assert conditions(weak)["Ready"] == ("True" if usable else "False", reason)
    assert conditions(weak)["Stalled"][0] == ("False" if usable else "True")
    assert conditions(weak)["Validated"] == ("False", "GateFailed")
    assert MISSED in weak["status"]["message"]
    posted = [(e["type"], e["reason"]) for e in kube.events(NS) if e["involvedObject"]["name"] == "weak"]
    assert posted == ([] if usable else [("Warning", reason)] * 2), "the run's and the Adapter's"

    merge = {"sources": [{"name": "good"}, {"name": "weak"}]}
    blend = {"apiVersion": API_VERSION, "kind": "Adapter", "metadata": {"name": "blend"}}
    kube.create(path("Adapter", NS), {**blend, "spec": {"baseModel": {"uri": "hf://org/model"}, "merge": merge}})
    assert reconcile_adapter(kube, NS, "blend", SETTINGS, NOW) == ("Merging" if usable else "Failed")
    assert (kube.stored("Job", NS, "blend-merge") is not None) is usable
    refused = kube.stored("Adapter", NS, "blend")
    if not usable:
        assert conditions(refused)["Stalled"] == ("True", "SourceGateFailed")
        assert f"merge source Adapter weak failed its evaluation gate ({MISSED})" in refused["status"]["message"]

    rlhf = {"type": "rlhf", "rlhf": {"algorithm": "grpo", "reward": {"adapterRef": {"name": "weak"}}}}
    prompts = {"train": {"uri": "s3://d/prompts.jsonl"}, "format": "prompt"}
    kube.create(path("FineTuneJob", NS), finetunejob("rl", objective=rlhf, dataset=prompts))
    reconcile(kube, "rl")
    assert (kube.stored("Job", NS, preflight_job(kube, "rl")) is not None) is usable
    waiting = status(kube, "rl")
    assert (waiting["phase"], waiting["reason"]) == ("Pending", "Preflight" if usable else "AdapterGateFailed")
    if not usable:
        assert MISSED in waiting["message"]


class RejectsJobs(FakeKube):
    """An API server whose admission refuses the Job as invalid (a cluster's ValidatingAdmissionPolicy or webhook)."""

    def __init__(self) -> None:
        super().__init__()
        self.rejected = 0

    def apply(
        self, manifest: Any, *, subresource: str | None = None, field_manager: str = OPERATOR_FIELD_MANAGER
    ) -> Any:
        if manifest["kind"] == "Job" and manifest["metadata"]["name"] == "j-train" and subresource is None:
            self.rejected += 1
            message = "Job.batch \"j-train\" is invalid: ValidatingAdmissionPolicy 'quota' denied request: a quota"
            raise KubeError(422, "Unprocessable Entity", message)
        return super().apply(manifest, subresource=subresource, field_manager=field_manager)


def test_a_job_the_api_server_rejects_fails_the_run_once_with_the_servers_message() -> None:
    kube = RejectsJobs()
    created(kube)
    failed = status(kube)
    assert (failed["phase"], failed["reason"]) == ("Failed", "InvalidSpec")
    assert "rejected the Job j-train" in failed["message"]
    assert "denied request: a quota" in failed["message"]
    reconcile(kube)  # the resync, an event: the same spec is not sent again
    assert kube.rejected == 1
    assert status(kube)["phase"] == "Failed"
    assert [(e["type"], e["reason"]) for e in kube.events(NS) if e["type"] == "Warning"] == [("Warning", "InvalidSpec")]
    kube.merge_patch(path("FineTuneJob", NS, "j"), {"spec": {"backoffLimit": 2}}, field_manager="kubectl")
    reconcile(kube)
    finish_preflight(kube)  # the edited spec is checked again
    reconcile(kube)  # a new generation is tried again
    assert kube.rejected == 2


def trainer_json_of(kube: FakeKube, job: str) -> dict[str, Any]:
    stored = kube.stored("Job", NS, job)
    assert stored is not None
    document: dict[str, Any] = json.loads(stored["spec"]["template"]["metadata"]["annotations"][CONFIG_ANNOTATION])
    return document


def test_every_adapter_the_spec_names_is_resolved_into_trainer_json(kube: FakeKube) -> None:
    """A constrained rlhf run whose cost model and refusal judge are Adapters: it waits, naming the missing one by
    field, until both are Ready; then its preflight and training Jobs carry both artifact URIs."""
    cost = {"name": "harm", "adapterRef": {"name": "harm-cost"}, "threshold": 0.1}
    rlhf = {"type": "rlhf", "rlhf": {"reward": {"builtin": ["length"]}, "constraints": [cost]}}
    judge = {"name": "harm", "metric": "refusal-rate", "dataset": {"uri": "s3://d/harmful.jsonl"}}
    judge["refusal"] = {"adapterRef": {"name": "refusal-judge"}}
    prompts = {"train": {"uri": "s3://d/prompts.jsonl"}, "format": "prompt"}
    kube.create(
        path("FineTuneJob", NS), finetunejob("rl", objective=rlhf, dataset=prompts, evaluation={"suites": [judge]})
    )
    reconcile(kube, "rl")
    waiting = status(kube, "rl")
    assert (waiting["phase"], waiting["reason"]) == ("Pending", "AdapterNotFound")
    assert "cost model Adapter harm-cost (objective.rlhf.constraints[0].adapterRef)" in waiting["message"]

    reward = {"type": "reward"}
    for name in ("harm-cost", "refusal-judge"):
        run_to_success(kube, name, trained(name, True), objective=reward)
        assert reconcile_adapter(kube, NS, name, SETTINGS, NOW) == "Ready"
        reconcile(kube, "rl")
    checks = preflight_job(kube, "rl")
    expected = {"harm-cost": "s3://o/harm-cost/", "refusal-judge": "s3://o/refusal-judge/"}
    assert trainer_json_of(kube, checks)["adapters"] == expected
    finish_preflight(kube, "rl")
    reconcile(kube, "rl")
    assert trainer_json_of(kube, "rl-train")["adapters"] == expected


def test_an_adapter_trained_for_another_role_holds_the_run_back(kube: FakeKube) -> None:
    run_to_success(kube, "chat", trained("chat", True))  # objective sft: a language model, not a scorer
    assert reconcile_adapter(kube, NS, "chat", SETTINGS, NOW) == "Ready"
    rlhf = {"type": "rlhf", "rlhf": {"reward": {"adapterRef": {"name": "chat"}}}}
    kube.create(
        path("FineTuneJob", NS), finetunejob("rl", objective=rlhf, dataset={"train": {"uri": "s3://d/p.jsonl"}})
    )
    reconcile(kube, "rl")
    waiting = status(kube, "rl")
    assert (waiting["phase"], waiting["reason"]) == ("Pending", "AdapterNotUsable")
    assert "trained with objective sft" in waiting["message"]
    assert kube.stored("Job", NS, "rl-train") is None
