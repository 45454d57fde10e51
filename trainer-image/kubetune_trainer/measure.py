"""What a run costs, measured on the model the trainer really trained: parameters, bytes, peak memory, time.

These numbers go into the run's metrics (the artifact manifest and `status.result.metrics`) next to
the memory estimator's prediction, so a reader can compare what was predicted with what happened
(the code labs do exactly that). Keys (all floats):

| key | meaning |
|---|---|
| `params.trainable`, `params.total` | parameters (4-bit weights counted unpacked) |
| `params.quantized`, `memory.quantized_bytes` | parameters in quantized layers, their bytes with scales (if any) |
| `memory.weights_bytes` | bytes of every parameter and buffer as stored (4-bit packed, plus scales and code books) |
| `memory.trainable_bytes` | bytes of the trainable parameters (the adapter, or every weight for full fine-tuning) |
| `memory.gradients_bytes` | gradient tensors on the parameters at the first optimizer step |
| `memory.optimizer_bytes` | optimizer state tensors at the end of training |
| `memory.peak_cuda_bytes` | CUDA peak allocated during training (GPU runs) |
| `memory.peak_rss_bytes` | peak resident memory of the process during training (includes the Python/torch runtime) |
| `train.seconds`, `train.tokens_per_second` | wall time of `trainer.train` and non-padding input tokens per second |
| `train.step_seconds` | median optimizer-step time (unlike the totals, untouched by a process's first-step warm-up) |
| `estimate.{weights,gradients,optimizer,total}_bytes` | the estimator's prediction for this run |

Peak RSS is reset when training starts (Linux `clear_refs`); where that is not allowed it is the
process's lifetime peak. Gradient and optimizer bytes are what is visible on the parameters and in the
optimizer's `state`; DeepSpeed keeps both in its own buffers, where they read as 0.
"""

from __future__ import annotations

import contextlib
import math
import resource
import statistics
import time
from pathlib import Path
from typing import Any

from kubetune.api.estimate import MemoryEstimate
from kubetune_trainer.context import RunContext

ESTIMATE_KEY = "memory_estimate"
"""`RunContext.extras` key under which the pipeline keeps the estimator's `MemoryEstimate` for this run."""
_PROC_SELF = Path("/proc/self")


def logical_numel(param: Any) -> int:
    """Elements of the weight a parameter stands for: 4-bit parameters pack two into a byte."""
    quant_state = getattr(param, "quant_state", None)
    shape = getattr(quant_state, "shape", None)
    return int(math.prod(shape)) if shape is not None else int(param.numel())


def quant_state_bytes(quant_state: Any) -> int:
    """Bytes of a bitsandbytes quantization state that grow with the weight: block scales and offsets.

    The code books (NF4's 16 values, double quantization's 256-value map) are a fixed cost per layer,
    counted in `memory.weights_bytes` through the model's total but left out here, so the per-weight
    figure is the one that holds at any model size.
    """
    if quant_state is None:
        return 0
    total = 0
    for name in ("absmax", "offset"):
        tensor: Any = getattr(quant_state, name, None)
        if _is_tensor(tensor):
            total += int(tensor.nbytes)
    return total + quant_state_bytes(getattr(quant_state, "state2", None))


def codebook_bytes(quant_state: Any) -> int:
    if quant_state is None:
        return 0
    code: Any = getattr(quant_state, "code", None)
    return (int(code.nbytes) if _is_tensor(code) else 0) + codebook_bytes(getattr(quant_state, "state2", None))


def _is_tensor(value: Any) -> bool:
    return hasattr(value, "nbytes") and hasattr(value, "data_ptr")


