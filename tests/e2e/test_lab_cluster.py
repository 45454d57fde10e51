"""`kubetune lab run peft-sweep --cluster` on the local control plane: the operator turns the lab's four
FineTuneJobs into preflight and training Jobs, the local node runs their pods (the real trainer), and the
report is written from what the trainers reported in status. The lab is the shipped one with a cheaper small
setting (4 steps, small CPU requests so the four jobs run side by side on the local node); the relations
asserted are the ones that hold at any number of steps: trainable parameters and artifact size rise with
the rank, full fine-tuning largest."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kubetune.cli import main
from kubetune.labs.runner import REPORT_FILE, RESULTS_FILE
from kubetune_dev.demo import NAMESPACE, REPO, Demo
from kubetune_dev.lab_model import lab_model_dir

pytestmark = pytest.mark.e2e

LAB = "peft-sweep"
CHEAP = {
    "training": {"precision": "fp32", "maxSteps": 4, "batchSize": 8},
    "resources": {
        "gpus": 0,
        "cpu": "250m",
        "memory": "2Gi",
        "sharedMemory": "256Mi",
        "nodeSelector": {"kubetune.io/local-node": "true"},  # the node that really runs pods, not a kwok one
    },
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    one_thread = {"OMP_NUM_THREADS": "1"}  # four tiny trainers on two cores: threads would only spin
    folder = tmp_path_factory.mktemp("lab-cluster")
    with Demo(folder, log=lambda line: print(line, flush=True), image_env=one_thread) as running:
        yield running


def cheap_lab(labs_dir: Path) -> Path:
    """The shipped lab with a cheaper small setting, in a labs folder of its own."""
    folder = labs_dir / LAB
    shutil.copytree(REPO / "labs" / LAB, folder)
    meta = yaml.safe_load((folder / "lab.yaml").read_text())
    meta["settings"]["small"]["overrides"] = CHEAP
    (folder / "lab.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return labs_dir


def test_peft_sweep_on_a_cluster_reports_from_status(
    demo: Demo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    claim = demo.add_claim("kubetune-labs")
    shutil.copytree(lab_model_dir(), claim / "model")
    shutil.copytree(REPO / "labs" / "data", claim / "data")
    labs_dir = cheap_lab(tmp_path / "labs")
    out = tmp_path / "reports"
    kubeconfig = str(demo.plane.kubeconfig_path)
    arguments = ["lab", "run", LAB, "--labs-dir", str(labs_dir), "--out", str(out), "--cluster"]
    arguments += ["--kubeconfig", kubeconfig, "--namespace", NAMESPACE, "--timeout", "600"]

    assert main(arguments) == 0
    printed = capsys.readouterr().out
    assert f"applied FineTuneJob {NAMESPACE}/lora-r16" in printed
    assert "FineTuneJob full: phase=Succeeded" in printed

    results = json.loads((out / LAB / RESULTS_FILE).read_text())
    assert (results["report"]["runOn"], results["report"]["namespace"]) == ("cluster", NAMESPACE)
    runs = results["raw"]["runs"]
    order = ["lora-r4", "lora-r8", "lora-r16", "full"]
    trainable = [runs[n]["metrics"]["params.trainable"] for n in order]
    assert trainable == sorted(trainable)
    assert len(set(trainable)) == len(trainable)
    assert runs["full"]["metrics"]["params.trainable"] == runs["full"]["metrics"]["params.total"]
    sizes = [runs[n]["artifactBytes"] for n in order]
    assert sizes == sorted(sizes)
    assert len(set(sizes)) == len(sizes)
    assert all(runs[n]["processSeconds"] > 0 and "qa.loss" in runs[n]["metrics"] for n in order)
    held = {c["claim"]: c["holds"] for c in results["report"]["checks"]}
    assert held["Trainable parameters rise with the rank and full fine-tuning trains the most"]
    assert "run on a cluster through the operator" in (out / LAB / REPORT_FILE).read_text()

    again = main(arguments)  # the lab's objects are still there: a second run refuses to reuse them
    assert again == 1
    assert "already in namespace" in capsys.readouterr().out
