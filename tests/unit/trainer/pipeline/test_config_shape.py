"""`kubetune estimate` and the trainer's preflight agree: the shape computed from config.json alone equals the
one measured by building the model on the meta device, for every family the CLI knows, and so do the
estimates and the auto choice."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kubetune.api.estimate import estimate
from kubetune.api.model_shape import FAMILIES, shape_from_config
from kubetune.api.sizing import train_setup
from kubetune.api.v1alpha1.trainer_config import TrainerConfig
from kubetune.estimate_report import Gpu, estimate_report
from kubetune_trainer.context import Capabilities
from kubetune_trainer.loading import inspect_model
from kubetune_trainer.preflight import resolve_method, shape_of
from support.trainer_job import NO_DROPOUT_AUTO, trainer_config

pytestmark = [pytest.mark.unit, pytest.mark.trainer]

SMALL = {
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 300,
}
VARIANTS: dict[str, dict[str, Any]] = {
    "llama": {"attention_bias": True, "mlp_bias": True, "tie_word_embeddings": True},
    "mistral": {},
    "qwen2": {"tie_word_embeddings": True},
    "qwen3": {"head_dim": 32},
    "gemma": {"head_dim": 24},
    "gemma2": {"head_dim": 16},
}


def _saved_config(tmp_path: Path, model_type: str, extra: dict[str, Any]) -> Path:
    from transformers import AutoConfig

    directory = tmp_path / model_type
    AutoConfig.for_model(model_type, **SMALL, **extra).save_pretrained(directory)  # only non-defaults are written
    return directory


def test_every_known_family_is_covered() -> None:
    assert set(VARIANTS) == set(FAMILIES)


@pytest.mark.parametrize("model_type", sorted(VARIANTS))
def test_config_shape_equals_the_meta_device_inspection(tmp_path: Path, model_type: str) -> None:
    directory = _saved_config(tmp_path, model_type, VARIANTS[model_type])
    config = json.loads((directory / "config.json").read_text())
    inspected = shape_of(inspect_model(directory))
    # the fields the auto candidates' formulas read (the others size the other methods, from the inspection only)
    assert shape_from_config(config) == replace(inspected, linear_modules={}, parameter_sizes={}, kv_dim=0)


def test_cli_table_and_preflight_give_the_same_numbers(tmp_path: Path, model_dir: Path) -> None:
    """The tiny model's estimate and auto choice, once from the CLI's report, once from the trainer's preflight."""
    wire = trainer_config(tmp_path, model_dir, tmp_path / "d.jsonl", NO_DROPOUT_AUTO)
    wire["job"]["training"]["precision"] = "bf16"
    spec = TrainerConfig.model_validate(wire).job
    assert spec is not None
    shape = shape_from_config(json.loads((model_dir / "config.json").read_text()))
    caps = Capabilities(cuda=True, gpu_memory_bytes=0, bf16=True, bitsandbytes=True, deepspeed=True)
    info = inspect_model(model_dir)
    setup = train_setup(spec, "bf16", 1)
    full, lora = (estimate(m, shape_of(info), setup) for m in ("full", "lora"))
    assert full is not None
    assert lora is not None
    picks = set()
    for budget in (full.total, full.total - 1, lora.total - 1):
        env = {"KUBETUNE_GPU_MEMORY_BYTES": str(budget)}
        verdict = resolve_method(spec, info, caps, precision="bf16", world_size=1, env=env)
        method, result = verdict.method, verdict.estimate
        assert result is not None
        report = estimate_report(spec, shape, [Gpu("budget", budget)], model_type="llama")
        row = next(line.split() for line in report.splitlines() if line.startswith("budget"))
        assert row[2:4] == [method, f"({result.total / 2**30:.1f}"]
        picks.add(method)
    assert picks == {"full", "lora", "qlora"}
