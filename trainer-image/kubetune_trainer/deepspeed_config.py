"""DeepSpeed ZeRO config from `distributed` and `training`, with "auto" values left to the HF integration.

Batch sizes, learning rate and precision flags are "auto" so the Trainer fills them from the same
`TrainingArguments` the other strategies use: one source of truth, no mismatch assertions.
`torch_adam` keeps DeepSpeed from JIT-compiling its fused Adam op on first use (about 90 s on CPU);
CPU offload needs `DeepSpeedCPUAdam` instead, whose op the image prebuilds.
"""

from __future__ import annotations

from typing import Any

from kubetune.api.v1alpha1.training import DistributedSpec, TrainingSpec


def deepspeed_config(distributed: DistributedSpec, training: TrainingSpec, *, nvme_path: str) -> dict[str, Any]:
    stage = distributed.zero_stage
    zero: dict[str, Any] = {"stage": stage}
    if stage >= 1:
        zero.update(overlap_comm=False, contiguous_gradients=True)
    if stage == 3:
        # without this, save_model writes only the sharded global_stepN/ and no loadable weights
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    offloaded = distributed.offload != "none"
    if offloaded:
        target: dict[str, Any] = {"device": distributed.offload, "pin_memory": True}
        if distributed.offload == "nvme":
            target["nvme_path"] = nvme_path
        zero["offload_optimizer"] = dict(target)
        if stage == 3:
            zero["offload_param"] = dict(target)
    optimizer_params: dict[str, Any] = {
        "lr": "auto",
        "betas": "auto",
        "eps": "auto",
        "weight_decay": "auto",
    }
    if not offloaded:
        optimizer_params["torch_adam"] = True
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": "auto",
        "train_batch_size": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_optimization": zero,
        "optimizer": {"type": "AdamW", "params": optimizer_params},
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "zero_allow_untested_optimizer": True,
    }
    if training.optimizer != "adamw":
        # bitsandbytes/adafactor optimizers are created by the Trainer; DeepSpeed then wraps them
        del config["optimizer"]
    return config
