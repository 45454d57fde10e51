"""Plan, Adapter status, metrics, settings and the operator's command line: small pure pieces."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kubetune.api.v1alpha1.adapter import Adapter, AdapterStatus, Artifact
from kubetune.api.v1alpha1.finetunejob import FineTuneJob, TrainResult
from kubetune.reconcile.adapter_status import adapter_status, merge_verdict, source_problem
from kubetune.reconcile.observed import Observed
from kubetune.reconcile.plan import children_stale, plan
from kubetune.settings import OperatorSettings

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SHA = "a" * 64
RESULT = {"artifactUri": "s3://o/j/", "sha256": SHA, "sizeBytes": 1}
COMPLETE = {"spec": {"suspend": False}, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}


def ftj(status: dict[str, Any] | None = None, generation: int = 1, **spec: Any) -> FineTuneJob:
    body: dict[str, Any] = {
        "baseModel": {"uri": "hf://org/model"},
        "dataset": {"train": {"uri": "s3://d/t.jsonl"}},
        "method": {"type": "lora", "lora": {}},
        "objective": {"type": "sft"},
        "output": {"uri": "s3://o/"},
    }
    body.update(spec)
    return FineTuneJob.model_validate(
        {"metadata": {"name": "j", "namespace": "ml", "generation": generation}, "spec": body, "status": status}
    )


def test_waits_for_inputs_before_creating_anything() -> None:
    decided = plan(ftj(), Observed(missing_secrets=("hf",)), "j")
    assert not decided.apply_children
    assert plan(ftj(), Observed(), "j").apply_children


def test_finished_runs_are_not_recreated() -> None:
    done = ftj(status={"phase": "Succeeded", "observedGeneration": 1})
    assert not plan(done, Observed(), "j").apply_children


def test_children_applied_only_when_something_can_differ() -> None:
    seen = ftj(status={"phase": "Running", "observedGeneration": 1})
    running = {"spec": {"suspend": False}}
    assert children_stale(seen, None, False)
    assert not children_stale(seen, running, False)
    assert children_stale(seen, running, True)
    assert children_stale(ftj(status={"observedGeneration": 1}, generation=2), running, False)


def test_publish_once_per_result() -> None:
    with_result = ftj(status={"phase": "Succeeded", "observedGeneration": 1, "result": RESULT})
    first = plan(with_result, Observed(job=COMPLETE), "j")
    assert first.publish_adapter
    assert first.adapter_ref == "j"
    published = {"spec": {"artifact": {"sha256": SHA}, "source": {"fineTuneJob": {"name": "j"}}}}
    again = plan(with_result, Observed(job=COMPLETE, adapter=published), "j")
    assert not again.publish_adapter
    assert again.adapter_ref == "j"
    assert not plan(ftj(status={"phase": "Running"}), Observed(job=COMPLETE), "j").publish_adapter


def test_adapter_of_another_run_is_not_overwritten() -> None:
    with_result = ftj(status={"phase": "Succeeded", "result": RESULT})
    foreign = {"spec": {"source": {"fineTuneJob": {"name": "someone-else"}}}}
    decided = plan(with_result, Observed(job=COMPLETE, adapter=foreign), "j")
    assert not decided.publish_adapter
    assert "someone-else" in (decided.adapter_conflict or "")


def adapter(name: str = "m", base: str = "hf://org/model", **spec: Any) -> Adapter:
    body: dict[str, Any] = {"baseModel": {"uri": base}}
    body.update(spec)
    return Adapter.model_validate({"metadata": {"name": name, "namespace": "ml", "generation": 1}, "spec": body})


def source(base: str = "hf://org/model", phase: str = "Ready", revision: str = "r1") -> dict[str, Any]:
    return {"spec": {"baseModel": {"uri": base, "revision": revision}}, "status": {"phase": phase}}


MERGED = adapter(merge={"sources": [{"name": "a"}, {"name": "b"}]})


@pytest.mark.parametrize(
    ("sources", "phase", "reason"),
    [
        ({"a": source(), "b": None}, "Pending", "SourceNotFound"),
        ({"a": source(), "b": source(phase="Pending")}, "Pending", "SourceNotReady"),
        ({"a": source(), "b": source(base="hf://org/other")}, "Failed", "BaseModelMismatch"),
        ({"a": source(), "b": source(revision="r2")}, "Failed", "BaseModelMismatch"),
    ],
)
def test_bad_merge_sources_are_conditions(sources: dict[str, Any], phase: str, reason: str) -> None:
    problem = source_problem(MERGED, sources)
    assert problem is not None
    assert (problem.phase, problem.reason) == (phase, reason)
    status = adapter_status(MERGED, NOW, verdict=merge_verdict(MERGED, sources, None, ()))
    assert status.phase == phase
    assert status.conditions[0].reason == reason


def test_merge_job_lifecycle() -> None:
    ok = {"a": source(), "b": source()}
    assert source_problem(MERGED, ok) is None
    running = {"status": {"active": 1}}
    assert merge_verdict(MERGED, ok, running, ()).phase == "Merging"
    assert merge_verdict(MERGED, ok, COMPLETE, ()).reason == "NoArtifact"
    produced = MERGED.model_copy(update={"status": AdapterStatus(phase="Merging", artifact=Artifact(uri="s3://o/m/"))})
    done = merge_verdict(produced, ok, COMPLETE, ())
    assert (done.phase, done.reason) == ("Ready", "Merged")
    failed_job = {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]}}
    pod = {
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {"name": "trainer", "state": {"terminated": {"exitCode": 78, "message": "config error: bad weights"}}}
            ],
        }
    }
    failed = merge_verdict(MERGED, ok, failed_job, (pod,))
    assert (failed.phase, failed.reason, failed.message) == ("Failed", "ConfigError", "config error: bad weights")


def test_published_adapter_validated_from_gate() -> None:
    trained = adapter(name="t", artifact={"uri": "s3://o/t/"})
    gated = adapter_status(trained, NOW, result=TrainResult.model_validate({**RESULT, "gatePassed": False}))
    assert gated.phase == "Ready"
    validated = next(c for c in gated.conditions if c.type == "Validated")
    assert (validated.status, validated.reason) == ("False", "GateFailed")
    kept = adapter_status(trained.model_copy(update={"status": gated}), NOW)
    assert next(c for c in kept.conditions if c.type == "Validated") == validated


def test_metrics_count_transitions_without_object_labels() -> None:
    from kubetune import metrics

    common = {"namespace": "m-ns", "method": "lora", "created": "2026-11-29T11:00:00Z", "completion_time": None}
    metrics.record_finetunejob(
        name="a", before=None, after="Running", reason="Training", start_time="2026-11-29T11:01:00Z", **common
    )
    metrics.record_finetunejob(
        name="a", before="Running", after="Running", reason="Training", start_time="2026-11-29T11:01:00Z", **common
    )
    metrics.record_finetunejob(
        name="b",
        before="Running",
        after="Failed",
        reason="OOMKilled",
        start_time=None,
        **{**common, "completion_time": "2026-11-29T11:10:00Z"},
    )
    value = metrics.REGISTRY.get_sample_value
    assert value("kubetune_finetunejobs", {"namespace": "m-ns", "phase": "Running"}) == 1
    assert value("kubetune_finetunejobs", {"namespace": "m-ns", "phase": "Failed"}) == 1
    assert value("kubetune_finetunejob_failures_total", {"reason": "OOMKilled"}) >= 1
    assert value("kubetune_finetunejob_time_to_running_seconds_sum", {"method": "lora"}) >= 60
    metrics.record_finetunejob(
        name="c", before=None, after="Running", reason="Training", start_time=None, **{**common, "created": None}
    )
    oldest = "kubetune_finetunejobs_oldest_creation_timestamp_seconds"
    created = datetime(2026, 11, 29, 11, tzinfo=UTC).timestamp()
    assert value(oldest, {"namespace": "m-ns", "phase": "Running"}) == created  # c has no timestamp: ignored
    metrics.FINETUNEJOB_PHASES.set("m-ns", "c", None)
    metrics.FINETUNEJOB_PHASES.set("m-ns", "a", None)
    assert value(oldest, {"namespace": "m-ns", "phase": "Running"}) is None
    assert value("kubetune_finetunejobs", {"namespace": "m-ns", "phase": "Running"}) is None
    exported = "".join(str(m) for m in metrics.REGISTRY.collect())
    assert "'name':" not in exported


def test_settings_from_env_mapping() -> None:
    settings = OperatorSettings.from_env(
        {
            "KUBETUNE_TRAINER_IMAGE": "r/t:1",
            "KUBETUNE_ERROR_BACKOFFS": "1, 2",
            "KUBETUNE_METRICS_PORT": "0",
            "KUBETUNE_POD_ANNOTATION_PREFIXES": "a/,b/",
            "UNRELATED": "x",
        }
    )
    assert settings.trainer_image == "r/t:1"
    assert settings.error_backoffs == (1.0, 2.0)
    assert settings.metrics_port == 0
    assert settings.pod_annotation_prefixes == ("a/", "b/")
    with pytest.raises(ValueError, match="metrics_port"):
        OperatorSettings.from_env({"KUBETUNE_METRICS_PORT": "-1"})


def test_service_account_settings_from_json_env() -> None:
    settings = OperatorSettings.from_env(
        {
            "KUBETUNE_SERVICE_ACCOUNT_ANNOTATIONS": '{"iam.gke.io/gcp-service-account": "t@p.iam.gserviceaccount.com"}',
            "KUBETUNE_SERVICE_ACCOUNT_ANNOTATIONS_BY_NAMESPACE": '{"ml": {"iam.gke.io/gcp-service-account": "ml@p"}}',
            "KUBETUNE_IMAGE_PULL_SECRETS": "regcred, other",
            "KUBETUNE_CHECK_SECRETS": "false",
        }
    )
    assert settings.service_account_annotations_for("ml") == {"iam.gke.io/gcp-service-account": "ml@p"}
    assert settings.service_account_annotations_for("b") == {
        "iam.gke.io/gcp-service-account": "t@p.iam.gserviceaccount.com"
    }
    assert settings.image_pull_secrets == ("regcred", "other")
    assert settings.check_secrets is False
    with pytest.raises(ValueError, match="KUBETUNE_SERVICE_ACCOUNT_ANNOTATIONS must be a JSON object"):
        OperatorSettings.from_env({"KUBETUNE_SERVICE_ACCOUNT_ANNOTATIONS": "role=arn"})


def test_operator_command_line() -> None:
    from kubetune.handlers import parse_args

    options = parse_args(["--standalone", "-n", "a", "-n", "b", "--liveness", "http://0.0.0.0:8081/healthz"])
    assert options.standalone
    assert options.namespace == ["a", "b"]
    assert options.liveness == "http://0.0.0.0:8081/healthz"
    ha = parse_args(["-A", "--peering", "kubetune", "--priority", "10"])
    assert (ha.all_namespaces, ha.peering, ha.priority) == (True, "kubetune", 10)
    with pytest.raises(SystemExit):
        parse_args(["--standalone", "--peering", "x"])


RLHF = {
    "type": "rlhf",
    "rlhf": {"algorithm": "grpo", "reward": {"adapterRef": {"name": "rm"}}},
}


def test_unknown_reward_adapter_waits_with_a_condition() -> None:
    from kubetune.reconcile.status import compute_status

    model = ftj(objective=RLHF, dataset={"train": {"uri": "s3://d/p.jsonl"}, "format": "prompt"})
    assert not plan(model, Observed(), "j").apply_children
    missing = compute_status(model, Observed(), NOW, "j-train")
    assert (missing.phase, missing.reason) == ("Pending", "AdapterNotFound")
    assert "rm" in (missing.message or "")
    not_ready = {"spec": {"artifact": {"uri": "s3://rm/"}}, "status": {"phase": "Pending"}}
    assert compute_status(model, Observed(reward_adapter=not_ready), NOW, "j").reason == "AdapterNotReady"
    ready = {"spec": {"artifact": {"uri": "pvc://models/rm/"}}, "status": {"phase": "Ready"}}
    assert plan(model, Observed(reward_adapter=ready), "j").apply_children


def test_reward_model_uri_reaches_the_trainer_as_env_and_volume() -> None:
    from kubetune.render.bundle import bundle

    model = ftj(objective=RLHF, dataset={"train": {"uri": "s3://d/p.jsonl"}, "format": "prompt"})
    model = model.model_copy(update={"metadata": model.metadata.model_copy(update={"uid": "u"})})
    job = bundle(model, OperatorSettings(), reward_model_uri="pvc://models/rm/")[-1]
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBETUNE_REWARD_MODEL_URI"] == "pvc://models/rm/"
    assert {"name": "pvc-models", "mountPath": "/mnt/pvc/models", "readOnly": True} in container["volumeMounts"]


@pytest.mark.parametrize(
    ("kind", "body", "expected"),
    [
        (
            "FineTuneJob",
            {"metadata": {"generation": 1}, "status": {"phase": "Running", "observedGeneration": 1}},
            False,
        ),
        ("FineTuneJob", {"metadata": {"generation": 1}, "status": {"phase": "Failed", "observedGeneration": 1}}, True),
        ("FineTuneJob", {"metadata": {"generation": 2}, "status": {"phase": "Failed", "observedGeneration": 1}}, False),
        (
            "FineTuneJob",
            {
                "metadata": {"generation": 1},
                "status": {"phase": "Succeeded", "observedGeneration": 1, "result": RESULT},
            },
            False,
        ),
        (
            "FineTuneJob",
            {
                "metadata": {"generation": 1},
                "status": {
                    "phase": "Succeeded",
                    "observedGeneration": 1,
                    "result": RESULT,
                    "adapterRef": {"name": "j"},
                },
            },
            True,
        ),
        (
            "Adapter",
            {
                "metadata": {"generation": 1},
                "spec": {"merge": {}},
                "status": {"phase": "Merging", "observedGeneration": 1},
            },
            False,
        ),
        (
            "Adapter",
            {"metadata": {"generation": 1}, "spec": {}, "status": {"phase": "Ready", "observedGeneration": 1}},
            True,
        ),
        ("Adapter", {"metadata": {"generation": 1}}, False),
    ],
)
def test_settled_objects_leave_the_resync(kind: str, body: dict[str, Any], expected: bool) -> None:
    from kubetune.reconcile.plan import settled

    assert settled(kind, body) is expected


def test_resync_thread_reconciles_tracked_objects_until_stopped() -> None:
    import threading

    from kubetune.handlers.resync import Resync

    seen: list[tuple[str, str]] = []
    called = threading.Event()

    def reconcile(namespace: str, name: str) -> None:
        seen.append((namespace, name))
        called.set()
        raise RuntimeError("one failure does not stop the loop")

    resync = Resync(0.01, {"FineTuneJob": reconcile})
    resync.track("FineTuneJob", "ns", "a", True)
    resync.track("FineTuneJob", "ns", "b", True)
    resync.track("FineTuneJob", "ns", "b", False)
    resync.start()
    assert called.wait(5)
    resync.stop()
    assert set(seen) == {("ns", "a")}
    assert resync.tracked() == [("FineTuneJob", "ns", "a")]


class RecordingKube:
    """In-memory stand-in for kubetune.k8s.client.Kube: nothing exists; every read is recorded."""

    def __init__(self) -> None:
        self.reads: list[str] = []

    def get(self, url: str, *, metadata_only: bool = False) -> None:
        self.reads.append(url)

    def list(self, url: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        self.reads.append(url)
        return []


@pytest.mark.parametrize("check_secrets", [True, False])
def test_secret_lookup_only_when_the_operator_may_read_secrets(check_secrets: bool) -> None:
    from kubetune.k8s.observe import observe_finetunejob

    kube = RecordingKube()
    run = ftj(baseModel={"uri": "hf://org/model", "credentialsSecretRef": {"name": "hf-token"}})
    observed = observe_finetunejob(kube, run, "j-train", "j", [], check_secrets=check_secrets)  # type: ignore[arg-type]
    asked = "/api/v1/namespaces/ml/secrets/hf-token" in kube.reads
    assert asked is check_secrets
    assert observed.missing_secrets == (("hf-token",) if check_secrets else ())
