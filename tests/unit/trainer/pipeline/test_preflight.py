"""Preflight: the methods' memory formulas, the `auto` choice, and the checks that run before any weights load."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune.api.estimate import (
    GIB,
    OVERHEAD_BYTES,
    MemoryEstimate,
    ModelShape,
    TrainSetup,
    lora_params,
    quantized_bytes_per_param,
)
from kubetune.api.v1alpha1.trainer_config import TrainerConfig
from kubetune_trainer import preflight
from kubetune_trainer.context import Capabilities
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.preflight import (
    check_fits,
    check_spec,
    choose_auto,
    effective_precision,
    resolve_method,
)
from support.trainer_job import trainer_config

pytestmark = [pytest.mark.unit, pytest.mark.trainer]

CPU = Capabilities(cuda=False, gpu_memory_bytes=0, bf16=False, bitsandbytes=True, deepspeed=True)
NO_BNB = Capabilities(cuda=False, gpu_memory_bytes=0, bf16=False, bitsandbytes=False, deepspeed=True)
BILLION = 10**9
# a 1B-parameter shape: 16 layers of 7 projections (2048 wide, MLP 8192) plus embeddings
SHAPE = ModelShape(
    num_params=BILLION,
    hidden_size=2048,
    num_layers=16,
    linear_shapes={
        "q_proj": (2048, 2048),
        "k_proj": (2048, 512),
        "v_proj": (2048, 512),
        "o_proj": (2048, 2048),
        "gate_proj": (2048, 8192),
        "up_proj": (2048, 8192),
        "down_proj": (8192, 2048),
        "lm_head": (2048, 32000),
    },
    linear_counts=dict.fromkeys(("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"), 16)
    | {"lm_head": 1},
)
NO_ACTIVATIONS = TrainSetup(precision="bf16", batch_size=1, seq_len=0)


def estimate(method: str, shape: ModelShape, setup: TrainSetup) -> MemoryEstimate:
    """The method unit's formula; every method `auto` chooses between has one."""
    result = preflight.estimate(method, shape, setup)
    assert result is not None
    return result


def test_methods_without_a_formula_are_not_estimated() -> None:
    for method in ("partial", "adapter", "prefix", "prompt", "ia3"):
        assert preflight.estimate(method, SHAPE, NO_ACTIVATIONS) is None


def test_full_mixed_precision_adamw_is_16_bytes_per_parameter() -> None:
    result = estimate("full", SHAPE, NO_ACTIVATIONS)
    assert (result.weights, result.gradients, result.optimizer) == (2 * BILLION, 2 * BILLION, 12 * BILLION)
    assert result.total - OVERHEAD_BYTES == 16 * BILLION
    fp32 = estimate("full", SHAPE, TrainSetup(precision="fp32", seq_len=0))
    assert (fp32.weights, fp32.gradients, fp32.optimizer) == (4 * BILLION, 4 * BILLION, 8 * BILLION)


