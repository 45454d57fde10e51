"""WHAT is trained: one variant per method, discriminated on `type`.

Blocks are nested (`lora`, `quantization`, `partial`, ...) rather than flat prefixed fields so a
method's settings read as one unit and can be reused (QLoRA and DoRA share the LoRA block).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from kubetune.api.base import CelRule, KubeModel
from kubetune.api.unions import TaggedUnion, variant_classes
from kubetune.api.v1alpha1.common import ModuleName

TargetModules = Annotated[list[ModuleName], Field(max_length=64)]


class LoraSettings(KubeModel):
    """Low-rank update W' = W + (alpha / rank) * B A on the target modules."""

    rank: int = Field(default=16, ge=1, le=1024, description="LoRA rank r (1..1024).")
    alpha: float = Field(
        default=32, gt=0, le=4096, description="LoRA scaling alpha; the update is scaled by alpha/rank."
    )
    dropout: float = Field(default=0.05, ge=0, lt=1, description="Dropout on the LoRA input (0 <= dropout < 1).")
    target_modules: TargetModules = Field(
        default_factory=lambda: ["all-linear"],
        min_length=1,
        description="Module names to adapt (e.g. q_proj, v_proj), or all-linear for every linear layer.",
    )


class QuantizationSettings(KubeModel):
    """bitsandbytes quantization of the frozen base model (QLoRA)."""

    bits: Literal[4, 8] = Field(default=4, description="Bits per base weight: 4 (NF4/FP4) or 8 (LLM.int8).")
    quant_type: Literal["nf4", "fp4"] = Field(default="nf4", description="4-bit data type; nf4 is the QLoRA default.")
    double_quant: bool = Field(
        default=True, description="Also quantize the quantization constants (saves ~0.4 bit/param)."
    )
    compute_dtype: Literal["bfloat16", "float16", "float32"] = Field(
        default="bfloat16", description="dtype of the de-quantized matmuls."
    )


class PartialSettings(KubeModel):
    """Which parts of the base model stay trainable; everything else is frozen."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "self.trainableLayers > 0 || (has(self.trainableModules) && size(self.trainableModules) > 0)",
            "method.partial trains nothing: set trainableLayers > 0 or list trainableModules",
        ),
    )

    trainable_layers: int = Field(default=2, ge=0, le=1024, description="Train the last N transformer blocks.")
    trainable_modules: TargetModules = Field(
        default_factory=list,
        description="Also train modules whose name contains one of these (e.g. lm_head).",
    )


class BottleneckSettings(KubeModel):
    """Bottleneck adapters: Houlsby (after attention and FFN) or Pfeiffer (after FFN only)."""

    style: Literal["houlsby", "pfeiffer"] = Field(default="houlsby", description="houlsby or pfeiffer placement.")
    reduction_factor: int = Field(
        default=16, ge=1, le=1024, description="hidden_size / bottleneck size; larger is smaller and cheaper."
    )


class PromptSettings(KubeModel):
    """Learned virtual tokens (prefix tuning prepends them to every layer, prompt tuning to the input)."""

    num_virtual_tokens: int = Field(default=20, ge=1, le=512, description="Number of learned virtual tokens.")


class IA3Settings(KubeModel):
    """IA3 learns per-channel scaling vectors on keys, values and feed-forward activations."""

    target_modules: TargetModules = Field(
        default_factory=lambda: ["k_proj", "v_proj", "down_proj"],
        min_length=1,
        description="Modules to scale.",
    )
    feedforward_modules: TargetModules = Field(
        default_factory=lambda: ["down_proj"],
        description="Subset of targetModules that are feed-forward layers.",
    )


class FullMethod(KubeModel):
    """Update every weight; pair with distributed.strategy deepspeed for large models."""

    type: Literal["full"] = Field(description="Method discriminator.")


class PartialMethod(KubeModel):
    """Unfreeze the last blocks and/or named modules (cheap, good for small domain shifts)."""

    type: Literal["partial"] = Field(description="Method discriminator.")
    partial: PartialSettings = Field(default_factory=PartialSettings, description="What stays trainable.")


class LoraMethod(KubeModel):
    """LoRA adapters on a full-precision base."""

    type: Literal["lora"] = Field(description="Method discriminator.")
    lora: LoraSettings = Field(description="LoRA settings.")


class DoraMethod(KubeModel):
    """DoRA: LoRA on the direction plus a learned magnitude; closer to full fine-tuning quality."""

    type: Literal["dora"] = Field(description="Method discriminator.")
    lora: LoraSettings = Field(description="LoRA settings (DoRA decomposes the same update).")


class QloraMethod(KubeModel):
    """LoRA on a 4-bit (or 8-bit) quantized base: the cheapest way to tune a large model."""

    type: Literal["qlora"] = Field(description="Method discriminator.")
    lora: LoraSettings = Field(description="LoRA settings.")
    quantization: QuantizationSettings = Field(
        default_factory=QuantizationSettings, description="bitsandbytes quantization of the frozen base."
    )


class AdapterMethod(KubeModel):
    """Bottleneck adapters (Houlsby or Pfeiffer)."""

    type: Literal["adapter"] = Field(description="Method discriminator.")
    adapter: BottleneckSettings = Field(default_factory=BottleneckSettings, description="Adapter settings.")


class PrefixMethod(KubeModel):
    """Prefix tuning: learned key/value prefixes in every layer."""

    type: Literal["prefix"] = Field(description="Method discriminator.")
    prompt: PromptSettings = Field(default_factory=PromptSettings, description="Virtual token settings.")


class PromptMethod(KubeModel):
    """Prompt tuning: learned input embeddings only (the fewest trainable parameters)."""

    type: Literal["prompt"] = Field(description="Method discriminator.")
    prompt: PromptSettings = Field(default_factory=PromptSettings, description="Virtual token settings.")


class IA3Method(KubeModel):
    """IA3: learned rescaling vectors; tiny adapters, merges into the base."""

    type: Literal["ia3"] = Field(description="Method discriminator.")
    ia3: IA3Settings = Field(default_factory=IA3Settings, description="IA3 settings.")


class AutoMethod(KubeModel):
    """Let the trainer pick full, lora or qlora from a memory estimate against the GPUs requested."""

    type: Literal["auto"] = Field(description="Method discriminator.")
    lora: LoraSettings = Field(
        default_factory=LoraSettings, description="LoRA settings used if auto picks lora or qlora."
    )


Method = Annotated[
    FullMethod
    | PartialMethod
    | LoraMethod
    | DoraMethod
    | QloraMethod
    | AdapterMethod
    | PrefixMethod
    | PromptMethod
    | IA3Method
    | AutoMethod,
    Field(discriminator="type"),
]

METHOD_UNION = TaggedUnion("method", variant_classes(Method))
