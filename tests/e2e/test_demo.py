"""The main job end to end: operator + trainer on the local control plane, as `make demo` runs it.

Real pods run the real trainer as local processes on the local node; nothing is faked between
`kubectl apply` and the published Adapter.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kubetune_dev.chart import CHART, MONITORING_VALUES, PROMETHEUS_OPERATOR_APIS, only, template
from kubetune_dev.controlplane.paths import find_binaries
from kubetune_dev.controlplane.ports import free_ports
from kubetune_dev.demo import MANIFEST, REPO, Demo, DemoResult
from kubetune_dev.monitoring import (
    ONLY_ON_A_GPU,
    SeriesCollector,
    dashboard_expressions,
    rule_expressions,
    unknown_names,
)
from support.gitops_health import argocd_health, kstatus

pytestmark = pytest.mark.e2e


TRAINER_METRICS_PORT = free_ports(1)[0]
DASHBOARD = json.loads((CHART / "dashboards" / "kubetune.json").read_text())


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    operator_env = {"KUBETUNE_TRAINER_METRICS_PORT": str(TRAINER_METRICS_PORT)}
    with Demo(
        tmp_path_factory.mktemp("demo"), log=lambda line: print(line, flush=True), operator_env=operator_env
    ) as running:
        yield running


@pytest.fixture(scope="module")
def served(demo: Demo) -> Iterator[SeriesCollector]:
    """Every series the operator and the trainers serve while the module's runs go on (polled, since a trainer
    serves its metrics only while it trains)."""
    urls = [f"http://127.0.0.1:{port}/metrics" for port in (demo.metrics_port, TRAINER_METRICS_PORT)]
    with SeriesCollector(urls) as collector:
        yield collector


@pytest.fixture(scope="module")
def result(demo: Demo, served: SeriesCollector) -> DemoResult:
    return demo.run(timeout=600)


@pytest.fixture(scope="module")
def failed(demo: Demo, served: SeriesCollector, result: DemoResult) -> DemoResult:
    """A run whose dataset does not exist: the preflight pod's trainer exits 78 and the FineTuneJob fails with
    ConfigError before a training Job exists."""
    document = yaml.safe_load(MANIFEST.read_text())
    document["metadata"]["name"] = "demo-missing-data"
    document["spec"]["dataset"]["train"]["uri"] = "pvc://demo-data/datasets/missing.jsonl"
    document["spec"]["output"]["adapterName"] = "demo-missing-data"
    return demo.train(document, timeout=300)


def test_finetunejob_trains_to_success_with_live_progress(result: DemoResult) -> None:
    status = result.finetunejob["status"]
    assert status["phase"] == "Succeeded", status
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Succeeded"]["status"] == "True"
    assert conditions["Validated"]["status"] == "True"
    progress = status["progress"]
    assert progress["step"] == progress["totalSteps"] == 40
    assert progress["percent"] == 100
    assert progress["loss"] < 6.2, "loss starts near ln(vocab) = 6.24 and must go down"
    assert status["result"]["gatePassed"] is True
    assert status["result"]["metrics"]["heldout.perplexity"] < 400


def test_adapter_is_published_with_lineage_and_files_on_the_claim(result: DemoResult) -> None:
    adapter = result.adapter
    assert adapter is not None
    assert adapter["status"]["phase"] == "Ready"
    spec = adapter["spec"]
    outcome = result.finetunejob["status"]["result"]
    assert spec["artifact"]["sha256"] == outcome["sha256"]
    assert spec["artifact"]["uri"] == outcome["artifactUri"]
    assert spec["source"]["fineTuneJob"]["name"] == result.finetunejob["metadata"]["name"]
    assert spec["source"]["fineTuneJob"]["uid"] == result.finetunejob["metadata"]["uid"]
    assert spec["method"]["type"] == "lora"
    assert spec["method"]["rank"] == 8
    assert spec["baseModel"]["uri"] == "pvc://demo-data/models/tiny-llama"
    relative = outcome["artifactUri"].removeprefix("pvc://demo-data/").strip("/")
    files = {p.name for p in (result.claim_dir / relative).iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "kubetune.json"} <= files
    manifest = json.loads((result.claim_dir / relative / "kubetune.json").read_text())
    assert manifest["method"]["resolved"] == "lora"
    assert manifest["dataset"]["prepReport"]["rows_in"] > 0
    assert manifest["baseModel"]["uri"] == "pvc://demo-data/models/tiny-llama"


def test_gitops_tools_read_the_trained_run_and_its_adapter_as_healthy(result: DemoResult) -> None:
    """kstatus (the real library) and the chart's Argo CD check, on the objects of a run with the real trainer."""
    assert result.adapter is not None
    objects = [result.finetunejob, result.adapter]
    assert [v["status"] for v in kstatus(objects)] == ["Current", "Current"]
    assert [argocd_health(o)["status"] for o in objects] == ["Healthy", "Healthy"]


