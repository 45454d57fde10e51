"""A model's shape (`ModelShape`) from its config.json alone: what `kubetune estimate` sizes without weights.

The trainer measures the shape by building the model on the meta device (any architecture, needs
torch); the CLI has only the config, so it computes the same numbers for the decoder families whose
layout is known here: a transformer block of q/k/v/o attention projections and a gated MLP
(gate/up/down), with the per-family details below. A test builds each family on the meta device
and checks that both give identical shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubetune.api.estimate import ModelShape


@dataclass(frozen=True)
class Family:
    """How one `model_type` lays out its decoder block beyond the common q/k/v/o + gate/up/down."""

    tie_default: bool = False
    qkv_bias: bool | None = None
    """Biases on q/k/v regardless of the config (Qwen2); None reads `attention_bias`."""
    o_bias: bool | None = None
    """Bias on o_proj regardless of the config; None reads `attention_bias`."""
    mlp_bias_key: str | None = None
    norms_per_layer: int = 2
    qk_norm: bool = False
    """RMSNorm over each head's queries and keys (Qwen3): head_dim weights each."""


FAMILIES: Mapping[str, Family] = {
    "llama": Family(mlp_bias_key="mlp_bias"),
    "mistral": Family(qkv_bias=False, o_bias=False),
    "qwen2": Family(qkv_bias=True, o_bias=False),
    "qwen3": Family(qk_norm=True),
    "gemma": Family(tie_default=True, qkv_bias=False, o_bias=False),
    "gemma2": Family(tie_default=True, qkv_bias=False, o_bias=False, norms_per_layer=4),
}


class UnsupportedModelError(ValueError):
    """The config is not a decoder family known here (or lacks a size field)."""


def _int(config: Mapping[str, Any], key: str) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise UnsupportedModelError(f"config.json has no positive integer {key}")
    return value


def shape_from_config(config: Mapping[str, Any]) -> ModelShape:
    """The `ModelShape` the meta-device inspection would report for this config."""
    model_type = str(config.get("model_type", ""))
    family = FAMILIES.get(model_type)
    if family is None:
        raise UnsupportedModelError(
            f"model_type {model_type or '(none)'} has no config-only shape here (known: {', '.join(FAMILIES)}); "
            "the trainer's preflight still estimates it from the model itself"
        )
    hidden, layers, vocab = _int(config, "hidden_size"), _int(config, "num_hidden_layers"), _int(config, "vocab_size")
    heads, inter = _int(config, "num_attention_heads"), _int(config, "intermediate_size")
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or hidden // heads
    attention_bias = bool(config.get("attention_bias", False))
    qkv_bias = attention_bias if family.qkv_bias is None else family.qkv_bias
    o_bias = attention_bias if family.o_bias is None else family.o_bias
    mlp_bias = bool(config.get(family.mlp_bias_key, False)) if family.mlp_bias_key else False
    tied = bool(config.get("tie_word_embeddings", family.tie_default))
    shapes = {
        "q_proj": (hidden, heads * head_dim),
        "k_proj": (hidden, kv_heads * head_dim),
        "v_proj": (hidden, kv_heads * head_dim),
        "o_proj": (heads * head_dim, hidden),
        "gate_proj": (hidden, inter),
        "up_proj": (hidden, inter),
        "down_proj": (inter, hidden),
    }
    per_layer = sum(i * o for i, o in shapes.values())
    per_layer += (heads + 2 * kv_heads) * head_dim * qkv_bias + hidden * o_bias + (2 * inter + hidden) * mlp_bias
    per_layer += family.norms_per_layer * hidden + (2 * head_dim if family.qk_norm else 0)
    embeddings = vocab * hidden
    num_params = embeddings + layers * per_layer + hidden + (0 if tied else embeddings)
    return ModelShape(
        num_params=num_params,
        hidden_size=hidden,
        num_layers=layers,
        linear_shapes=shapes | {"lm_head": (hidden, vocab)},
        linear_counts=dict.fromkeys(shapes, layers) | {"lm_head": 1},
    )
