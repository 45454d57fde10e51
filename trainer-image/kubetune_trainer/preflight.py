"""Checks that run before any weights are loaded, so a bad spec fails in seconds and never holds a GPU.

Three kinds: static combinations the API schema cannot express (e.g. merging an unmergeable method),
read from the method's facts; capabilities of the machine (bf16, bitsandbytes, DeepSpeed); and the
memory estimate against the devices (the method unit's `memory`, every method has one; the `auto`
candidates' formulas are `kubetune.api.estimate`'s, the numbers `kubetune estimate` prints), which also
resolves `method: auto` to the first of `AutoMethod.candidates` that fits. `spec.preflight.
memoryCheck` decides what a miss does (fail, warn, nothing).

They run twice: in the preflight pod (`--preflight`, no GPU) against the machine the spec asks for
(`expected_capabilities`: the GPU's size from the spec, when it says), and again in the training pod
against the machine it got.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from kubetune.api import sizing
from kubetune.api.estimate import GIB, MemoryEstimate, ModelShape, TrainSetup
from kubetune.api.sizing import train_setup
from kubetune.api.v1alpha1.finetunejob import FineTuneJobSpec
from kubetune.api.v1alpha1.methods import METHOD_FACTS, AutoMethod, MethodFacts, TrainedMethod
from kubetune.api.v1alpha1.preflight import MemoryFit, PreflightReport, gpu_memory_bytes
from kubetune.api.v1alpha1.training import Precision
from kubetune_trainer.context import Capabilities
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.loading import ModelInfo
from kubetune_trainer.methods import METHODS

log = logging.getLogger(__name__)

CPU_BUDGET_ENV = "KUBETUNE_CPU_MEMORY_BYTES"
DEFAULT_CPU_BUDGET = 16 * GIB
GPU_MEMORY_ENV = "KUBETUNE_GPU_MEMORY_BYTES"
ZERO3_WORLD_SIZES = (2, 4, 8, 16, 32, 64)


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def probe_capabilities() -> Capabilities:
    """Look at the machine once; importing torch is the only cost (no CUDA context is kept)."""
    import torch

    cuda = torch.cuda.is_available()
    memory = torch.cuda.get_device_properties(0).total_memory if cuda else 0
    return Capabilities(
        cuda=cuda,
        gpu_memory_bytes=int(memory),
        bf16=bool(cuda and torch.cuda.is_bf16_supported()),
        bitsandbytes=_installed("bitsandbytes"),
        deepspeed=_installed("deepspeed"),
    )


def expected_capabilities(spec: FineTuneJobSpec) -> Capabilities:
    """The machine the spec asks for, as the preflight pod (same image, no GPU) can tell it: the libraries of
    this image, GPUs when `resources.gpus` > 0 with the size the spec gives (0: unknown) and bf16 assumed (a
    GPU without it trains in fp16, the same bytes)."""
    gpus = spec.resources.gpus > 0
    return Capabilities(
        cuda=gpus,
        gpu_memory_bytes=(gpu_memory_bytes(spec) or 0) if gpus else 0,
        bf16=gpus,
        bitsandbytes=_installed("bitsandbytes"),
        deepspeed=_installed("deepspeed"),
    )


def _methods_where(test: Callable[[MethodFacts], bool]) -> str:
    names = [name for name, facts in METHOD_FACTS.items() if test(facts)]
    return ", ".join(names[:-1]) + " or " + names[-1]


def check_spec(spec: FineTuneJobSpec, caps: Capabilities) -> list[str]:
    """Static checks; returns warnings for capability fallbacks the run survives."""
    method = spec.method.type
    facts = spec.method.facts
    if facts is not None and spec.output.merge_weights and not facts.mergeable:
        raise ConfigError(
            f"output.mergeWeights: method {method} cannot be merged into the base weights; "
            f"set mergeWeights: false or use {_methods_where(lambda f: f.mergeable)}"
        )
    if facts is not None and spec.tokenizer.add_tokens and not facts.trains_embeddings:
        raise ConfigError(
            f"tokenizer.addTokens: method {method} cannot train embeddings for new tokens; "
            f"use {_methods_where(lambda f: f.trains_embeddings)}"
        )
    problem = METHODS[method].machine_problem(caps) if facts is not None else None
    if problem:
        raise ConfigError(problem)
    if spec.distributed.strategy == "deepspeed" and not caps.deepspeed:
        raise ConfigError("distributed.strategy deepspeed: DeepSpeed is not installed in this trainer image")
    if spec.distributed.strategy == "fsdp" and facts is not None and not facts.fsdp:
        raise ConfigError(
            f"distributed.strategy fsdp does not support method {method}; "
            "use strategy ddp, or deepspeed with zeroStage <= 2"
        )
    check_training_options(spec, caps)
    warnings = []
    if spec.training.optimizer.startswith("paged_") and not caps.cuda:
        warnings.append(f"optimizer {spec.training.optimizer} is not paged on CPU (bitsandbytes falls back)")
    return warnings


def check_training_options(spec: FineTuneJobSpec, caps: Capabilities) -> None:
    """Liger's kernels need this machine to have a GPU (the spec's rule only sees `resources.gpus`)."""
    import importlib.util

    if spec.training.liger_kernel:
        if not caps.cuda:
            raise ConfigError("training.ligerKernel needs a CUDA GPU (Triton kernels); set ligerKernel: false")
        if importlib.util.find_spec("liger_kernel") is None:
            raise ConfigError("training.ligerKernel: liger-kernel is not installed in this trainer image")


def effective_precision(requested: Precision, caps: Capabilities) -> tuple[Precision, str | None]:
    """Mixed precision needs a GPU (bf16 one that supports it); otherwise train in fp32 and say so."""
    if requested == "fp32":
        return requested, None
    if not caps.cuda:
        return "fp32", f"precision {requested} requested but no GPU is available: training in fp32"
    if requested == "bf16" and not caps.bf16:
        return "fp16", "precision bf16 is not supported by this GPU: training in fp16"
    return requested, None


def device_budget(caps: Capabilities, env: Mapping[str, str] | None = None) -> int | None:
    """Bytes one training process may use: the GPU's memory, or a configurable host budget on CPU; None for
    a GPU of unknown size (the preflight pod of a spec that does not give one)."""
    environ = os.environ if env is None else env
    if caps.cuda:
        return int(environ.get(GPU_MEMORY_ENV, caps.gpu_memory_bytes)) or None
    return int(environ.get(CPU_BUDGET_ENV, DEFAULT_CPU_BUDGET))


def shape_of(info: ModelInfo) -> ModelShape:
    return ModelShape(
        num_params=info.num_params,
        hidden_size=info.hidden_size,
        num_layers=info.num_layers,
        linear_shapes=info.linear_shapes,
        linear_counts=info.linear_counts,
        linear_modules=info.linear_modules,
        parameter_sizes=info.parameter_sizes,
        kv_dim=info.kv_dim,
    )


def estimate(method: str, shape: ModelShape, setup: TrainSetup) -> MemoryEstimate:
    """Bytes per device for `method` (its unit's formula)."""
    return METHODS[method].memory(shape, setup)


def choose_auto(
    shape: ModelShape, setup: TrainSetup, budget_bytes: int, caps: Capabilities, *, enforce: bool = True
) -> tuple[str, MemoryEstimate]:
    """The first of `AutoMethod.candidates` this machine runs and that fits; else a config error with numbers."""
    choice = sizing.choose_auto(shape, setup, budget_bytes, lambda m: not METHODS[m].machine_problem(caps))
    if choice.method is not None and choice.estimate is not None:
        return choice.method, choice.estimate
    if not enforce and choice.tried:
        smallest = min(choice.tried, key=lambda t: t.total)
        return smallest.method, smallest
    raise ConfigError(
        f"model with {shape.num_params:,} parameters does not fit {budget_bytes / GIB:.2f} GiB per device with any "
        f"method: {'; '.join(t.summary() for t in choice.tried)}; request GPUs with more memory, more GPUs with "
        "distributed.strategy deepspeed, or a smaller batchSize / maxSeqLength"
    )


def check_fits(method: str, result: MemoryEstimate, shape: ModelShape, setup: TrainSetup, budget_bytes: int) -> None:
    """Fail fast with a suggestion when an explicitly chosen method will not fit."""
    if result.total <= budget_bytes:
        return
    hints = []
    for other in AutoMethod.candidates:
        if other != method and estimate(other, shape, setup).total <= budget_bytes:
            hints.append(f"method {other}")
    if METHOD_FACTS[method].family == "full":  # the base's own weights train: ZeRO-3 shards them
        for n in ZERO3_WORLD_SIZES:
            sharded = estimate(method, shape, replace(setup, world_size=n, zero_stage=3))
            if n > setup.world_size and sharded.total <= budget_bytes:
                hints.append(f"{n} GPUs with deepspeed zeroStage 3")
                break
    hint = "; try " + " or ".join(hints) if hints else "; no method fits, use bigger GPUs"
    raise ConfigError(
        f"method {method} needs about {result.total / GIB:.2f} GiB per device but {budget_bytes / GIB:.2f} GiB "
        f"is available ({result.summary()}){hint}; if the estimate is wrong for this run, set "
        "preflight.memoryCheck: warn"
    )


@dataclass(frozen=True)
class MemoryVerdict:
    """The method the run trains and how its estimate compares with the device: what status reports."""

    method: TrainedMethod | None
    """None while `auto` waits for a device size (the preflight pod of a spec that gives none)."""
    estimate: MemoryEstimate | None
    budget: int | None
    fit: MemoryFit
    message: str


def _verdict(method: TrainedMethod, needed: MemoryEstimate, budget: int | None, check: str) -> MemoryVerdict:
    if check == "off":
        skipped = "not compared with the device memory (preflight.memoryCheck off)"
        return MemoryVerdict(method, needed, budget, "NotChecked", f"{needed.summary()}; {skipped}")
    if budget is None:
        unknown = "the GPU's memory is not known before the training pod: set preflight.gpuMemory to check it earlier"
        return MemoryVerdict(method, needed, None, "Unknown", f"{needed.summary()}; {unknown}")
    if needed.total <= budget:
        return MemoryVerdict(method, needed, budget, "Fits", f"{needed.summary()}; fits {budget / GIB:.2f} GiB")
    over = f"exceeds {budget / GIB:.2f} GiB per device, training anyway (preflight.memoryCheck warn)"
    return MemoryVerdict(method, needed, budget, "Exceeds", f"{needed.summary()}; {over}")


def resolve_method(
    spec: FineTuneJobSpec,
    info: ModelInfo,
    caps: Capabilities,
    *,
    precision: Precision,
    world_size: int,
    env: Mapping[str, str] | None = None,
) -> MemoryVerdict:
    """Resolve `auto` and compare the method's estimate with the device budget; `preflight.memoryCheck`
    enforce makes a miss a config error (with what would fit)."""
    budget = device_budget(caps, env)
    setup = train_setup(spec, precision, world_size)
    shape = shape_of(info)
    check = spec.preflight.memory_check
    if isinstance(spec.method, AutoMethod):
        if budget is None:
            return MemoryVerdict(None, None, None, "Unknown", "method auto is resolved on the GPU (its memory decides)")
        method, result = choose_auto(shape, setup, budget, caps, enforce=check == "enforce")
        log.info("method auto resolved to %s (%s of %.2f GiB)", method, result.summary(), budget / GIB)
        return _verdict(method, result, budget, check)
    name: TrainedMethod = spec.method.type
    needed = estimate(name, shape, setup)
    if check == "enforce" and budget is not None:
        check_fits(name, needed, shape, setup, budget)
    return _verdict(name, needed, budget, check)


def report(digest: str, verdict: MemoryVerdict, notes: list[str]) -> PreflightReport:
    """The preflight pod's findings, bounded to fit a termination message (4 KiB)."""
    return PreflightReport(
        spec_digest=digest,
        method=verdict.method,
        memory_estimate_bytes=verdict.estimate.total if verdict.estimate else None,
        device_memory_bytes=verdict.budget,
        memory_fit=verdict.fit,
        summary=verdict.message[:1024],
        notes=[note[:256] for note in notes[:8]],
    )