def weight_measurements(model: Any) -> dict[str, float]:
    """Parameter counts and bytes as stored; trainable and quantized parameters also on their own."""
    trainable = total = quantized_params = quantized_bytes = stored = trainable_bytes = 0
    for param in model.parameters():
        count = logical_numel(param)
        size = int(param.nbytes)
        total += count
        if param.requires_grad:
            trainable += count
            trainable_bytes += size
        quant_state = getattr(param, "quant_state", None)
        if quant_state is not None:
            size += quant_state_bytes(quant_state)
            quantized_params += count
            quantized_bytes += size
            stored += codebook_bytes(quant_state)
        stored += size
    stored += sum(int(b.nbytes) for b in model.buffers())
    measured = {
        "params.trainable": trainable,
        "params.total": total,
        "memory.weights_bytes": stored,
        "memory.trainable_bytes": trainable_bytes,
    }
    if quantized_params:
        measured |= {"params.quantized": quantized_params, "memory.quantized_bytes": quantized_bytes}
    return {k: float(v) for k, v in measured.items()}


def tensor_bytes(value: Any) -> int:
    """Bytes of every tensor in a (nested) optimizer state."""
    if _is_tensor(value):
        return int(value.nbytes)
    if isinstance(value, dict):
        return sum(tensor_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(tensor_bytes(v) for v in value)
    return 0


def estimate_measurements(estimate: MemoryEstimate | None) -> dict[str, float]:
    if estimate is None:
        return {}
    return {
        "estimate.weights_bytes": float(estimate.weights),
        "estimate.gradients_bytes": float(estimate.gradients),
        "estimate.optimizer_bytes": float(estimate.optimizer),
        "estimate.total_bytes": float(estimate.total),
    }


def _status_bytes(field: str) -> int | None:
    """A `kB` line of /proc/self/status (VmHWM, VmRSS) in bytes; None off Linux."""
    try:
        for line in (_PROC_SELF / "status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def reset_peak_rss() -> None:
    """Start the resident-memory high-water mark afresh (Linux 4.0+); best effort."""
    with contextlib.suppress(OSError):
        (_PROC_SELF / "clear_refs").write_text("5")


def peak_rss_bytes() -> int:
    """The high-water mark since `reset_peak_rss`, or the process's lifetime peak."""
    hwm = _status_bytes("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measuring_callback(ctx: RunContext) -> Any:
    """A TrainerCallback writing time, gradient, optimizer and peak-memory numbers into `ctx.metrics`."""
    import torch
    from transformers import TrainerCallback

    cuda = ctx.capabilities.cuda

    class Measure(TrainerCallback):
        started = step_started = 0.0
        tokens_at_start = 0
        gradients_seen = False
        step_seconds: list[float] = []

        def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            reset_peak_rss()
            self.tokens_at_start = int(state.num_input_tokens_seen or 0)
            self.started = time.monotonic()

        def on_step_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            self.step_started = time.monotonic()

        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            self.step_seconds.append(time.monotonic() - self.step_started)

        def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, model: Any = None, **_: Any) -> None:
            if self.gradients_seen or model is None:
                return
            self.gradients_seen = True
            grads = sum(int(p.grad.nbytes) for p in model.parameters() if p.grad is not None)
            ctx.metrics["memory.gradients_bytes"] = float(grads)

        def on_train_end(self, args: Any, state: Any, control: Any, optimizer: Any = None, **_: Any) -> None:
            seconds = time.monotonic() - self.started
            tokens = int(state.num_input_tokens_seen or 0) - self.tokens_at_start
            ctx.metrics["train.seconds"] = round(seconds, 3)
            if self.step_seconds:
                ctx.metrics["train.step_seconds"] = round(statistics.median(self.step_seconds), 5)
            if tokens > 0 and seconds > 0:
                ctx.metrics["train.tokens_per_second"] = round(tokens / seconds, 2)
            ctx.metrics["memory.optimizer_bytes"] = float(tensor_bytes(getattr(optimizer, "state", {})))
            ctx.metrics["memory.peak_rss_bytes"] = float(peak_rss_bytes())
            if cuda:
                ctx.metrics["memory.peak_cuda_bytes"] = float(torch.cuda.max_memory_allocated())

    return Measure()


def attach(ctx: RunContext) -> None:
    """`Hooks.before_train`: measure the loaded, method-wrapped model and time/profile its training."""
    ctx.metrics.update(weight_measurements(ctx.model))
    ctx.metrics.update(estimate_measurements(ctx.extras.get(ESTIMATE_KEY)))
    ctx.callbacks.append(measuring_callback(ctx))
