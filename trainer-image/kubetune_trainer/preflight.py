"""Checks that run before any weights are loaded, so a bad spec fails in seconds and never holds a GPU.

Three kinds: static combinations the API schema cannot express (e.g. merging an unmergeable method),
capabilities of this machine (bf16, bitsandbytes, DeepSpeed), and the memory estimate against the
devices, which is also what resolves `method: auto`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from kubetune.api.v1alpha1.finetunejob import FineTuneJobSpec
from kubetune.api.v1alpha1.methods import AutoMethod, DoraMethod, LoraMethod, QloraMethod
from kubetune_trainer.context import Capabilities, MethodName, Precision
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.estimate import GIB, MemoryEstimate, ModelShape, TrainSetup, check_fits, choose_auto
from kubetune_trainer.loading import ModelInfo

log = logging.getLogger(__name__)

CPU_BUDGET_ENV = "KUBETUNE_CPU_MEMORY_BYTES"
DEFAULT_CPU_BUDGET = 16 * GIB
GPU_MEMORY_ENV = "KUBETUNE_GPU_MEMORY_BYTES"
UNMERGEABLE = frozenset({"adapter", "prefix", "prompt"})
NO_EMBEDDING_TRAINING = frozenset({"prefix", "prompt"})


def probe_capabilities() -> Capabilities:
    """Look at the machine once; importing torch is the only cost (no CUDA context is kept)."""
    import importlib.util

    import torch

    cuda = torch.cuda.is_available()
    count = torch.cuda.device_count() if cuda else 0
    memory = torch.cuda.get_device_properties(0).total_memory if cuda else 0
    return Capabilities(
        cuda=cuda,
        gpu_count=count,
        gpu_memory_bytes=int(memory),
        bf16=bool(cuda and torch.cuda.is_bf16_supported()),
        bitsandbytes=importlib.util.find_spec("bitsandbytes") is not None,
        deepspeed=importlib.util.find_spec("deepspeed") is not None,
    )


def check_spec(spec: FineTuneJobSpec, caps: Capabilities) -> list[str]:
    """Static checks; returns warnings for capability fallbacks the run survives."""
    method = spec.method.type
    if spec.output.merge_weights and method in UNMERGEABLE:
        raise ConfigError(
            f"output.mergeWeights: method {method} cannot be merged into the base weights; "
            "set mergeWeights: false or use lora, dora, qlora, ia3, full or partial"
        )
    if spec.tokenizer.add_tokens and method in NO_EMBEDDING_TRAINING:
        raise ConfigError(
            f"tokenizer.addTokens: method {method} cannot train embeddings for new tokens; "
            "use lora, dora, qlora, ia3, adapter, full or partial"
        )
    if method == "qlora" and not caps.bitsandbytes:
        raise ConfigError("method qlora needs bitsandbytes, which this trainer image lacks")
    if spec.distributed.strategy == "deepspeed" and not caps.deepspeed:
        raise ConfigError("distributed.strategy deepspeed: DeepSpeed is not installed in this trainer image")
    if spec.distributed.strategy == "fsdp" and method in {"qlora", "adapter"}:
        raise ConfigError(
            f"distributed.strategy fsdp does not support method {method}; "
            "use strategy ddp, or deepspeed with zeroStage <= 2"
        )
    warnings = []
    if spec.training.optimizer.startswith("paged_") and not caps.cuda:
        warnings.append(f"optimizer {spec.training.optimizer} is not paged on CPU (bitsandbytes falls back)")
    return warnings


def effective_precision(requested: Precision, caps: Capabilities) -> tuple[Precision, str | None]:
    """Mixed precision needs a GPU (bf16 one that supports it); otherwise train in fp32 and say so."""
    if requested == "fp32":
        return requested, None
    if not caps.cuda:
        return "fp32", f"precision {requested} requested but no GPU is available: training in fp32"
    if requested == "bf16" and not caps.bf16:
        return "fp16", "precision bf16 is not supported by this GPU: training in fp16"
    return requested, None


def device_budget(caps: Capabilities, env: Mapping[str, str] | None = None) -> int:
    """Bytes one training process may use: the GPU's memory, or a configurable host budget on CPU."""
    environ = os.environ if env is None else env
    if caps.cuda:
        return int(environ.get(GPU_MEMORY_ENV, caps.gpu_memory_bytes))
    return int(environ.get(CPU_BUDGET_ENV, DEFAULT_CPU_BUDGET))


def train_setup(spec: FineTuneJobSpec, precision: Precision, world_size: int) -> TrainSetup:
    method = spec.method
    lora = method.lora if isinstance(method, LoraMethod | DoraMethod | QloraMethod | AutoMethod) else None
    quant = method.quantization if isinstance(method, QloraMethod) else None
    deepspeed = spec.distributed.strategy == "deepspeed"
    return TrainSetup(
        precision=precision,
        batch_size=spec.training.batch_size,
        seq_len=spec.dataset.prep.max_seq_length,
        gradient_checkpointing=spec.training.gradient_checkpointing,
        world_size=world_size,
        zero_stage=spec.distributed.zero_stage if deepspeed else None,
        offload=spec.distributed.offload,
        lora_rank=lora.rank if lora else 16,
        lora_targets=tuple(lora.target_modules) if lora else ("all-linear",),
        quant_bits=quant.bits if quant else 4,
        double_quant=quant.double_quant if quant else True,
    )


def shape_of(info: ModelInfo) -> ModelShape:
    return ModelShape(
        num_params=info.num_params,
        hidden_size=info.hidden_size,
        num_layers=info.num_layers,
        linear_shapes=info.linear_shapes,
        linear_counts=info.linear_counts,
    )


def resolve_method(
    spec: FineTuneJobSpec,
    info: ModelInfo,
    caps: Capabilities,
    *,
    precision: Precision,
    world_size: int,
    env: Mapping[str, str] | None = None,
) -> tuple[MethodName, MemoryEstimate | None]:
    """Resolve `auto` and check that formula-estimable methods fit the device budget."""
    budget = device_budget(caps, env)
    setup = train_setup(spec, precision, world_size)
    shape = shape_of(info)
    if isinstance(spec.method, AutoMethod):
        method, result = choose_auto(shape, setup, budget, quantization_available=caps.bitsandbytes)
        log.info("method auto resolved to %s (%s of %.2f GiB)", method, result.summary(), budget / GIB)
        return method, result  # type: ignore[return-value]
    name: MethodName = spec.method.type
    if name in {"full", "lora", "dora", "qlora"}:
        return name, check_fits(name, shape, setup, budget)
    return name, None
