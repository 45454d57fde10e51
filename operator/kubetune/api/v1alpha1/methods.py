"""WHAT is trained: one variant per method, discriminated on `type`.

Blocks are nested (`lora`, `quantization`, `partial`, ...) rather than flat prefixed fields so a
method's settings read as one unit and can be reused (QLoRA and DoRA share the LoRA block).

Each variant also declares its static facts (`MethodFacts`: family, mergeable, ...) as a class
variable, so the operator, the CLI and the trainer's preflight read one declaration instead of
keeping their own lists of method names. How a method is applied lives in the trainer
(`kubetune_trainer.methods`, one module per method). A new method is a variant here plus one
trainer module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field

from kubetune.api.base import CelRule, KubeModel
from kubetune.api.unions import TaggedUnion, variant_classes
from kubetune.api.v1alpha1.common import ModuleName

TargetModules = Annotated[list[ModuleName], Field(max_length=64)]
MethodFamily = Literal["full", "lora", "peft"]


@dataclass(frozen=True)
class MethodFacts:
    """What is known about a method before anything runs."""

    family: MethodFamily
    """full: the base model's own weights train and the artifact is a complete model; lora: low-rank
    PEFT adapters, described by rank, alpha and target modules; peft: the other PEFT tuners."""
    mergeable: bool = True
    """`output.mergeWeights` can fold the trained weights into the base weights."""
    trains_embeddings: bool = True
    """It can train the embedding rows of `tokenizer.addTokens`."""
    fsdp: bool = True
    """It runs under `distributed.strategy: fsdp`."""

    @property
    def peft(self) -> bool:
        """The artifact is a PEFT adapter that needs its base model."""
        return self.family != "full"


class MethodVariant(KubeModel):
    """Base of the method variants; `facts` is None only for `auto`, which the trainer resolves."""

    facts: ClassVar[MethodFacts | None]


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


class FullMethod(MethodVariant):
    """Update every weight; pair with distributed.strategy deepspeed for large models."""

    facts: ClassVar[MethodFacts | None] = MethodFacts(family="full")

    type: Literal["full"] = Field(description="Method discriminator.")


class PartialMethod(MethodVariant):
    """Unfreeze the last blocks and/or named modules (cheap, good for small domain shifts)."""

    facts: ClassVar[MethodFacts | None] = MethodFacts(family="full")

    type: Literal["partial"] = Field(description="Method discriminator.")
    partial: PartialSettings = Field(default_factory=PartialSettings, description="What stays trainable.")


class LoraMethod(MethodVariant):
    """LoRA adapters on a full-precision base."""

    facts: ClassVar[MethodFacts | None] = MethodFacts(family="lora")

    type: Literal["lora"] = Field(description="Method discriminator.")
    lora: LoraSettings = Field(description="LoRA settings.")


class DoraMethod(MethodVariant):
    """DoRA: LoRA on the direction plus a learned magnitude; closer to full fine-tuning quality."""

    facts: ClassVar[MethodFacts | None] = MethodFacts(family="lora")

    type: Literal["dora"] = Field(description="Method discriminator.")
    lora: LoraSettings = Field(description="LoRA settings (DoRA decomposes the same update).")


class QloraMethod(MethodVariant):
    """LoRA on a 4-bit (or 8-bit) quantized base: the cheapest way to tune a large model."""

    facts: ClassVar[MethodFacts | None] = MethodFacts(family="lora", fsdp=False)

    type: Literal["qlora"] = Field(description="Method discriminator.")
    lora: LoraSettings = Field(description="LoRA settings.")
    quantization: QuantizationSettings = Field(
        default_factory=QuantizationSettings, description="bitsandbytes quantization of the frozen base."
    )


class AdapterMethod(MethodVariant):
    """Bottleneck adapters (Houlsby or Pfeiffer)."""

    facts: ClassVar[MethodFacts | None] = MethodFacts(family="peft", mergeable=False, fsdp=False)

    type: Literal["adapter"] = Field(description="Method discriminator.")
    adapter: BottleneckSettings = Field(default_factory=BottleneckSettings, description="Adapter settings.")


class PrefixMethod(MethodVariant):
    """Prefix tuning: learned key/value prefixes in every layer."""

    facts: ClassVar[MethodFacts | None] = MethodFacts(family="peft", mergeable=False, trains_embeddings=False)

    type: Literal["prefix"] = Field(description="Method discriminator.")
    prompt: PromptSettings = Field(default_factory=PromptSettings, description="Virtual token settings.")


class PromptMethod(MethodVariant):
    """Prompt tuning: learned input embeddings only (the fewest trainable parameters)."""

    facts: ClassVar[MethodFacts | None] = MethodFacts(family="peft", mergeable=False, trains_embeddings=False)

    type: Literal["prompt"] = Field(description="Method discriminator.")
    prompt: PromptSettings = Field(default_factory=PromptSettings, description="Virtual token settings.")


class IA3Method(MethodVariant):
    """IA3: learned rescaling vectors; tiny adapters, merges into the base."""

    facts: ClassVar[MethodFacts | None] = MethodFacts(family="peft")

    type: Literal["ia3"] = Field(description="Method discriminator.")
    ia3: IA3Settings = Field(default_factory=IA3Settings, description="IA3 settings.")


class AutoMethod(MethodVariant):
    """Let the trainer pick full, lora or qlora from a memory estimate against the GPUs requested."""

    facts: ClassVar[MethodFacts | None] = None
    candidates: ClassVar[tuple[str, ...]] = ("full", "lora", "qlora")
    """What `auto` may resolve to, most capable first: the first that fits the device budget wins."""

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

METHOD_FACTS: Mapping[str, MethodFacts] = {
    METHOD_UNION.tag_of(variant): variant.facts
    for variant in METHOD_UNION.variants
    if issubclass(variant, MethodVariant) and variant.facts is not None
}
"""The facts of every method that trains (all but `auto`), by `type`."""

TRAINED_METHODS: tuple[str, ...] = tuple(METHOD_FACTS)

if TYPE_CHECKING:
    TrainedMethod = str
else:
    TrainedMethod = Literal[TRAINED_METHODS]
"""A method that trains, as a `Literal` built from the union (so schemas list exactly these)."""
