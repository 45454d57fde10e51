"""IA3: learned per-channel rescaling of keys, values and feed-forward activations."""

from __future__ import annotations

from typing import Any

from kubetune.api.estimate import MemoryEstimate, ModelShape, TrainSetup, frozen_base
from kubetune.api.v1alpha1.methods import IA3Method, IA3Settings
from kubetune_trainer.context import RunContext
from kubetune_trainer.loading import ModelInfo
from kubetune_trainer.methods.unit import (
    MethodUnit,
    check_linear_targets,
    matching_linears,
    peft_model,
    saved_embeddings,
    task_type,
)
from kubetune_trainer.registry import as_variant


def ia3_config(settings: IA3Settings, *, task_type: str, modules_to_save: list[str] | None = None) -> Any:
    """Feed-forward modules not among the targets are dropped: PEFT requires them to be a subset."""
    from peft import IA3Config

    targets = list(settings.target_modules)
    return IA3Config(
        target_modules=targets,
        feedforward_modules=[m for m in settings.feedforward_modules if m in targets],
        task_type=task_type,
        modules_to_save=modules_to_save or None,
    )


class IA3Unit(MethodUnit):
    variant = IA3Method

    def check_targets(self, ctx: RunContext, info: ModelInfo) -> None:
        targets = list(as_variant(ctx.spec.method, IA3Method).ia3.target_modules)
        check_linear_targets(info, targets, "method.ia3.targetModules")

    def memory(self, shape: ModelShape, setup: TrainSetup) -> MemoryEstimate:
        """A feed-forward target scales its input (one value per input channel), the others their output."""
        settings = as_variant(setup.method, IA3Method).ia3
        targets = list(settings.target_modules)
        feedforward = matching_linears(shape, [m for m in settings.feedforward_modules if m in targets])
        trainable = sum(
            dims[0] if name in feedforward else dims[1] for name, dims in matching_linears(shape, targets).items()
        )
        return frozen_base(self.name, shape, setup, trainable)

    def apply(self, ctx: RunContext) -> Any:
        settings = as_variant(ctx.spec.method, IA3Method).ia3
        config = ia3_config(settings, task_type=task_type(ctx), modules_to_save=saved_embeddings(ctx))
        return peft_model(ctx, config)


IA3 = IA3Unit()
