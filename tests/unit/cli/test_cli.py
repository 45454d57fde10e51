"""The CLI edge: one line per problem, exit codes, no tracebacks on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubetune.api.v1alpha1.pod_contract import CONFIG_ANNOTATION
from kubetune.api.v1alpha1.trainer_config import TrainerConfig
from kubetune.cli import main
from kubetune.local_run import local_trainer_config
from kubetune.render.bundle import render_bundle
from kubetune.settings import OperatorSettings

pytestmark = pytest.mark.unit

VALID = """
apiVersion: kubetune.io/v1alpha1
kind: FineTuneJob
metadata: {name: ok}
spec:
  baseModel: {uri: hf://org/model}
  dataset: {train: {uri: file:///data/train.jsonl}}
  method: {type: lora, lora: {rank: 8}}
  objective: {type: sft}
  output: {uri: file:///out}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_file_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(write(tmp_path, "ok.yaml", VALID))]) == 0
    assert "1 object(s) valid" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [unclosed", "not valid YAML (line 1"),
        ("", "no YAML documents found"),
        ("- just\n- a list\n", "expected a Kubernetes object"),
        ("kind: Deployment\n", '"Deployment" is not a kubetune kind'),
        (
            VALID.replace("apiVersion: kubetune.io/v1alpha1", "apiVersion: kubetune.io/v2"),
            'Unsupported value: "kubetune.io/v2"',
        ),
        (VALID.replace("  output:", "  outptu:"), 'unknown field "spec.outptu"'),
    ],
)
def test_bad_input_is_one_line_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = write(tmp_path, "bad.yaml", text)
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert message in out
    assert "Traceback" not in out
    assert all(line.startswith(str(path)) for line in out.strip().splitlines())


def test_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 1
    assert "cannot read: No such file or directory" in capsys.readouterr().out


def test_multi_document_file_labels_each_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = VALID.replace("rank: 8", "rank: 0")
    path = write(tmp_path, "multi.yaml", VALID + "---\n" + bad)
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [
        f"{path}#2: spec.method.lora.rank: Invalid value: 0: spec.method.lora.rank should be greater than or equal to 1"
    ]


def test_crds_prints_both_definitions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crds"]) == 0
    names = [d["metadata"]["name"] for d in yaml.safe_load_all(capsys.readouterr().out)]
    assert names == ["finetunejobs.kubetune.io", "adapters.kubetune.io"]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("kubetune 0.1.0 (API kubetune.io/v1alpha1)")


def test_kubetune_run_trains_the_training_jobs_document_with_local_paths(tmp_path: Path) -> None:
    """The preflight Job renders before the training Job: `kubetune run` takes the training Job's trainer.json."""
    document = yaml.safe_load(VALID)
    trained = [m for m in render_bundle(document, OperatorSettings()) if m["kind"] == "Job"][-1]
    rendered = TrainerConfig.model_validate_json(
        trained["spec"]["template"]["metadata"]["annotations"][CONFIG_ANNOTATION]
    )
    config = local_trainer_config(document, tmp_path / "work", tmp_path / "pvc")
    assert config.mode == "train"
    assert config.job == rendered.job
    assert (config.runtime.pvc_mount_root, config.runtime.report_status) == (str(tmp_path / "pvc"), False)
    assert config.runtime.work_dir == str(tmp_path / "work" / "scratch")
