"""The entrypoint's exit-code contract, fail-fast ordering, and publishing to a volume.

One case runs the real `python -m kubetune_trainer` in a subprocess; the rest call `main()` in this
process (same code path, without paying the transformers import per case).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kubetune.api.v1alpha1.trainer_config import CONFIG_ERROR_EXIT_CODE
from kubetune_dev.tiny import write_jsonl
from kubetune_trainer import pipeline
from kubetune_trainer.__main__ import main
from kubetune_trainer.artifacts import tree_digest
from kubetune_trainer.manifest import read_manifest
from support.trainer_job import trainer_config

pytestmark = [pytest.mark.unit, pytest.mark.trainer]

PREFIX = "kubetune-trainer: config error: "
REPO = Path(__file__).resolve().parents[4]


def _write(tmp: Path, config: dict[str, Any]) -> Path:
    path = tmp / "trainer.json"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
def no_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Config errors must surface before weights are loaded (i.e. before a GPU would be touched)."""

    def forbidden(_ctx: object) -> None:
        raise AssertionError("weights were loaded before the config error was found")

    monkeypatch.setattr(pipeline, "load_weights", forbidden)


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(PREFIX)
    return lines[0][len(PREFIX) :]


def test_unknown_target_module_in_a_real_subprocess(
    tmp_path: Path, model_dir: Path, data_files: dict[str, Path]
) -> None:
    method = {"type": "lora", "lora": {"targetModules": ["q_proj", "nope_proj"]}}
    config = _write(tmp_path, trainer_config(tmp_path, model_dir, data_files["text"], method))
    log = tmp_path / "termination-log"
    env = os.environ | {
        "KUBETUNE_TERMINATION_LOG": str(log),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO / "operator"), str(REPO / "trainer-image")]),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "kubetune_trainer", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == CONFIG_ERROR_EXIT_CODE, proc.stderr[-2000:]
    message = _one_line(proc.stderr)
    assert message.startswith("method.lora.targetModules: nope_proj not found in llama; linear modules are ")
    assert "q_proj" in message
    assert log.read_text() == PREFIX + message + "\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.usefixtures("no_model_load", "termination_log")
