"""`kubetune estimate`: the memory a FineTuneJob needs per GPU, and what `method: auto` picks, as a table.

Pure: a validated spec, the model's shape (from its config.json) and GPU budgets in, text out. The
numbers come from `kubetune.api.sizing` and `kubetune.api.estimate`, which the trainer's preflight
uses on the node, so the table and the preflight agree for the same spec.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kubetune.api.estimate import GIB, ModelShape, estimate
from kubetune.api.sizing import choose_auto, train_setup
from kubetune.api.v1alpha1.finetunejob import FineTuneJobSpec
from kubetune.api.v1alpha1.methods import AutoMethod


@dataclass(frozen=True)
class Gpu:
    product: str
    memory_bytes: int
    requested: bool = False
    """The spec's own `resources.gpuProduct`."""


def _gib(value: int) -> str:
    return f"{value / GIB:.1f}"


def estimate_report(spec: FineTuneJobSpec, shape: ModelShape, gpus: Sequence[Gpu], *, model_type: str) -> str:
    """Header lines (model, setup, the spec's method broken down) and one table row per GPU."""
    setup = train_setup(spec, spec.training.precision, spec.resources.world_size)
    method = spec.method.type
    own = None if isinstance(spec.method, AutoMethod) else estimate(method, shape, setup)
    lines = [
        f"model: {spec.base_model.uri} ({model_type}): {shape.num_params:,} parameters, "
        f"{shape.num_layers} layers, hidden {shape.hidden_size}",
        f"setup: {setup.precision}, batch {setup.batch_size} x {setup.seq_len} tokens, gradient checkpointing "
        f"{'on' if setup.gradient_checkpointing else 'off'}, world size {setup.world_size}"
        + (f", ZeRO-{setup.zero_stage} offload {setup.offload}" if setup.zero_stage is not None else ""),
    ]
    if own is not None:
        lines.append(f"method {own.summary()}")
    elif method != "auto":
        lines.append(
            f"method {method}: not sized from config.json alone (full, lora, dora and qlora are); the preflight "
            "pod sizes it from the model's module layout"
        )
    header = ["GPU PRODUCT", "MEMORY GiB"]
    if own is not None:
        header += [f"{method.upper()} GiB", "FITS"]
    header.append("AUTO PICKS")
    rows = [header]
    for gpu in gpus:
        row = [gpu.product + (" *" if gpu.requested else ""), _gib(gpu.memory_bytes)]
        if own is not None:
            row += [_gib(own.total), "yes" if own.total <= gpu.memory_bytes else "no"]
        choice = choose_auto(shape, setup, gpu.memory_bytes)
        row.append(f"{choice.method} ({_gib(choice.estimate.total)} GiB)" if choice.estimate else "nothing fits")
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    if any(gpu.requested for gpu in gpus):
        lines.append("* resources.gpuProduct of this FineTuneJob")
    return "\n".join(lines)
