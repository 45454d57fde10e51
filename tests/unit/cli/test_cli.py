"""The CLI edge: one line per problem, exit codes, no tracebacks on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubetune.cli import main

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
