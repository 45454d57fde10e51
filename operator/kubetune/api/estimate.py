"""Memory estimate per device for each method (`estimate`), shared by the trainer's preflight and `kubetune estimate`.

Pure arithmetic on parameter counts so it can run before any weights are read, in the trainer (on the
meta-device inspection of the model) and in the CLI (on the model's config.json alone). The formulas (bytes):

* base weights: P x {fp32: 4, bf16/fp16: 2}; 4-bit (QLoRA) linear weights 0.5 per parameter plus the
  quantization constants: one fp32 absmax per 64-weight block (4/64 = 0.0625), or with double
  quantization an 8-bit absmax per block and one fp32 constant per 256 blocks
  (1/64 + 4/(64*256) ~= 0.0159); 8-bit: 1 per parameter + 4/64. Non-linear weights (embeddings,
  norms) and the output head stay in the compute dtype.
* trainable parameters T: gradients T x weight bytes; AdamW states 8 x T (fp32 m and v); with mixed
  precision (bf16/fp16) an fp32 master copy 4 x T. Full mixed-precision AdamW is therefore
  2 + 2 + 4 + 8 = 16 bytes per parameter (the usual anchor); fp32 is 4 + 4 + 8 = 16 as well.
  Adapter parameters are kept in fp32: 4 + 4 + 8 = 16 bytes each.
* LoRA: T = r x (d_in + d_out) per target module (+ d_out magnitude per module for DoRA).
* partial: T = the selected parameters, trained like full fine-tuning (weights, gradients and AdamW states).
* bottleneck adapters: down (d x d/f + d/f) and up (d/f x d + d) per adapted projection of width d.
* IA3: one scale per output channel of each target (per input channel of a feed-forward target).
* prompt tuning: n_virtual x hidden; prefix tuning: n_virtual x layers x 2 x (kv heads x head dim); both make
  every sequence n_virtual positions longer for the activations.
* DeepSpeed ZeRO over N processes: stage >= 1 divides optimizer states and master weights by N,
  stage >= 2 also gradients, stage 3 also weights; offload moves optimizer states (and, at stage 3,
  weights) to host memory.
* activations: batch x sequence x hidden x layers x 34 bytes (16-bit, per Korthikanti et al. 2022,
  without the attention-score term that fused attention avoids), doubled for fp32; with gradient
  checkpointing only each layer's input (2 bytes x b x s x h x layers) plus one layer's full set.
  Plus what that count leaves out and training keeps (`logits_bytes`, `dora_bytes`, `lora_dropout_bytes`):
  the output head's logits and the loss's log-probabilities (b x s x vocab), DoRA's rescaled outputs, and
  LoRA dropout's per-module copies of the input. docs/benchmarks.md measures these against the tensors a
  run saves for backward.
* a fixed per-device overhead (CUDA context, allocator fragmentation): `OVERHEAD_BYTES`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

from kubetune.api.v1alpha1.methods import MethodVariant
from kubetune.api.v1alpha1.training import Precision

GIB = 1024**3
OVERHEAD_BYTES = GIB
ADAM_STATE_BYTES = 8
MASTER_BYTES = 4
ADAPTER_PARAM_BYTES = 4
ACTIVATION_BYTES_PER_ELEMENT = 34
LOSS_BYTES_PER_LOGIT = 8
"""fp32 log-probabilities saved by cross-entropy, and their fp32 gradient at the start of backward."""
DROPOUT_MASK_BYTES = 1
QUANT_BLOCK = 64
NESTED_BLOCK = 256


@dataclass(frozen=True)
class ModelShape:
    """The parts of a model the estimator needs: from config.json (`model_shape`) or from the architecture built
    on the meta device (the trainer's `loading.inspect_model`)."""

    num_params: int
    hidden_size: int
    num_layers: int
    linear_shapes: Mapping[str, tuple[int, int]]
    linear_counts: Mapping[str, int]
    output_head: str = "lm_head"
    linear_modules: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    """Dotted name -> (in_features, out_features) of every linear module (adapters and IA3 size by instance)."""
    parameter_sizes: Mapping[str, int] = field(default_factory=dict)
    """Parameter name -> element count (tied weights once), for partial fine-tuning's selection."""
    kv_dim: int = 0
    """Key/value width per layer (kv heads x head dim) that prefix tuning learns; 0 means hidden_size."""

    @property
    def vocab_size(self) -> int:
        """Width of the output head's logits (0 when the shape has no output head)."""
        return self.linear_shapes.get(self.output_head, (0, 0))[1]

    @property
    def linear_params(self) -> int:
        """Parameters in quantizable linear layers (the output head is never quantized)."""
        return sum(i * o * self.linear_counts[n] for n, (i, o) in self.linear_shapes.items() if n != self.output_head)


@dataclass(frozen=True)
class TrainSetup:
    precision: Precision = "bf16"
    batch_size: int = 1
    seq_len: int = 2048
    gradient_checkpointing: bool = False
    world_size: int = 1
    zero_stage: int | None = None
    """None without DeepSpeed; 0..3 with it."""
    offload: Literal["none", "cpu", "nvme"] = "none"
    lora_rank: int = 16
    lora_targets: tuple[str, ...] = ("all-linear",)
    lora_dropout: float = 0.0
    fused_loss: bool = False
    """Liger's fused linear cross-entropy computes the loss in chunks and never holds the whole logits."""
    quant_bits: Literal[4, 8] = 4
    double_quant: bool = True
    method: MethodVariant | None = None
    """The spec's method block, for the units whose trainable count depends on more than LoRA's (auto's
    candidates read the flat LoRA and quantization fields above, which auto shares with lora and qlora)."""


@dataclass(frozen=True)
class MemoryEstimate:
    method: str
    weights: int
    gradients: int
    optimizer: int
    activations: int
    overhead: int = OVERHEAD_BYTES
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations + self.overhead

    def summary(self) -> str:
        return (
            f"{self.method}: {self.total / GIB:.2f} GiB per device (weights {self.weights / GIB:.2f}, "
            f"gradients {self.gradients / GIB:.2f}, optimizer {self.optimizer / GIB:.2f}, "
            f"activations {self.activations / GIB:.2f}, overhead {self.overhead / GIB:.2f})"
        )


def weight_bytes(precision: Precision) -> int:
    return 4 if precision == "fp32" else 2


def lora_targets(shape: ModelShape, targets: tuple[str, ...]) -> list[tuple[int, int, int]]:
    """(count, d_in, d_out) per adapted module name; `all-linear` means every linear but the output head."""
    names = [n for n in shape.linear_shapes if n != shape.output_head] if "all-linear" in targets else list(targets)
    return [(shape.linear_counts[n], *shape.linear_shapes[n]) for n in names if n in shape.linear_shapes]


def lora_params(shape: ModelShape, rank: int, targets: tuple[str, ...], *, dora: bool = False) -> int:
    """r x (d_in + d_out) per target module (+ d_out magnitudes for DoRA)."""
    return sum(n * (rank * (i + o) + (o if dora else 0)) for n, i, o in lora_targets(shape, targets))


def quantized_bytes_per_param(bits: int, double_quant: bool) -> float:
    if bits == 8:
        return 1 + 4 / QUANT_BLOCK
    constants = (1 / QUANT_BLOCK + 4 / (QUANT_BLOCK * NESTED_BLOCK)) if double_quant else 4 / QUANT_BLOCK
    return 0.5 + constants


def activation_bytes(shape: ModelShape, setup: TrainSetup) -> int:
    """The transformer layers' activations (module doc) and the logits every method keeps."""
    tokens = setup.batch_size * setup.seq_len * shape.hidden_size
    scale = 2 if setup.precision == "fp32" else 1
    if setup.gradient_checkpointing:
        layers = scale * (2 * tokens * shape.num_layers + ACTIVATION_BYTES_PER_ELEMENT * tokens)
    else:
        layers = scale * ACTIVATION_BYTES_PER_ELEMENT * tokens * shape.num_layers
    return layers + logits_bytes(shape, setup)


def logits_bytes(shape: ModelShape, setup: TrainSetup) -> int:
    """b x s x vocab logits: the head's output in the compute dtype, the fp32 log-probabilities cross-entropy saves
    (transformers' causal-LM loss upcasts the logits first) and their fp32 gradient when backward starts.
    Korthikanti et al. leave the output layer out; with a 128k vocabulary (Llama 3) it is 10 bytes x 128k per
    token in bf16, as much as nine of an 8B model's layers, and with gradient checkpointing it is the largest
    activation of all. Checkpointing does not shrink it: the head runs outside the checkpointed layers. Liger's
    fused linear cross-entropy (`fused_loss`) holds one chunk of logits at a time: 0 here."""
    if setup.fused_loss:
        return 0
    return setup.batch_size * setup.seq_len * shape.vocab_size * (weight_bytes(setup.precision) + LOSS_BYTES_PER_LOGIT)


def dora_bytes(shape: ModelShape, setup: TrainSetup) -> int:
    """DoRA scales each adapted module's output by magnitude / ||W + BA|| (PEFT's DoraLinearLayer): the products
    keep the base output and the LoRA output (2 x d_out per token) for the magnitude's and the adapter's
    gradients, in every adapted module of every layer (gradient checkpointing recomputes them, then one
    layer's worth is alive); the column norm builds W + BA in full (d_out x d_in), one module at a time."""
    adapted = lora_targets(shape, setup.lora_targets)
    if not adapted:
        return 0
    wb = weight_bytes(setup.precision)
    outputs = sum(n * o for n, _, o in adapted)
    if setup.gradient_checkpointing:
        outputs //= max(shape.num_layers, 1)
    norm_input = max(i * o for _, i, o in adapted)
    return setup.batch_size * setup.seq_len * 2 * outputs * wb + norm_input * wb


def lora_dropout_bytes(shape: ModelShape, setup: TrainSetup) -> int:
    """With LoRA dropout > 0, PEFT drops the input of each adapted module on its own (q, k and v each get their
    own copy of the same hidden states): lora_A keeps the dropped copy (d_in per token, compute dtype) and
    dropout its mask (1 byte per element). At 0 the dropout is an identity and keeps nothing."""
    if setup.lora_dropout == 0:
        return 0
    inputs = sum(n * i for n, i, _ in lora_targets(shape, setup.lora_targets))
    if setup.gradient_checkpointing:
        inputs //= max(shape.num_layers, 1)
    return setup.batch_size * setup.seq_len * inputs * (weight_bytes(setup.precision) + DROPOUT_MASK_BYTES)


def full_weights(method: str, shape: ModelShape, setup: TrainSetup, trainable: int | None = None) -> MemoryEstimate:
    """Base weights train in place (AdamW, fp32 master copy under mixed precision), sharded by ZeRO: all of
    them, or the `trainable` ones of partial fine-tuning (activations counted for every layer, an upper bound)."""
    wb = weight_bytes(setup.precision)
    trainable = shape.num_params if trainable is None else trainable
    mixed = setup.precision != "fp32"
    weights = shape.num_params * wb
    grads = trainable * wb
    optim = trainable * (ADAM_STATE_BYTES + (MASTER_BYTES if mixed else 0))
    stage = setup.zero_stage
    n = setup.world_size
    if stage is not None:
        if setup.offload != "none":
            optim = 0
        elif stage >= 1:
            optim //= n
        if stage >= 2:
            grads //= n
        if stage == 3:
            weights = 0 if setup.offload != "none" else weights // n
    return MemoryEstimate(method, weights, grads, optim, activation_bytes(shape, setup))


def adapter_weights(
    method: str, shape: ModelShape, setup: TrainSetup, *, trainable: int, weights: int, extra_activations: int = 0
) -> MemoryEstimate:
    """A frozen base of `weights` bytes plus `trainable` adapter parameters kept in fp32 with AdamW; the adapter's
    own activations (`extra_activations`) on top of the layers'."""
    grads = trainable * ADAPTER_PARAM_BYTES
    optim = trainable * (ADAM_STATE_BYTES + ADAPTER_PARAM_BYTES)
    return MemoryEstimate(method, weights, grads, optim, activation_bytes(shape, setup) + extra_activations)


def frozen_base(
    method: str, shape: ModelShape, setup: TrainSetup, trainable: int, extra_activations: int = 0
) -> MemoryEstimate:
    """`trainable` adapter parameters on a base held in the compute dtype."""
    weights = shape.num_params * weight_bytes(setup.precision)
    return adapter_weights(
        method, shape, setup, trainable=trainable, weights=weights, extra_activations=extra_activations
    )


def quantized_weights(shape: ModelShape, setup: TrainSetup) -> int:
    """Quantized linear weights (output head excluded) plus everything else in the compute dtype."""
    quantized = shape.linear_params
    per = quantized_bytes_per_param(setup.quant_bits, setup.double_quant)
    return int(quantized * per) + (shape.num_params - quantized) * weight_bytes(setup.precision)


def lora_memory(method: str, shape: ModelShape, setup: TrainSetup, *, dora: bool = False) -> MemoryEstimate:
    """LoRA (or DoRA) on a base kept in the compute dtype."""
    trainable = lora_params(shape, setup.lora_rank, setup.lora_targets, dora=dora)
    extra = lora_dropout_bytes(shape, setup) + (dora_bytes(shape, setup) if dora else 0)
    return frozen_base(method, shape, setup, trainable, extra)


def qlora_memory(method: str, shape: ModelShape, setup: TrainSetup) -> MemoryEstimate:
    """LoRA on a quantized base."""
    trainable = lora_params(shape, setup.lora_rank, setup.lora_targets)
    weights = quantized_weights(shape, setup)
    extra = lora_dropout_bytes(shape, setup)
    return adapter_weights(method, shape, setup, trainable=trainable, weights=weights, extra_activations=extra)


Formula = Callable[[str, ModelShape, TrainSetup], MemoryEstimate]
FORMULAS: Mapping[str, Formula] = {
    "full": full_weights,
    "lora": lora_memory,
    "dora": partial(lora_memory, dora=True),
    "qlora": qlora_memory,
}
"""The methods whose trainable parameters are a formula of the model's shape (every `auto` candidate)."""


def estimate(method: str, shape: ModelShape, setup: TrainSetup) -> MemoryEstimate | None:
    """Bytes per device for `method`; None when it has no formula."""
    formula = FORMULAS.get(method)
    return formula(method, shape, setup) if formula else None
