"""`kubetune lab run NAME --cluster` without a cluster: the pure half (documents -> waves and namespaces,
observed status -> outcomes and run records) and the backend's apply-and-follow loop against the in-memory
API (tests/support/fake_kube.py), with statuses written as the trainer writes them. The run against the real
control plane and real trainer pods is tests/e2e/test_lab_cluster.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kubetune.api.v1alpha1.finetunejob import FineTuneJobStatus, Progress, TrainResult
from kubetune.cli import main
from kubetune.k8s.interface import KubeError, path
from kubetune.lab_cluster import ClusterLab, connect
from kubetune.labs.cluster import ADAPTER, FINETUNEJOB, adapter_record, in_namespace, job_record, observe, waves
from kubetune.labs.definition import LabError, artifact_uri, expand, lab_directory, load_lab, name_of, of_kind
from kubetune.labs.runner import REPORT_FILE, RESULTS_FILE, run_lab_on_cluster
from kubetune_dev.controlplane.ports import free_ports
from support.fake_kube import FakeKube

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
LABS_DIR = REPO / "labs"
NAMESPACE = "lab-ns"


def lab_jobs(name: str) -> list[dict[str, Any]]:
    lab = load_lab(lab_directory(LABS_DIR, name))
    setting = lab.setting("gpu")
    return of_kind(expand(lab, setting, model_uri=str(setting.model)), FINETUNEJOB)


def test_independent_jobs_run_in_one_wave() -> None:
    jobs = lab_jobs("peft-sweep")
    assert [[name_of(j) for j in wave] for wave in waves(jobs)] == [[name_of(j) for j in jobs]]


def test_a_job_starting_from_another_jobs_artifact_waits_for_it() -> None:
    jobs = lab_jobs("forgetting")
    first, *rest = waves(jobs)
    firsts = {name_of(j) for j in first}
    assert rest, "task B starts from task A's artifact"
    for wave in rest:
        for job in wave:
            base = job["spec"]["baseModel"]["uri"].rstrip("/") + "/"
            assert base in {artifact_uri(j) for j in jobs if name_of(j) in firsts}


def test_jobs_starting_from_each_other_are_refused() -> None:
    a, b = lab_jobs("peft-sweep")[:2]
    a["spec"]["baseModel"]["uri"] = artifact_uri(b)
    b["spec"]["baseModel"]["uri"] = artifact_uri(a)
    with pytest.raises(LabError, match="cycle"):
        waves([a, b])


def test_in_namespace_moves_copies() -> None:
    jobs = lab_jobs("peft-sweep")
    moved = in_namespace(jobs, NAMESPACE)
    assert {j["metadata"]["namespace"] for j in moved} == {NAMESPACE}
    assert {j["metadata"]["namespace"] for j in jobs} == {"kubetune-labs"}


def succeeded(job: dict[str, Any], metrics: dict[str, float], size: int) -> dict[str, Any]:
    """`job` as the operator and its trainer leave it: Succeeded, with the trainer's result."""
    result = TrainResult(artifact_uri=artifact_uri(job), sha256="0" * 64, size_bytes=size, metrics=metrics)
    status = FineTuneJobStatus(
        phase="Succeeded",
        start_time="2026-12-01T10:00:00Z",
        completion_time="2026-12-01T10:01:30Z",
        result=result,
    )
    return {**job, "status": status.model_dump(mode="json", by_alias=True, exclude_none=True)}


def test_job_record_reads_the_result_and_the_run_time() -> None:
    job = lab_jobs("peft-sweep")[0]
    record = job_record(succeeded(job, {"params.trainable": 10.0}, 4096))
    assert record.metrics == {"params.trainable": 10.0}
    assert record.artifact == artifact_uri(job)
    assert (record.artifact_bytes, record.process_seconds) == (4096, 90.0)
    assert record.to_json()["history"] == []
    assert record.to_json()["files"] == {}


def test_a_succeeded_job_without_a_result_is_an_error() -> None:
    job = succeeded(lab_jobs("peft-sweep")[0], {}, 1)
    del job["status"]["result"]
    with pytest.raises(LabError, match="FineTuneJob lora-r4 succeeded but its status has no result"):
        job_record(job)


def test_adapter_record_reads_the_merged_artifact() -> None:
    adapter = {
        "metadata": {"name": "fused"},
        "spec": {"metrics": {"qa.loss": 1.5}},
        "status": {"phase": "Ready", "artifact": {"uri": "pvc://c/fused/", "sizeBytes": 77}},
    }
    record = adapter_record(adapter)
    assert (record.artifact, record.artifact_bytes, record.metrics) == ("pvc://c/fused/", 77, {"qa.loss": 1.5})


