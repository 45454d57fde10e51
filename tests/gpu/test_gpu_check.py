"""The GPU check (`make test-gpu`): the kubetune pipeline on CUDA with a ~1B Llama built from config.

Each case is one fresh process of `support.bench_trainer memory` running `kubetune_trainer.pipeline.run` with the
production hooks (progress reporter with its metrics registry): LoRA in bf16; QLoRA with NF4, double
quantization, paged 8-bit AdamW and bf16 compute; full fine-tuning with DeepSpeed ZeRO-3 on one GPU. It prints
tokens/s, MFU (model FLOPs per token: 6N + 12 L h s when every weight trains, 4N + 12 L h s when the base is
frozen, N the parameters without the input embedding; against the GPU's dense bf16 peak) and CUDA's peak
allocated memory against the estimator's prediction without its fixed overhead, and checks that a CUDA run
serves `kubetune_trainer_gpu_memory_bytes` (the series the CPU end-to-end run cannot). The model is built once
and cached under ~/.cache/kubetune/test-models. Needs only the repository and its installed venv: the model,
tokenizer and data are made here. Its duration and numbers are not recorded yet: no GPU has run it from this
repository's machines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoConfig

from kubetune_dev.tiny import tiny_model_dir
from support.bench_runs import model_flops_per_token, table, worker
from support.bench_trainer import free_port

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.trainer,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

ONE_B = {"hidden": 2048, "layers": 22, "heads": 16, "kv_heads": 4, "intermediate": 5632, "positions": 4096}
"""TinyLlama's shape (1.0B parameters with the tiny tokenizer's 512-token vocabulary)."""
DENSE_BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}
"""Dense bf16 tensor-core peak FLOP/s by GPU name (SXM parts for H100/H200)."""
SEQUENCE = 2048
COMMON = {"steps": 20, "warmup": 5, "batch_size": 4, "max_length": SEQUENCE, "packing": True, "rows": 8000}
CASES: dict[str, dict[str, Any]] = {
    "lora bf16": {"method": "lora", "precision": "bf16", "learning_rate": 1e-4},
    "qlora nf4 + paged 8-bit AdamW": {
        "method": "qlora",
        "precision": "bf16",
        "optimizer": "paged_adamw_8bit",
        "learning_rate": 1e-4,
    },
    "full ZeRO-3": {
        "method": "full",
        "precision": "bf16",
        "learning_rate": 1e-5,
        "distributed": {"strategy": "deepspeed", "zeroStage": 3},
    },
}


def peak_flops() -> float | None:
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in DENSE_BF16_PEAK.items() if key in name), None)


def test_kubetune_paths_on_cuda(tmp_path: Path) -> None:
    model = tiny_model_dir(**ONE_B)
    rows, failures = [], []
    for name, case in CASES.items():
        env = {"OMP_NUM_THREADS": "8"}
        if "distributed" in case:  # DeepSpeed owns a one-process group, as the deepspeed launcher would set it up
            env |= {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1"}
            env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
        found = worker("memory", {"case": COMMON | case, "model_dir": str(model)}, tmp_path / name, 900, env)
        steady = found["steady"]
        tokens_per_second = steady["tokens"] / steady["seconds"]
        peak, predicted = found["measured"]["peak"], found["predicted"]
        config = AutoConfig.from_pretrained(model)
        flops = model_flops_per_token(config, SEQUENCE, frozen_base=case["method"] != "full")
        gpu_peak = peak_flops()
        mfu = f"{tokens_per_second * flops / gpu_peak:.1%}" if gpu_peak else "n/a (unknown GPU)"
        rows.append([
            name, found["precision"], f"{tokens_per_second:,.0f}", mfu, f"{peak / 2**30:.1f}",
            f"{(predicted['total'] - predicted['overhead']) / 2**30:.1f}",
            f"{(predicted['total'] - predicted['overhead']) / peak:.2f}",
        ])  # fmt: skip
        if found["precision"] != "bf16":
            failures.append(f"{name}: trained in {found['precision']}, not bf16")
        if "kubetune_trainer_gpu_memory_bytes" not in found["served"]:
            failures.append(f"{name}: the trainer's metrics do not serve kubetune_trainer_gpu_memory_bytes")
    header = ["case", "precision", "tokens/s", "MFU", "peak GiB", "predicted GiB", "predicted/peak"]
    print(f"\n\nGPU check on {torch.cuda.get_device_name()}, ~1B Llama, {SEQUENCE}-token packed rows:\n")
    print(table(header, rows))
    assert not failures, failures