def test_model_that_does_not_fit_is_a_config_error(
    tmp_path: Path,
    model_dir: Path,
    data_files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KUBETUNE_CPU_MEMORY_BYTES", str(4096))
    config = _write(tmp_path, trainer_config(tmp_path, model_dir, data_files["text"], "full"))
    assert main(["--config", str(config)]) == CONFIG_ERROR_EXIT_CODE
    message = _one_line(capsys.readouterr().err)
    assert message.startswith("method full needs about ")
    assert "0.00 GiB is available" in message
    assert (tmp_path / "termination-log").read_text().strip() == PREFIX + message


@pytest.fixture
def no_model_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    """Data errors must surface before the base model is even resolved (a download can be 100+ GB)."""

    def forbidden(_ctx: object) -> None:
        raise AssertionError("the base model was resolved before the data error was found")

    monkeypatch.setattr(pipeline, "inspect_base", forbidden)


@pytest.mark.usefixtures("no_model_resolve", "termination_log")
@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([{"foo": "bar"}, {"foo": "baz"}], "cannot detect the dataset format from columns ['foo']"),
        ([{"prompt": "p", "chosen": "a", "rejected": "b"}], "objective 'sft' needs a dataset in format"),
    ],
)
def test_wrong_dataset_format_is_a_config_error(
    tmp_path: Path,
    model_dir: Path,
    rows: list[dict[str, str]],
    expected: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = write_jsonl(tmp_path / "bad.jsonl", rows)
    config = _write(tmp_path, trainer_config(tmp_path, model_dir, data, "lora"))
    assert main(["--config", str(config)]) == CONFIG_ERROR_EXIT_CODE
    assert expected in _one_line(capsys.readouterr().err)


@pytest.mark.usefixtures("no_model_load", "termination_log")
def test_invalid_config_documents_are_config_errors(
    tmp_path: Path, model_dir: Path, data_files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert main(["--config", str(broken)]) == CONFIG_ERROR_EXIT_CODE
    assert "is not JSON" in _one_line(capsys.readouterr().err)

    wire = trainer_config(tmp_path, model_dir, data_files["text"], "lora")
    wire["job"]["training"]["learningRate"] = -1
    assert main(["--config", str(_write(tmp_path, wire))]) == CONFIG_ERROR_EXIT_CODE
    assert "job.training.learningRate" in _one_line(capsys.readouterr().err)


@pytest.mark.usefixtures("termination_log")
def test_corrupt_weights_are_a_retryable_failure(
    tmp_path: Path, model_dir: Path, data_files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (broken / name).write_bytes((model_dir / name).read_bytes())
    (broken / "model.safetensors").write_bytes(b"\0" * 64)
    config = _write(tmp_path, trainer_config(tmp_path, broken, data_files["text"], "lora"))
    assert main(["--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert PREFIX not in err
    assert not (tmp_path / "termination-log").exists()


def _hf_cache(cache: Path, model_dir: Path, repo: str, commit: str) -> None:
    """The on-disk layout huggingface_hub reads in offline mode (refs/<branch> -> snapshots/<commit>)."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file in model_dir.iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)


def test_hf_base_model_revision_is_pinned_from_the_cache(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubetune.api.v1alpha1.data import BaseModelRef
    from kubetune_trainer.errors import UriError
    from kubetune_trainer.loading import resolve_base_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    commit = "0123456789abcdef0123456789abcdef01234567"
    _hf_cache(tmp_path / "cache", model_dir, "acme/tiny-llama", commit)
    ref = BaseModelRef(uri="hf://acme/tiny-llama", revision="main")
    source = resolve_base_model(ref, cache_dir=tmp_path / "cache", pvc_root=tmp_path, token_env=None)
    assert source.revision == commit
    assert (source.path / "model.safetensors").is_file()
    with pytest.raises(UriError, match="not in the cache"):
        resolve_base_model(
            BaseModelRef(uri="hf://acme/other"), cache_dir=tmp_path / "cache", pvc_root=tmp_path, token_env=None
        )


def test_pvc_output_with_eval_split_and_hooks(tmp_path: Path, model_dir: Path, data_files: dict[str, Path]) -> None:
    from kubetune.api.v1alpha1.trainer_config import TrainerConfig
    from kubetune_trainer.context import Hooks, RunContext

    dataset = {
        "train": {"uri": f"file://{data_files['text']}"},
        "eval": {"fraction": 0.25},
        "prep": {"maxSeqLength": 64},
    }
    wire = trainer_config(
        tmp_path,
        model_dir,
        data_files["text"],
        "ia3",
        job={"dataset": dataset, "checkpointing": {"everySteps": 1, "keepLast": 1}},
        training={"maxSteps": 1},
        output={"uri": "pvc://adapters/team-a", "adapterName": "ia3-run"},
    )
    sizes: dict[str, int] = {}

    def evaluate(ctx: RunContext, trainer: Any) -> dict[str, float]:
        sizes.update(train=len(ctx.train_dataset), eval=len(ctx.eval_dataset))
        losses = [row["eval_loss"] for row in trainer.state.log_history if "eval_loss" in row]
        return {"heldout.loss": float(losses[-1])}

    hooks = Hooks(evaluate=evaluate, gate=lambda _ctx, metrics: (metrics["heldout.loss"] < 1.0, "loss too high"))
    result = pipeline.run(TrainerConfig.model_validate(wire), hooks=hooks)
    assert sizes == {"train": 36, "eval": 12}
    assert result.metrics["heldout.loss"] > 1.0
    assert (result.gate_passed, result.gate_message) == (False, "loss too high")
    published = tmp_path / "pvc" / "adapters" / "team-a" / "ia3-run"
    assert result.artifact_uri == "pvc://adapters/team-a/ia3-run/"
    assert tree_digest(published) == (result.sha256, result.size_bytes)
    manifest = read_manifest(published)
    assert manifest is not None
    assert manifest.gate is not None
    assert (manifest.gate.passed, manifest.gate.message) == (False, "loss too high")
    assert manifest.metrics is not None
    assert manifest.metrics["heldout.loss"] == result.metrics["heldout.loss"]
    assert sorted(p.name for p in published.parent.iterdir()) == ["ia3-run"]  # no temp dirs left behind


@pytest.mark.usefixtures("no_model_load", "termination_log")
def test_no_rows_left_after_prep_is_a_config_error(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "long.jsonl", [{"text": "count " * 40 + str(i)} for i in range(4)])
    wire = trainer_config(tmp_path, model_dir, data, "lora")
    wire["job"]["dataset"]["prep"]["maxSeqLength"] = 16
    assert main(["--config", str(_write(tmp_path, wire))]) == CONFIG_ERROR_EXIT_CODE
    message = _one_line(capsys.readouterr().err)
    assert message.startswith("no rows left after dataset.prep (4 in, removed too_long=4)")
