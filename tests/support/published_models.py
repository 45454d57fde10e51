"""Base models' config.json values as their model cards publish them: enough for config-only estimates and
shapes, which tests check against the parameter count each card states."""

from __future__ import annotations

from typing import Any

LLAMA_3_1_8B = {
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "tie_word_embeddings": False,
}
PUBLISHED_CONFIGS: dict[str, tuple[dict[str, Any], int]] = {
    "hf://meta-llama/Llama-3.1-8B": (LLAMA_3_1_8B, 8_030_261_248),
    "hf://meta-llama/Llama-3.1-8B-Instruct": (LLAMA_3_1_8B, 8_030_261_248),
    "hf://meta-llama/Llama-3.1-70B": (
        {
            **LLAMA_3_1_8B,
            "hidden_size": 8192,
            "intermediate_size": 28672,
            "num_hidden_layers": 80,
            "num_attention_heads": 64,
        },
        70_553_706_496,
    ),
    "hf://mistralai/Mistral-7B-v0.3": (
        {
            "model_type": "mistral",
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "vocab_size": 32768,
            "tie_word_embeddings": False,
        },
        7_248_023_552,
    ),
    "hf://Qwen/Qwen2.5-1.5B": (
        {
            "model_type": "qwen2",
            "hidden_size": 1536,
            "intermediate_size": 8960,
            "num_hidden_layers": 28,
            "num_attention_heads": 12,
            "num_key_value_heads": 2,
            "vocab_size": 151936,
            "tie_word_embeddings": True,
        },
        1_543_714_304,
    ),
}
"""config.json values as the model cards publish them, with the parameter count each card states."""
