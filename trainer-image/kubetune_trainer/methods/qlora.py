"""QLoRA: a bitsandbytes-quantized frozen base (NF4 + double quantization by default) plus LoRA.

The quantization config goes into `from_pretrained`, so it is part of the load keywords rather than
applied afterwards; `prepare_model_for_kbit_training` then casts norms to fp32 and enables input
gradients so LoRA gradients flow through the frozen 4-bit layers.
"""

from __future__ import annotations

from typing import Any

from kubetune.api.v1alpha1.methods import QloraMethod, QuantizationSettings
from kubetune_trainer.context import Capabilities, RunContext
from kubetune_trainer.methods.lora import LoraUnit

_COMPUTE_DTYPE = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def bnb_config(settings: QuantizationSettings, *, compute_dtype: str) -> Any:
    """`compute_dtype` is the effective one (bf16 falls back to fp32 on machines without bf16)."""
    import torch
    from transformers import BitsAndBytesConfig

    if settings.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)  # type: ignore[no-untyped-call]
    return BitsAndBytesConfig(  # type: ignore[no-untyped-call]
        load_in_4bit=True,
        bnb_4bit_quant_type=settings.quant_type,
        bnb_4bit_use_double_quant=settings.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, compute_dtype),
    )


def load_kwargs(settings: QuantizationSettings, *, compute_dtype: str, cuda: bool) -> dict[str, Any]:
    """Quantized weights cannot be moved after loading, so the device map is fixed here."""
    import os

    device: str | dict[str, int] = {"": int(os.environ.get("LOCAL_RANK", "0"))} if cuda else "cpu"
    return {"quantization_config": bnb_config(settings, compute_dtype=compute_dtype), "device_map": device}


class QloraUnit(LoraUnit):
    variant = QloraMethod

    def machine_problem(self, caps: Capabilities) -> str | None:
        return None if caps.bitsandbytes else "method qlora needs bitsandbytes, which this trainer image lacks"

    def load_kwargs(self, ctx: RunContext) -> dict[str, Any]:
        """`auto` resolved to qlora quantizes with the defaults; bf16 compute falls back without bf16."""
        method = ctx.spec.method
        settings = method.quantization if isinstance(method, QloraMethod) else QuantizationSettings()
        compute: str = settings.compute_dtype
        if compute == "bfloat16" and not ctx.capabilities.bf16:
            compute = _COMPUTE_DTYPE[ctx.precision]
        return load_kwargs(settings, compute_dtype=compute, cuda=ctx.capabilities.cuda)

    def prepare_base(self, ctx: RunContext) -> Any:
        from peft import prepare_model_for_kbit_training

        return prepare_model_for_kbit_training(  # type: ignore[no-untyped-call]
            ctx.model,
            use_gradient_checkpointing=ctx.spec.training.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )


QLORA = QloraUnit()
