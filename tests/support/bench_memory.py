"""Estimator accuracy: one kubetune run's measured memory next to what the trainer's estimator predicted for it.

Measured: the tensor bytes of weights (with 4-bit quantization constants), gradients and optimizer states right
after the first optimizer step; the activations, the bytes of the tensors autograd saves for backward in a step's
forward (`saved_tensors_hooks`, each storage once, parameters left out); and the peak: CUDA's max allocated on a
GPU. On a CPU the peak is the tensors resident when a step begins (weights, optimizer states) plus how far the
RSS rises above that during the steps after the first (the first step's one-time allocations, such as BLAS and
oneDNN workspaces and the optimizer's states, are in the step's starting point, not in its rise). The worker
runs with glibc's mmap threshold fixed (`MALLOC_MMAP_THRESHOLD_`, set by the benchmark) so that every freed
tensor goes back to the system at once and the RSS follows the live tensors as CUDA's allocated bytes do; with
the default, glibc keeps freed activations for reuse and the RSS shows its cache, not the tensors.
Predicted: the method unit's `MemoryEstimate` for the run's spec, the numbers preflight checks.
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


def reset_peak_resident() -> None:
    """Start the kernel's peak RSS (VmHWM) over from the current RSS (Linux's clear_refs, value 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


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


class SavedForBackward:
    """Bytes of the distinct storages autograd saves in one forward, parameters (and views of them) left out."""

    def __init__(self) -> None:
        self.skip: set[int] = set()
        self.seen: set[int] = set()
        self.bytes = 0
        self.most = 0

    def pack(self, tensor: Any) -> Any:
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer not in self.skip and pointer not in self.seen:
            self.seen.add(pointer)
            self.bytes += storage.nbytes()
        return tensor

    def start_step(self) -> None:
        self.most = max(self.most, self.bytes)
        self.seen.clear()
        self.bytes = 0


def tensor_probe(found: dict[str, int], saved: SavedForBackward) -> Any:
    from transformers import TrainerCallback

    class Probe(TrainerCallback):
        """Tensors after the first optimizer step, before gradients are cleared; saved activations per step; the
        RSS at the start of the second step and its peak over the steps after."""

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            model = kwargs["model"]
            saved.skip = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            saved.start_step()
            if state.global_step == 1:
                found["step_start"] = resident_bytes()
                reset_peak_resident()

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if "step_start" in found:
                found["step_peak"] = peak_resident_bytes()

        def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if "weights" in found:
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
    saved = SavedForBackward()
    probe = () if case.distributed else (tensor_probe(tensors, saved),)  # ZeRO-3 partitions parameters: CUDA only
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda tensor: tensor):
        ctx, _ = kubetune_side(case, model_dir, data, root / "run", times, callbacks=probe)
    saved.start_step()
    predicted = preflight.estimate(ctx.method, shape, preflight.train_setup(ctx.spec, ctx.precision, 1))
    assert predicted is not None, f"method {ctx.method} has no memory formula"
    if cuda:
        peak = torch.cuda.max_memory_allocated()
    elif "step_start" in tensors:
        rise = tensors.pop("step_peak") - tensors.pop("step_start")
        peak = rise + tensors["weights"] + tensors["optimizer"]
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    reporter = ctx.extras.get("reporter")
    served = (
        served_series(generate_latest(reporter.metrics.registry).decode()) if reporter and reporter.metrics else set()
    )
    return {
        "served": sorted(served),
        "precision": ctx.precision,
        "method": ctx.method,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "measured": {**tensors, "activations": saved.most, "peak": peak},
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