def test_observe_names_what_is_pending_and_what_failed_and_why() -> None:
    objects: dict[str, dict[str, Any] | None] = {
        "absent": None,
        "running": {"status": {"phase": "Running"}},
        "done": {"status": {"phase": "Succeeded"}},
        "broken": {"status": {"phase": "Failed", "reason": "OOMKilled", "message": "raise resources.memory"}},
    }
    observed = observe(FINETUNEJOB, objects)
    assert observed.pending == ["absent", "running"]
    assert observed.failures == ["FineTuneJob broken failed (OOMKilled): raise resources.memory"]
    assert observe(ADAPTER, {"a": {"status": {"phase": "Ready"}}}).pending == []


class TrainingKube(FakeKube):
    """The in-memory API plus what the operator and trainer would write: a FineTuneJob applied is Running at
    the next read and finished at the one after, with the metrics `outcome` gives it (None: it fails)."""

    def __init__(self, outcome: Any) -> None:
        super().__init__()
        self.outcome = outcome
        self.reads: dict[str, int] = {}

    def get(self, url: str, *, metadata_only: bool = False) -> dict[str, Any] | None:
        found = super().get(url, metadata_only=metadata_only)
        if found is None or found["kind"] != FINETUNEJOB:
            return found
        name = found["metadata"]["name"]
        self.reads[name] = self.reads.get(name, 0) + 1
        if self.reads[name] == 1:
            progress = Progress(step=1, total_steps=4).model_dump(mode="json", by_alias=True, exclude_none=True)
            status: dict[str, Any] = {"phase": "Running", "progress": progress}
        else:
            outcome = self.outcome(found)
            status = (
                succeeded(found, *outcome)["status"]
                if outcome
                else {"phase": "Failed", "reason": "TrainerError", "message": "the trainer exited with 1"}
            )
        self.trainer_reports(FINETUNEJOB, found["metadata"]["namespace"], name, status)
        return super().get(url)


def by_rank(job: dict[str, Any]) -> tuple[dict[str, float], int]:
    """Made-up numbers that rise with the rank, full largest: the plumbing must carry them into the report."""
    method = job["spec"]["method"]
    trainable = 1000.0 * method["lora"]["rank"] if method["type"] == "lora" else 100_000.0
    return {"params.trainable": trainable, "params.total": 100_000.0}, int(trainable) + 500


def run_on(kube: FakeKube, name: str, out: Path, say: Callable[[str], None] = lambda _: None) -> Path:
    """`kubetune lab run NAME --cluster` against `kube` (polling without pause)."""
    backend = ClusterLab(kube, NAMESPACE, timeout_seconds=5, poll_seconds=0, say=say)
    return run_lab_on_cluster(
        LABS_DIR, name, setting_name="small", model_uri=None, backend=backend, namespace=NAMESPACE, out=out
    )


def test_a_cluster_run_writes_the_report_from_status(tmp_path: Path) -> None:
    kube = TrainingKube(by_rank)
    said: list[str] = []
    folder = run_on(kube, "peft-sweep", tmp_path, said.append)
    results = json.loads((folder / RESULTS_FILE).read_text())
    assert (results["report"]["runOn"], results["report"]["namespace"]) == ("cluster", NAMESPACE)
    runs = results["raw"]["runs"]
    assert runs["lora-r8"]["metrics"]["params.trainable"] == 8000.0
    assert runs["full"]["artifactBytes"] == 100_500
    sizes = [c for c in results["report"]["checks"] if c["claim"].startswith(("Trainable parameters", "Size on disk"))]
    assert len(sizes) == 2
    assert all(c["holds"] for c in sizes), sizes
    assert "whole artifact" in sizes[1]["claim"]  # a cluster run sees whole artifacts, and says so
    text = (folder / REPORT_FILE).read_text()
    assert f"run on a cluster through the operator (namespace {NAMESPACE})" in text
    assert "--cluster --namespace lab-ns" in text
    assert "on a cluster" in (tmp_path / "README.md").read_text()
    assert any("FineTuneJob lora-r4: phase=Running  step 1/4 (25%)" in line for line in said), said
    assert kube.stored(FINETUNEJOB, NAMESPACE, "full") is not None


def test_a_failed_job_stops_the_run_and_is_named(tmp_path: Path) -> None:
    kube = TrainingKube(lambda job: None if name_of(job) == "lora-r8" else by_rank(job))
    with pytest.raises(LabError, match=r"FineTuneJob lora-r8 failed \(TrainerError\): the trainer exited with 1"):
        run_on(kube, "peft-sweep", tmp_path)
    assert not (tmp_path / "peft-sweep").exists()


def test_objects_left_from_an_earlier_run_are_not_reused(tmp_path: Path) -> None:
    kube = TrainingKube(by_rank)
    job = in_namespace(lab_jobs("peft-sweep")[:1], NAMESPACE)[0]
    kube.apply(job)
    backend = ClusterLab(kube, NAMESPACE, timeout_seconds=5, poll_seconds=0, say=lambda _: None)
    with pytest.raises(LabError, match="lora-r4 already in namespace lab-ns"):
        backend.train(lab_jobs("peft-sweep"))
    assert kube.get(path(FINETUNEJOB, NAMESPACE, "lora-r8")) is None  # nothing applied


