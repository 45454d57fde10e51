"""`kubetune estimate FILE`: per-GPU memory and the auto choice from a config.json, through the shared estimate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kubetune.api.estimate import GIB, estimate
from kubetune.api.model_shape import shape_from_config
from kubetune.api.sizing import choose_auto, train_setup
from kubetune.api.v1alpha1 import FineTuneJob
from kubetune.cli import main
from support.published_models import LLAMA_3_1_8B

pytestmark = pytest.mark.unit

JOB = """
apiVersion: kubetune.io/v1alpha1
kind: FineTuneJob
metadata: {{name: est}}
spec:
  baseModel: {{uri: "{uri}"}}
  dataset: {{train: {{uri: file:///d.jsonl}}, prep: {{maxSeqLength: 2048}}}}
  method: {method}
  training: {{batchSize: 4, gradientCheckpointing: true}}
  resources: {{gpus: 1, gpuProduct: NVIDIA-L40S}}
  output: {{uri: file:///out}}
"""


def _job(
    tmp_path: Path, uri: str, method: str = "{type: lora, lora: {rank: 16, targetModules: [q_proj, v_proj]}}"
) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(JOB.format(uri=uri, method=method))
    return path


@pytest.fixture
def model(tmp_path: Path) -> Path:
    directory = tmp_path / "llama-8b"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(LLAMA_3_1_8B))
    return directory


def _rows(output: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in output.splitlines() if line.startswith(("NVIDIA", "Tesla"))}


def test_the_table_carries_the_shared_estimate_for_every_gpu(
    tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _job(tmp_path, f"file://{model}")
    assert main(["estimate", str(path)]) == 0
    out = capsys.readouterr().out
    spec = FineTuneJob.model_validate(yaml.safe_load(path.read_text())).spec
    shape = shape_from_config(LLAMA_3_1_8B)
    assert shape.num_params == 8_030_261_248  # the parameter count Meta publishes for Llama 3.1 8B
    setup = train_setup(spec, "bf16", 1)
    lora = estimate("lora", shape, setup)
    assert lora is not None
    assert f"method {lora.summary()}" in out
    rows = _rows(out)
    assert rows["NVIDIA-L40S"][1] == "*"  # the spec's own gpuProduct is marked
    for product, memory in (("NVIDIA-L4", 24), ("NVIDIA-H200", 141)):
        choice = choose_auto(shape, setup, memory * GIB)
        assert choice.estimate is not None
        assert rows[product][1:5] == [
            f"{memory:.1f}",
            f"{lora.total / GIB:.1f}",
            "yes" if lora.total <= memory * GIB else "no",
            choice.method,
        ]
    assert rows["NVIDIA-L4"][3:5] == ["no", "qlora"]
    # 4 x 2048 tokens of a 128k vocabulary: the logits and the loss's fp32 log-probabilities alone take ~10 GB
    assert rows["Tesla-T4"][3:] == ["no", "nothing", "fits"]
    assert rows["NVIDIA-H200"][3:5] == ["yes", "full"]


def test_auto_and_custom_gpus(tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _job(tmp_path, "pvc://models/llama", method="{type: auto}")
    assert main(["estimate", str(path), "--model-config", str(model), "--gpu", "tiny=1", "--gpu", "Tesla-T4"]) == 0
    out = capsys.readouterr().out
    assert "LORA GiB" not in out  # auto has no own column: the auto choice is the answer
    rows = [line.split() for line in out.splitlines()]
    assert ["tiny", "1.0", "nothing", "fits"] in rows
    assert any(row[:3] == ["NVIDIA-L40S", "*", "48.0"] for row in rows)  # the spec's product is always sized


Case = tuple[str, list[str], dict[str, str] | None, str]
PROBLEMS: list[Case] = [
    ("pvc://models/llama", [], None, "pass its config with --model-config"),
    ("file://{model}", ["--gpu", "NVIDIA-Unknown"], None, "has no known memory: pass --gpu PRODUCT=GiB"),
    ("file://{model}", ["--gpu", "x=lots"], None, "memory must be a number of GiB"),
    ("file://{model}", [], {"model_type": "mixtral"}, "model_type mixtral has no config-only shape"),
    ("file://{model}", [], {"model_type": "llama"}, "config.json has no positive integer hidden_size"),
    ("hf://org/model", [], None, "HF_HUB_OFFLINE is set; pass --model-config"),
]


@pytest.mark.parametrize("case", PROBLEMS, ids=[case[3][:30] for case in PROBLEMS])
def test_problems_are_one_line(
    tmp_path: Path, model: Path, case: Case, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, args, config, message = case
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if config is not None:
        (model / "config.json").write_text(json.dumps(config))
    assert main(["estimate", str(_job(tmp_path, uri.format(model=model))), *args]) == 1
    out = capsys.readouterr().out
    assert message in out
    assert len(out.strip().splitlines()) == 1
