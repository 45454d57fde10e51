"""`python -m kubetune_trainer --preflight`: the checks of the CPU pod that runs before the GPU Job exists.

The model directory the preflight sees here holds only config and tokenizer files (what it downloads from
a hub), so every check passing or failing below proves it needs no weights.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from kubetune.api.v1alpha1.preflight import PreflightReport, spec_digest
from kubetune.api.v1alpha1.trainer_config import CONFIG_ERROR_EXIT_CODE, TrainerConfig
from kubetune_dev.tiny import message_rows, write_jsonl
from kubetune_trainer import data_stage, pipeline
from kubetune_trainer.__main__ import main
from kubetune_trainer.data.model_files import CONFIG_PATTERNS
from kubetune_trainer.preflight import expected_capabilities
from support.trainer_job import trainer_config

pytestmark = [pytest.mark.unit, pytest.mark.trainer]

PREFIX = "kubetune-trainer: config error: "
H100 = {"gpus": 1, "gpuProduct": "NVIDIA-H100-80GB-HBM3"}


@pytest.fixture(scope="module")
def config_only(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model as the preflight pod has it: config and tokenizer, no weights."""
    from fnmatch import fnmatchcase

    folder = tmp_path_factory.mktemp("config-only")
    for file in model_dir.iterdir():
        if any(fnmatchcase(file.name, p) for p in CONFIG_PATTERNS):
            shutil.copy(file, folder / file.name)
    assert not list(folder.glob("*.safetensors"))
    return folder


def run(tmp: Path, model: Path, data: Path, method: str | dict[str, Any] = "lora", **job: Any) -> int:
    wire = trainer_config(tmp, model, data, method, job=job or None)
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "trainer.json"
    path.write_text(json.dumps(wire))
    return main(["--config", str(path), "--preflight"])


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(PREFIX)
    return lines[0].removeprefix(PREFIX)