def test_zero_stages_shard_what_they_promise() -> None:
    def parts(stage: int, offload: str = "none") -> tuple[int, int, int]:
        r = estimate("full", SHAPE, TrainSetup(seq_len=0, world_size=4, zero_stage=stage, offload=offload))  # type: ignore[arg-type]
        return r.weights, r.gradients, r.optimizer

    assert parts(0) == (2 * BILLION, 2 * BILLION, 12 * BILLION)
    assert parts(1) == (2 * BILLION, 2 * BILLION, 3 * BILLION)
    assert parts(2) == (2 * BILLION, BILLION // 2, 3 * BILLION)
    assert parts(3) == (BILLION // 2, BILLION // 2, 3 * BILLION)
    assert parts(3, "cpu") == (0, BILLION // 2, 0)


def test_lora_parameters_are_rank_times_in_plus_out_per_module() -> None:
    expected = 16 * 8 * ((2048 + 2048) + (2048 + 512))  # q_proj and v_proj in 16 layers, r = 8
    assert lora_params(SHAPE, 8, ("q_proj", "v_proj")) == expected
    all_linear = lora_params(SHAPE, 8, ("all-linear",))
    assert all_linear == sum(16 * 8 * (i + o) for n, (i, o) in SHAPE.linear_shapes.items() if n != "lm_head")
    assert lora_params(SHAPE, 8, ("q_proj",), dora=True) == 16 * (8 * 4096 + 2048)
    result = estimate("lora", SHAPE, TrainSetup(seq_len=0, lora_rank=8, lora_targets=("q_proj", "v_proj")))
    assert result.weights == 2 * BILLION
    assert (result.gradients, result.optimizer) == (4 * expected, 12 * expected)


def test_qlora_weights_are_half_a_byte_plus_constants() -> None:
    assert quantized_bytes_per_param(4, False) == 0.5 + 4 / 64
    assert quantized_bytes_per_param(4, True) == pytest.approx(0.5 + 1 / 64 + 4 / (64 * 256))
    result = estimate("qlora", SHAPE, TrainSetup(seq_len=0))
    quantized = SHAPE.linear_params
    assert result.weights == int(quantized * quantized_bytes_per_param(4, True)) + (BILLION - quantized) * 2


def test_activations_and_checkpointing() -> None:
    plain = estimate("lora", SHAPE, TrainSetup(batch_size=2, seq_len=1024)).activations
    assert plain == 34 * 2 * 1024 * 2048 * 16
    checkpointed = estimate("lora", SHAPE, TrainSetup(batch_size=2, seq_len=1024, gradient_checkpointing=True))
    assert checkpointed.activations == 2 * 2 * 1024 * 2048 * 16 + 34 * 2 * 1024 * 2048


def test_auto_picks_full_then_lora_then_qlora_then_refuses() -> None:
    full = estimate("full", SHAPE, NO_ACTIVATIONS).total
    lora = estimate("lora", SHAPE, NO_ACTIVATIONS).total
    qlora = estimate("qlora", SHAPE, NO_ACTIVATIONS).total
    assert full > lora > qlora
    assert choose_auto(SHAPE, NO_ACTIVATIONS, full, CPU)[0] == "full"
    assert choose_auto(SHAPE, NO_ACTIVATIONS, full - 1, CPU)[0] == "lora"
    assert choose_auto(SHAPE, NO_ACTIVATIONS, lora - 1, CPU)[0] == "qlora"
    with pytest.raises(ConfigError, match=r"does not fit .* GiB per device with any method: full: "):
        choose_auto(SHAPE, NO_ACTIVATIONS, lora - 1, NO_BNB)
    with pytest.raises(ConfigError, match=r"method full needs about .* GiB .* try method lora"):
        check_fits("full", estimate("full", SHAPE, NO_ACTIVATIONS), SHAPE, NO_ACTIVATIONS, 8 * GIB)
    # full needs ~15.9 GiB; at 3.1 GiB lora (~3.0), qlora (~1.7) and full sharded over 8 GPUs (~2.9) fit
    with pytest.raises(ConfigError, match=r"try method lora or method qlora or 8 GPUs with deepspeed zeroStage 3$"):
        check_fits("full", estimate("full", SHAPE, NO_ACTIVATIONS), SHAPE, NO_ACTIVATIONS, int(3.1 * GIB))


@pytest.fixture(scope="module")
def tiny_info(model_dir: Path) -> object:
    from kubetune_trainer.loading import inspect_model

    return inspect_model(model_dir)


def test_inspection_and_lora_formula_match_the_real_model(model_dir: Path, tiny_info: object) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from kubetune_trainer.loading import ModelInfo

    assert isinstance(tiny_info, ModelInfo)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert tiny_info.shape.num_params == sum(p.numel() for p in model.parameters())
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "down_proj"]))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert lora_params(tiny_info.shape, 4, ("q_proj", "down_proj")) == trainable


def test_auto_resolution_against_a_device_budget(tmp_path: Path, model_dir: Path, tiny_info: object) -> None:
    from kubetune_trainer.loading import ModelInfo

    assert isinstance(tiny_info, ModelInfo)
    wire = trainer_config(tmp_path, model_dir, tmp_path / "x.jsonl", {"type": "auto"})
    spec = TrainerConfig.model_validate(wire).job
    assert spec is not None
    shape = tiny_info.shape
    setup = TrainSetup(precision="fp32", batch_size=8, seq_len=64, lora_targets=("all-linear",))
    full = estimate("full", shape, setup).total
    lora = estimate("lora", shape, setup).total
    for budget, expected in ((full, "full"), (full - 1, "lora"), (lora - 1, "qlora")):
        env = {"KUBETUNE_CPU_MEMORY_BYTES": str(budget)}
        method, _ = resolve_method(spec, tiny_info, CPU, precision="fp32", world_size=1, env=env)
        assert method == expected
    with pytest.raises(ConfigError, match="does not fit"):
        resolve_method(spec, tiny_info, CPU, precision="fp32", world_size=1, env={"KUBETUNE_CPU_MEMORY_BYTES": "1000"})


def test_capability_fallbacks_and_static_refusals(tmp_path: Path, model_dir: Path) -> None:
    assert effective_precision("bf16", CPU) == (
        "fp32",
        "precision bf16 requested but no GPU is available: training in fp32",
    )
    gpu_no_bf16 = Capabilities(cuda=True, gpu_memory_bytes=GIB, bf16=False, bitsandbytes=True, deepspeed=True)
    assert effective_precision("bf16", gpu_no_bf16)[0] == "fp16"

    def spec(method: dict[str, object], **job: object) -> object:
        wire = trainer_config(tmp_path, model_dir, tmp_path / "x.jsonl", method, job=job or None)
        return TrainerConfig.model_validate(wire).job

    prefix = spec({"type": "prefix"}, output={"uri": "file:///o", "mergeWeights": True})
    with pytest.raises(ConfigError, match="mergeWeights: method prefix cannot be merged"):
        check_spec(prefix, CPU)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="addTokens: method prompt cannot train embeddings"):
        check_spec(spec({"type": "prompt"}, tokenizer={"addTokens": ["<x>"]}), CPU)  # type: ignore[arg-type]
    qlora = spec({"type": "qlora", "lora": {}})
    with pytest.raises(ConfigError, match="qlora needs bitsandbytes"):
        check_spec(qlora, NO_BNB)  # type: ignore[arg-type]
    paged = spec({"type": "lora", "lora": {}}, training={"optimizer": "paged_adamw_8bit"})
    assert check_spec(paged, CPU) == ["optimizer paged_adamw_8bit is not paged on CPU (bitsandbytes falls back)"]  # type: ignore[arg-type]
