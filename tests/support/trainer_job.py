"""TrainerConfig builders for trainer tests: one short SFT run on the tiny model per call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

LORA = {"rank": 8, "alpha": 16, "dropout": 0.0, "targetModules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
METHOD_BLOCKS: dict[str, dict[str, Any]] = {
    "full": {"type": "full"},
    "partial": {"type": "partial", "partial": {"trainableLayers": 1, "trainableModules": ["lm_head"]}},
    "lora": {"type": "lora", "lora": LORA},
    "dora": {"type": "dora", "lora": LORA},
    "qlora": {
        "type": "qlora",
        "lora": {**LORA, "targetModules": ["all-linear"]},
        "quantization": {"computeDtype": "float32"},
    },
    "adapter-houlsby": {"type": "adapter", "adapter": {"style": "houlsby", "reductionFactor": 4}},
    "adapter-pfeiffer": {"type": "adapter", "adapter": {"style": "pfeiffer", "reductionFactor": 4}},
    "prefix": {"type": "prefix", "prompt": {"numVirtualTokens": 4}},
    "prompt": {"type": "prompt", "prompt": {"numVirtualTokens": 4}},
    "ia3": {"type": "ia3"},
}
NO_DROPOUT_AUTO: dict[str, Any] = {"type": "auto", "lora": {"dropout": 0.0}}
"""`auto` for memory-order tests on the tiny model: there LoRA dropout's copies of the inputs outweigh the weights,
so with dropout full would need the least memory."""
LEARNING_RATES = {"full": 3e-3, "partial": 5e-3, "prefix": 3e-2, "prompt": 1e-1, "ia3": 1e-1}
"""Tiny-model learning rates large enough that 8 steps move the loss for every method."""


def trainer_config(
    tmp: Path,
    model_dir: Path,
    data: Path,
    method: str | dict[str, Any] = "lora",
    *,
    name: str = "job",
    job: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    output: dict[str, Any] | None = None,
    runtime: dict[str, Any] | None = None,
    adapters: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A TrainerConfig (wire form) for a short SFT run under `tmp`; keyword blocks are merged in; `adapters` are
    the input Adapters' artifact URIs by name, as the operator resolves them."""
    block = METHOD_BLOCKS[method] if isinstance(method, str) else method
    key = method if isinstance(method, str) else method["type"]
    spec: dict[str, Any] = {
        "baseModel": {"uri": f"file://{model_dir}"},
        "dataset": {"train": {"uri": f"file://{data}"}, "prep": {"maxSeqLength": 64}},
        "method": block,
        "objective": {"type": "sft"},
        "training": {
            "maxSteps": 8,
            "batchSize": 8,
            "learningRate": LEARNING_RATES.get(key.split("-")[0], 1e-2),
            "precision": "fp32",
            "warmupRatio": 0,
            "scheduler": "constant",
        }
        | (training or {}),
        "output": {"uri": f"file://{tmp}/out"} | (output or {}),
        "checkpointing": {"everySteps": 100, "keepLast": 2},
    }
    spec |= job or {}
    return {
        "target": {"kind": "FineTuneJob", "namespace": "ns", "name": name},
        "job": spec,
        "runtime": {
            "cacheDir": str(tmp / "cache"),
            "workDir": str(tmp / "work"),
            "checkpointDir": str(tmp / "checkpoints"),
            "pvcMountRoot": str(tmp / "pvc"),
        }
        | (runtime or {}),
    } | ({"adapters": adapters} if adapters else {})
