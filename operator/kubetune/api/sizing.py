"""From a FineTuneJob spec to a memory verdict: the training setup, and what `method: auto` resolves to.

Shared by the trainer's preflight (with the model inspected on the meta device and this machine's
device budget) and `kubetune estimate` (with the model's config.json and each GPU product's
memory), so both print the same numbers for the same spec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kubetune.api.estimate import MemoryEstimate, ModelShape, TrainSetup, estimate
from kubetune.api.v1alpha1.finetunejob import FineTuneJobSpec
from kubetune.api.v1alpha1.methods import (
    AutoMethod,
    DoraMethod,
    LoraMethod,
    LoraSettings,
    MethodVariant,
    QloraMethod,
)
from kubetune.api.v1alpha1.training import Precision


def lora_block(method: MethodVariant) -> LoraSettings | None:
    """The `lora` block of lora, dora, qlora and auto (which may resolve to lora or qlora)."""
    return method.lora if isinstance(method, LoraMethod | DoraMethod | QloraMethod | AutoMethod) else None


def train_setup(spec: FineTuneJobSpec, precision: Precision, world_size: int) -> TrainSetup:
    method = spec.method
    lora = lora_block(method)
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
        lora_dropout=lora.dropout if lora else 0.0,
        fused_loss=spec.training.liger_kernel,
        quant_bits=quant.bits if quant else 4,
        double_quant=quant.double_quant if quant else True,
        method=method,
    )


@dataclass(frozen=True)
class AutoChoice:
    """What `auto` picks for one device budget: the method and its estimate, or None with every estimate tried."""

    method: str | None
    estimate: MemoryEstimate | None
    tried: tuple[MemoryEstimate, ...]


def choose_auto(
    shape: ModelShape, setup: TrainSetup, budget_bytes: int, runnable: Callable[[str], bool] = lambda _: True
) -> AutoChoice:
    """The first of `AutoMethod.candidates` that `runnable` allows and that fits `budget_bytes`."""
    tried: list[MemoryEstimate] = []
    for method in AutoMethod.candidates:
        if not runnable(method):
            continue
        result = estimate(method, shape, setup)
        assert result is not None, f"auto candidate {method} has no memory formula"
        if result.total <= budget_bytes:
            return AutoChoice(method, result, tuple(tried))
        tried.append(result)
    return AutoChoice(None, None, tuple(tried))