@pytest.mark.usefixtures("termination_log")
def test_a_bad_target_module_fails_in_preflight_with_the_training_pods_message(
    tmp_path: Path,
    model_dir: Path,
    config_only: Path,
    data_files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    method = {"type": "lora", "lora": {"targetModules": ["q_proj", "nope_proj"]}}
    assert run(tmp_path / "pf", config_only, data_files["text"], method) == CONFIG_ERROR_EXIT_CODE
    found_early = one_line(capsys.readouterr().err)
    wire = trainer_config(tmp_path / "train", model_dir, data_files["text"], method)
    (tmp_path / "train.json").write_text(json.dumps(wire))
    assert main(["--config", str(tmp_path / "train.json")]) == CONFIG_ERROR_EXIT_CODE
    assert found_early == one_line(capsys.readouterr().err)
    assert found_early.startswith("method.lora.targetModules: nope_proj not found in llama; linear modules are ")


def test_the_report_is_the_termination_message(
    tmp_path: Path, config_only: Path, data_files: dict[str, Path], termination_log: Path
) -> None:
    assert run(tmp_path, config_only, data_files["text"], "prefix", resources=H100) == 0
    report = PreflightReport.model_validate_json(termination_log.read_text())
    assert len(termination_log.read_bytes()) < 4096, "a termination message is cut at 4 KiB"
    spec = TrainerConfig.model_validate(json.loads((tmp_path / "trainer.json").read_text())).job
    assert spec is not None
    assert report.spec_digest == spec_digest(spec)
    assert (report.method, report.memory_fit, report.device_memory_bytes) == ("prefix", "Fits", 80 * 2**30)
    assert report.memory_estimate_bytes is not None
    assert report.summary.startswith("prefix: ")
    assert report.summary.endswith("fits 80.00 GiB")


@pytest.mark.parametrize("check", ["enforce", "warn", "off"])
def test_a_spec_over_the_gpus_memory_fails_unless_overridden(
    tmp_path: Path, config_only: Path, data_files: dict[str, Path], termination_log: Path, check: str
) -> None:
    """The tiny model needs just over 1 GiB (the fixed overhead): a 1000Mi GPU is too small."""
    code = CONFIG_ERROR_EXIT_CODE if check == "enforce" else 0
    preflight = {"memoryCheck": check} | ({"gpuMemory": "1000Mi"} if check != "off" else {})
    resources = {"gpus": 1, "gpuProduct": "NVIDIA-Tiny-1GB"}
    assert run(tmp_path, config_only, data_files["text"], "ia3", resources=resources, preflight=preflight) == code
    if code:
        message = one_line(termination_log.read_text())
        assert message.startswith("method ia3 needs about 1.01 GiB per device but 0.98 GiB is available (ia3: ")
        assert message.endswith("set preflight.memoryCheck: warn")
        return
    report = PreflightReport.model_validate_json(termination_log.read_text())
    if check == "warn":
        assert report.memory_fit == "Exceeds"
        assert "training anyway (preflight.memoryCheck warn)" in report.summary
    else:
        assert (report.memory_fit, report.device_memory_bytes) == ("NotChecked", 2**30)
    assert report.memory_estimate_bytes is not None


def test_the_training_pod_honours_the_override_too(
    tmp_path: Path, model_dir: Path, data_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same check, same setting, in the training pod's own pass over the model (before weights load)."""
    from kubetune_trainer.context import Capabilities
    from kubetune_trainer.errors import ConfigError

    monkeypatch.setenv("KUBETUNE_CPU_MEMORY_BYTES", str(2**20))
    cpu = Capabilities(cuda=False, gpu_memory_bytes=0, bf16=False, bitsandbytes=True, deepspeed=True)
    for check in ("enforce", "warn"):
        wire = trainer_config(
            tmp_path / check, model_dir, data_files["text"], "lora", job={"preflight": {"memoryCheck": check}}
        )
        ctx = pipeline.build_context(TrainerConfig.model_validate(wire), cpu)
        data_stage.load(ctx)
        if check == "enforce":
            with pytest.raises(ConfigError, match="method lora needs about"):
                pipeline.inspect_base(ctx)
        else:
            assert pipeline.inspect_base(ctx).fit == "Exceeds"


def test_auto_is_resolved_in_preflight_only_when_the_gpu_size_is_known(
    tmp_path: Path, config_only: Path, data_files: dict[str, Path], termination_log: Path
) -> None:
    auto = {"type": "auto", "lora": {"rank": 4}}
    assert run(tmp_path, config_only, data_files["text"], auto, resources={"gpus": 1, "gpuProduct": "Tesla-T4"}) == 0
    unknown = PreflightReport.model_validate_json(termination_log.read_text())
    assert (unknown.method, unknown.memory_fit) == (None, "Unknown")
    assert "resolved on the GPU" in unknown.summary
    assert run(tmp_path, config_only, data_files["text"], auto, resources=H100) == 0
    known = PreflightReport.model_validate_json(termination_log.read_text())
    assert (known.method, known.memory_fit) == ("full", "Fits")


@pytest.mark.usefixtures("termination_log")
def test_conversations_need_a_chat_template(
    tmp_path: Path, config_only: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = tmp_path / "no-template"
    shutil.copytree(config_only, bare)
    (bare / "chat_template.jinja").unlink()
    settings = json.loads((bare / "tokenizer_config.json").read_text())
    settings.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(settings))
    chats = write_jsonl(tmp_path / "chats.jsonl", message_rows())
    assert run(tmp_path / "a", bare, chats) == CONFIG_ERROR_EXIT_CODE
    assert "has no chat template: set tokenizer.chatTemplate" in one_line(capsys.readouterr().err)
    template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert run(tmp_path / "b", bare, chats, tokenizer={"chatTemplate": template}) == 0


def test_the_preflight_targets_the_machine_the_spec_asks_for(tmp_path: Path, config_only: Path) -> None:
    wire = trainer_config(tmp_path, config_only, tmp_path / "x.jsonl", "lora", job={"resources": H100})
    spec = TrainerConfig.model_validate(wire).job
    assert spec is not None
    expected = expected_capabilities(spec)
    assert (expected.cuda, expected.bf16, expected.gpu_memory_bytes) == (True, True, 80 * 2**30)
    cpu_run = expected_capabilities(
        spec.model_copy(update={"resources": spec.resources.model_copy(update={"gpus": 0})})
    )
    assert (cpu_run.cuda, cpu_run.gpu_memory_bytes) == (False, 0)


@pytest.mark.usefixtures("termination_log")
def test_new_tokens_are_checked_against_the_method(
    tmp_path: Path, config_only: Path, data_files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = {"addTokens": ["<tool>", "</tool>"]}
    assert run(tmp_path / "prompt", config_only, data_files["text"], "prompt", tokenizer=tokens) == 78
    assert "tokenizer.addTokens: method prompt cannot train embeddings" in one_line(capsys.readouterr().err)
    assert run(tmp_path / "lora", config_only, data_files["text"], "lora", tokenizer=tokens) == 0
