"""Estimator accuracy: one kubetune run's measured memory next to what the trainer's estimator predicted for it.

Measured: the tensor bytes of weights (with 4-bit quantization constants), gradients and optimizer states right
after the first optimizer step, and the peak: CUDA's max allocated on a GPU, the peak RSS above the RSS after
imports on a CPU. Predicted: the method unit's `MemoryEstimate` for the run's spec, the numbers preflight checks.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from kubetune_dev.monitoring import served_series
from support.bench_trainer import Case, StepTimes, kubetune_side, write_data


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def tensor_bytes(tensor: Any) -> int:
    return int(tensor.numel() * tensor.element_size())


def weight_bytes(model: Any) -> int:
    """Parameters and buffers, plus the absmax constants bitsandbytes keeps beside a 4-bit weight."""
    total = sum(tensor_bytes(p) for p in model.parameters()) + sum(tensor_bytes(b) for b in model.buffers())
    for param in model.parameters():
        state = getattr(param, "quant_state", None)
        while state is not None:
            total += tensor_bytes(state.absmax) if getattr(state, "absmax", None) is not None else 0
            state = getattr(state, "state2", None)
    return total


def tensor_probe(found: dict[str, int]) -> Any:
    from transformers import TrainerCallback

    class Probe(TrainerCallback):
        """After the first optimizer step, before gradients are cleared."""

        def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if found:
                return
            model, optimizer = kwargs["model"], kwargs["optimizer"]
            found["weights"] = weight_bytes(model)
            found["gradients"] = sum(tensor_bytes(p.grad) for p in model.parameters() if p.grad is not None)
            found["optimizer"] = sum(
                tensor_bytes(value)
                for per_param in optimizer.state.values()
                for value in per_param.values()
                if hasattr(value, "element_size") and value.dim() > 0
            )

    return Probe()


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import torch
    import transformers  # noqa: F401
    import trl  # noqa: F401

    from kubetune_trainer import preflight
    from kubetune_trainer.loading import inspect_model

    torch.set_num_threads(int(spec.get("threads", 1)))
    cuda = torch.cuda.is_available()
    root, model_dir = Path(spec["root"]), Path(spec["model_dir"])
    case = Case(**spec["case"])
    data = write_data(root / "data", case.objective, case.rows)
    shape = preflight.shape_of(inspect_model(model_dir))  # before the run: ZeRO-3 stays registered after it
    rss_before = resident_bytes()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    tensors: dict[str, int] = {}
    times = StepTimes()
    probe = () if case.distributed else (tensor_probe(tensors),)  # ZeRO-3 partitions parameters: CUDA peak only
    ctx, _ = kubetune_side(case, model_dir, data, root / "run", times, callbacks=probe)
    predicted = preflight.estimate(ctx.method, shape, preflight.train_setup(ctx.spec, ctx.precision, 1))
    assert predicted is not None, f"method {ctx.method} has no memory formula"
    peak = (
        torch.cuda.max_memory_allocated()
        if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    )
    reporter = ctx.extras.get("reporter")
    served = (
        served_series(generate_latest(reporter.metrics.registry).decode()) if reporter and reporter.metrics else set()
    )
    return {
        "served": sorted(served),
        "precision": ctx.precision,
        "method": ctx.method,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "measured": {**tensors, "peak": peak},
        "predicted": {
            "weights": predicted.weights,
            "gradients": predicted.gradients,
            "optimizer": predicted.optimizer,
            "activations": predicted.activations,
            "overhead": predicted.overhead,
            "total": predicted.total,
        },
        "steady": times.steady(case.warmup) if len(times.step_ends) > case.warmup else None,
    }