def test_a_real_preflight_pod_checked_the_spec_before_the_training_job(demo: Demo, result: DemoResult) -> None:
    """The trainer image's `--preflight` ran as a pod of its own on the local node, and only then the training Job."""
    status = result.finetunejob["status"]
    report = status["preflight"]
    assert (report["method"], report["memoryFit"]) == ("lora", "Fits"), report
    assert report["summary"].startswith("lora: ")
    assert report["deviceMemoryBytes"] == 16 * 2**30, "a CPU run is checked against the trainer's host budget"
    passed = next(c for c in status["conditions"] if c["type"] == "PreflightPassed")
    assert (passed["status"], passed["message"]) == ("True", report["summary"])
    jobs = json.loads(demo.kubectl("get", "jobs", "-n", "demo", "-l", "kubetune.io/job=demo-tiny-lora", "-o", "json"))
    by_component = {j["metadata"]["labels"]["app.kubernetes.io/component"]: j for j in jobs["items"]}
    checked, trained = by_component["preflight"], by_component["trainer"]
    assert checked["status"]["succeeded"] == 1
    assert checked["status"]["completionTime"] <= trained["metadata"]["creationTimestamp"]
    pods = json.loads(
        demo.kubectl("get", "pods", "-n", "demo", "-l", "app.kubernetes.io/component=preflight", "-o", "json")
    )
    (terminated,) = [c["state"]["terminated"] for p in pods["items"] for c in p["status"]["containerStatuses"]]
    assert json.loads(terminated["message"]) == report


def test_operator_metrics_count_the_succeeded_job(demo: Demo, result: DemoResult) -> None:
    assert result.finetunejob["status"]["phase"] == "Succeeded"
    with urllib.request.urlopen(f"http://127.0.0.1:{demo.metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert 'kubetune_finetunejobs{namespace="demo",phase="Succeeded"} 1.0' in text


def test_kubetune_run_trains_the_same_manifest_locally(tmp_path: Path, result: DemoResult) -> None:
    claim = tmp_path / "pvc" / "demo-data"
    for folder in ("models", "datasets"):
        shutil.copytree(result.claim_dir / folder, claim / folder)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubetune.cli",
            "run",
            str(REPO / "examples/demo-tiny-lora.yaml"),
            "--workdir",
            str(tmp_path / "work"),
            "--pvc-root",
            str(tmp_path / "pvc"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert list((claim / "adapters").rglob("adapter_model.safetensors"))


def test_a_bad_dataset_fails_the_run_with_the_trainers_config_error(demo: Demo, failed: DemoResult) -> None:
    status = failed.finetunejob["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "ConfigError")
    assert "missing.jsonl" in status["message"]
    assert status["attempts"] == 0, "found by the preflight pod: no training attempt"
    selector = "kubetune.io/job=demo-missing-data"
    jobs = json.loads(demo.kubectl("get", "jobs", "-n", "demo", "-l", selector, "-o", "json"))
    assert [j["metadata"]["labels"]["app.kubernetes.io/component"] for j in jobs["items"]] == ["preflight"]


def test_dashboard_and_alerts_name_only_series_the_real_runs_served(
    served: SeriesCollector, result: DemoResult, failed: DemoResult
) -> None:
    """The succeeded and the failed run together serve every series the dashboard and the rules use; the only
    exceptions are series a CPU run cannot produce (GPU memory), which the GPU check scrapes."""
    assert result.finetunejob["status"]["phase"] == "Succeeded"
    assert failed.finetunejob["status"]["phase"] == "Failed"
    served.scrape()
    objects = template(find_binaries().helm, values_files=[MONITORING_VALUES], api_versions=PROMETHEUS_OPERATOR_APIS)
    expressions = rule_expressions(only(objects, "PrometheusRule")["spec"]) + dashboard_expressions(DASHBOARD)
    missing = set().union(*unknown_names(expressions, served.seen).values())
    assert missing == set(ONLY_ON_A_GPU), sorted(missing)
    trainer = served.names[f"http://127.0.0.1:{TRAINER_METRICS_PORT}/metrics"]
    assert {"kubetune_trainer_step", "kubetune_trainer_loss", "kubetune_trainer_eval_loss"} <= trainer
    assert "kubetune_finetunejob_failures_total" in served.seen


def test_a_bad_target_module_fails_in_the_preflight_pod_and_no_training_job_starts(
    demo: Demo, result: DemoResult
) -> None:
    """After the demo (its metrics are asserted above): the same spec with a typo, found by a real preflight pod."""
    manifest = yaml.safe_load((REPO / "examples/demo-tiny-lora.yaml").read_text())
    manifest["metadata"]["name"] = "typo"
    manifest["spec"]["method"]["lora"]["targetModules"] = ["q_proj", "v_projj"]
    manifest["spec"]["output"]["adapterName"] = "typo"
    failed = demo.train(manifest, timeout=300).finetunejob["status"]
    assert (failed["phase"], failed["reason"]) == ("Failed", "ConfigError"), failed
    assert failed["message"].startswith("kubetune-trainer: config error: method.lora.targetModules: v_projj not found")
    jobs = json.loads(demo.kubectl("get", "jobs", "-n", "demo", "-l", "kubetune.io/job=typo", "-o", "json"))
    assert [j["metadata"]["labels"]["app.kubernetes.io/component"] for j in jobs["items"]] == ["preflight"]