def test_a_job_that_never_finishes_times_out_by_name() -> None:
    kube = FakeKube()  # nobody runs the jobs
    backend = ClusterLab(kube, NAMESPACE, timeout_seconds=0, poll_seconds=0, say=lambda _: None)
    with pytest.raises(LabError, match="lora-r4, lora-r8, lora-r16, full not finished after 0s"):
        backend.train(lab_jobs("peft-sweep"))


@pytest.mark.parametrize("name", ["qlora-memory", "forgetting"])
def test_the_other_training_only_labs_report_from_status(name: str, tmp_path: Path) -> None:
    """The metrics the trainer reported in the committed example run (docs/labs), now as status."""
    local_run = json.loads((REPO / "docs" / "labs" / name / RESULTS_FILE).read_text())
    example = local_run["raw"]["runs"]
    kube = TrainingKube(lambda job: (example[name_of(job)]["metrics"], sum(example[name_of(job)]["files"].values())))
    folder = run_on(kube, name, tmp_path)
    results = json.loads((folder / RESULTS_FILE).read_text())
    assert results["report"]["runOn"] == "cluster"
    assert results["report"]["checks"] == local_run["report"]["checks"]  # the same analysis, the same verdicts
    assert set(results["raw"]["runs"]) == {name_of(j) for j in lab_jobs(name)}
    applied = [
        n for verb, kind, n in kube.writes if (verb, kind) == ("apply", FINETUNEJOB) and n in results["raw"]["runs"]
    ]
    if name == "forgetting":  # task B's jobs start from task A's artifact: applied after it finished
        assert applied[0] == "task-a"
        assert kube.reads["task-a"] >= 2


@pytest.mark.parametrize("name", ["dpo-vs-rl", "fusion"])
def test_labs_that_score_here_refuse_a_cluster_before_applying(name: str, tmp_path: Path) -> None:
    kube = FakeKube()
    with pytest.raises(LabError, match="runs only locally: drop --cluster"):
        run_on(kube, name, tmp_path)
    assert kube.writes == []


def test_the_cli_says_what_a_cluster_run_needs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = ["lab", "run", "peft-sweep", "--labs-dir", str(LABS_DIR), "--out", str(tmp_path), "--cluster"]
    assert main([*run, "--model", str(tmp_path)]) == 2
    assert "on a cluster pass --model-uri" in capsys.readouterr().out
    assert main([*run, "--kubeconfig", str(tmp_path / "missing")]) == 1
    assert "no cluster to run on" in capsys.readouterr().out


class FlakyKube(TrainingKube):
    """The API server fails the first read after the jobs were applied."""

    def __init__(self) -> None:
        super().__init__(by_rank)
        self.failed = False

    def get(self, url: str, *, metadata_only: bool = False) -> dict[str, Any] | None:
        if self.objects and not self.failed:
            self.failed = True
            raise KubeError(503, "ServiceUnavailable", "etcd leader changed")
        return super().get(url, metadata_only=metadata_only)


def test_a_failed_read_while_following_is_retried(tmp_path: Path) -> None:
    said: list[str] = []
    folder = run_on(FlakyKube(), "peft-sweep", tmp_path, said.append)
    assert (folder / RESULTS_FILE).is_file()
    assert any("reading FineTuneJobs failed (503 ServiceUnavailable: etcd leader changed); retrying" in s for s in said)


def test_an_unreachable_api_server_is_a_clear_error(tmp_path: Path) -> None:
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{free_ports(1)[0]}"}}],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    (tmp_path / "kubeconfig").write_text(json.dumps(kubeconfig))
    backend = ClusterLab(connect(str(tmp_path / "kubeconfig")), NAMESPACE, timeout_seconds=5, say=lambda _: None)
    with pytest.raises(LabError, match="cannot read FineTuneJobs in namespace lab-ns"):
        backend.train(lab_jobs("peft-sweep"))


def test_model_uri_replaces_the_labs_model_in_what_is_applied(tmp_path: Path) -> None:
    kube = TrainingKube(by_rank)
    backend = ClusterLab(kube, NAMESPACE, timeout_seconds=5, poll_seconds=0, say=lambda _: None)
    folder = run_lab_on_cluster(
        LABS_DIR,
        "peft-sweep",
        setting_name="small",
        model_uri="pvc://models/tiny",
        backend=backend,
        namespace=NAMESPACE,
        out=tmp_path,
    )
    applied = kube.stored(FINETUNEJOB, NAMESPACE, "lora-r4")
    assert applied is not None
    assert applied["spec"]["baseModel"]["uri"] == "pvc://models/tiny"
    assert "--model-uri pvc://models/tiny" in (folder / REPORT_FILE).read_text()
