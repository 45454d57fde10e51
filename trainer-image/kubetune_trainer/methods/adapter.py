"""Bottleneck adapters (method `adapter`), through the PEFT tuner registered in `bottleneck.py`."""

from __future__ import annotations

from typing import Any

from kubetune.api.estimate import MemoryEstimate, ModelShape, TrainSetup, frozen_base
from kubetune.api.v1alpha1.methods import AdapterMethod
from kubetune_trainer.context import RunContext
from kubetune_trainer.loading import ModelInfo
from kubetune_trainer.methods import bottleneck
from kubetune_trainer.methods.unit import MethodUnit, peft_model, saved_embeddings, task_type
from kubetune_trainer.registry import as_variant


class AdapterUnit(MethodUnit):
    variant = AdapterMethod

    def check_targets(self, ctx: RunContext, info: ModelInfo) -> None:
        bottleneck.target_names(sorted(info.module_names), as_variant(ctx.spec.method, AdapterMethod).adapter.style)

    def memory(self, shape: ModelShape, setup: TrainSetup) -> MemoryEstimate:
        settings = as_variant(setup.method, AdapterMethod).adapter
        targets = bottleneck.target_names(sorted(shape.linear_modules), settings.style)
        widths = [shape.linear_modules[name][1] for name in targets]
        trainable = sum(bottleneck.parameters(width, settings.reduction_factor) for width in widths)
        return frozen_base(self.name, shape, setup, trainable)

    def apply(self, ctx: RunContext) -> Any:
        settings = as_variant(ctx.spec.method, AdapterMethod).adapter
        config = bottleneck.BottleneckConfig(
            style=settings.style,
            reduction_factor=settings.reduction_factor,
            target_modules=bottleneck.target_names([n for n, _ in ctx.model.named_modules()], settings.style),
            modules_to_save=saved_embeddings(ctx),
            task_type=task_type(ctx),
        )
        return peft_model(ctx, config)


ADAPTER = AdapterUnit()
