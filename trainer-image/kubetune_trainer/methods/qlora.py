"""QLoRA: a bitsandbytes-quantized frozen base (NF4 + double quantization by default) plus LoRA.

The quantization config goes into `from_pretrained`, so it is part of the load keywords rather than
applied afterwards; `prepare_model_for_kbit_training` then casts norms to fp32 and enables input
gradients so LoRA gradients flow through the frozen 4-bit layers.
"""

from __future__ import annotations

from typing import Any

from kubetune.api.v1alpha1.methods import QuantizationSettings


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


def prepare(model: Any, *, gradient_checkpointing: bool) -> Any:
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(  # type: ignore[no-untyped-call]
        model,
        use_gradient_checkpointing=gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )
