"""Preflight: the methods' memory formulas, the `auto` choice, and the checks that run before any weights load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
from kubetune.api.sizing import train_setup
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
    shape_of,
)
from support.trainer_job import NO_DROPOUT_AUTO, trainer_config

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
    """The method unit's formula (every method has one)."""
    return preflight.estimate(method, shape, setup)


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
    logits = 2 * 1024 * 32000 * (2 + 4 + 4)  # bf16 head output, fp32 log-probabilities and their gradient
    plain = estimate("lora", SHAPE, TrainSetup(batch_size=2, seq_len=1024)).activations
    assert plain == 34 * 2 * 1024 * 2048 * 16 + logits
    checkpointed = estimate("lora", SHAPE, TrainSetup(batch_size=2, seq_len=1024, gradient_checkpointing=True))
    assert checkpointed.activations == 2 * 2 * 1024 * 2048 * 16 + 34 * 2 * 1024 * 2048 + logits


def test_dora_keeps_two_outputs_per_adapted_module_and_builds_one_full_weight() -> None:
    setup = TrainSetup(batch_size=2, seq_len=1024, lora_targets=("q_proj", "v_proj"))
    lora, dora = estimate("lora", SHAPE, setup), estimate("dora", SHAPE, setup)
    outputs = 2 * 1024 * 2 * 16 * (2048 + 512) * 2  # base and LoRA output of q and v in 16 layers, bf16
    assert dora.activations - lora.activations == outputs + 2048 * 2048 * 2  # + W + BA of q_proj for its norm


def test_lora_dropout_keeps_a_dropped_input_and_a_mask_per_adapted_module() -> None:
    setup = TrainSetup(batch_size=2, seq_len=1024, lora_targets=("q_proj", "v_proj"))
    without = estimate("lora", SHAPE, setup).activations
    with_dropout = estimate("lora", SHAPE, TrainSetup(**{**setup.__dict__, "lora_dropout": 0.05})).activations
    assert with_dropout - without == 2 * 1024 * 16 * (2048 + 2048) * (2 + 1)
    qlora = estimate("qlora", SHAPE, TrainSetup(**{**setup.__dict__, "lora_dropout": 0.05})).activations
    assert qlora - estimate("qlora", SHAPE, setup).activations == with_dropout - without


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
    with pytest.raises(
        ConfigError,
        match=r"try method lora or method qlora or 8 GPUs with deepspeed zeroStage 3; if the estimate is wrong",
    ):
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
    assert tiny_info.num_params == sum(p.numel() for p in model.parameters())
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "down_proj"]))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert lora_params(shape_of(tiny_info), 4, ("q_proj", "down_proj")) == trainable


def test_auto_resolution_against_a_device_budget(tmp_path: Path, model_dir: Path, tiny_info: object) -> None:
    from kubetune_trainer.loading import ModelInfo

    assert isinstance(tiny_info, ModelInfo)
    wire = trainer_config(tmp_path, model_dir, tmp_path / "x.jsonl", NO_DROPOUT_AUTO)
    spec = TrainerConfig.model_validate(wire).job
    assert spec is not None
    shape = shape_of(tiny_info)
    setup = train_setup(spec, "fp32", 1)
    full = estimate("full", shape, setup).total
    lora = estimate("lora", shape, setup).total
    for budget, expected in ((full, "full"), (full - 1, "lora"), (lora - 1, "qlora")):
        env = {"KUBETUNE_CPU_MEMORY_BYTES": str(budget)}
        verdict = resolve_method(spec, tiny_info, CPU, precision="fp32", world_size=1, env=env)
        assert (verdict.method, verdict.fit) == (expected, "Fits")
    with pytest.raises(ConfigError, match="does not fit"):
        resolve_method(spec, tiny_info, CPU, precision="fp32", world_size=1, env={"KUBETUNE_CPU_MEMORY_BYTES": "1000"})
    lenient = spec.model_copy(update={"preflight": spec.preflight.model_copy(update={"memory_check": "warn"})})
    tight = resolve_method(
        lenient, tiny_info, CPU, precision="fp32", world_size=1, env={"KUBETUNE_CPU_MEMORY_BYTES": "1000"}
    )
    assert (tight.method, tight.fit) == ("qlora", "Exceeds"), "warn: the candidate that needs the least"


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


MID_SIZE = {  # the shape of Llama 3.2 1B: grouped-query attention, tied embeddings, a 128k vocabulary
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "vocab_size": 128256,
    "tie_word_embeddings": True,
    "max_position_embeddings": 4096,
}
ESTIMATED = ("full", "partial", "lora", "dora", "adapter-houlsby", "adapter-pfeiffer", "prefix", "prompt", "ia3")


@pytest.fixture(scope="module")
def mid_size_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mid-size")
    (folder / "config.json").write_text(json.dumps(MID_SIZE))
    return folder


def trainable_after_apply(model: Any, method: str | dict[str, Any], tmp: Path, model_dir: Path) -> int:
    """What the method unit really makes trainable (PEFT's own modules for the adapter methods)."""
    from kubetune_trainer.context import RunContext, RunPaths
    from kubetune_trainer.methods import METHODS

    config = TrainerConfig.model_validate(trainer_config(tmp, model_dir, tmp / "x.jsonl", method))
    assert config.job is not None
    paths = RunPaths(cache_dir=tmp, work_dir=tmp, checkpoint_dir=tmp, staging_dir=tmp, pvc_root=tmp)
    ctx = RunContext(config, config.job, CPU, "fp32", config.job.method.type, paths, model=model)
    wrapped = METHODS[config.job.method.type].apply(ctx)
    return sum(p.numel() for p in wrapped.parameters() if p.requires_grad)


@pytest.mark.parametrize("method", ESTIMATED)
@pytest.mark.parametrize("size", ["tiny", "mid-size"])
def test_every_method_estimates_the_parameters_it_trains(
    method: str, size: str, tmp_path: Path, model_dir: Path, mid_size_dir: Path
) -> None:
    """Gradients are 4 bytes per trainable parameter in fp32: the formula must count what the method trains,
    on the tiny model (real weights) and on a 1B shape built on the meta device (no weights at all)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from kubetune_trainer.loading import inspect_model

    folder = model_dir if size == "tiny" else mid_size_dir
    block: str | dict[str, Any] = method
    if (size, method) == ("mid-size", "partial"):  # its lm_head is tied to the embedding: one parameter, one name
        block = {"type": "partial", "partial": {"trainableLayers": 2, "trainableModules": ["embed_tokens"]}}
    info = inspect_model(folder)
    config = TrainerConfig.model_validate(trainer_config(tmp_path, folder, tmp_path / "x.jsonl", block))
    assert config.job is not None
    setup = preflight.train_setup(config.job, "fp32", 1)
    result = preflight.estimate(config.job.method.type, shape_of(info), setup)
    with torch.device("meta" if size == "mid-size" else "cpu"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))  # type: ignore[no-untyped-call]
    assert result.gradients == 4 * trainable_after_apply(model, block, tmp_path, folder)
    assert result.weights == 4 * info.num_params
    if method in ("prefix", "prompt"):  # virtual tokens lengthen every sequence
        assert result.activations > estimate("lora", shape_of(info), setup).activations
