"""Partial fine-tuning: freeze everything except the last N transformer blocks and named modules."""

from __future__ import annotations

import re
from typing import Any

from kubetune.api.estimate import MemoryEstimate, ModelShape, TrainSetup, full_weights
from kubetune.api.v1alpha1.methods import PartialMethod, PartialSettings
from kubetune_trainer.context import RunContext
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.loading import ModelInfo
from kubetune_trainer.methods.unit import MethodUnit, saved_embeddings
from kubetune_trainer.registry import as_variant

_BLOCK = re.compile(r"^(?P<stack>.*\.(?:layers|h|blocks|block|layer))\.(?P<index>\d+)(?:\.|$)")


def trainable_parameter_names(names: list[str], settings: PartialSettings) -> set[str]:
    """Pure selection so it can be tested on names alone; the stack is the one with the most blocks."""
    stacks: dict[str, set[int]] = {}
    for name in names:
        match = _BLOCK.match(name)
        if match:
            stacks.setdefault(match["stack"], set()).add(int(match["index"]))
    selected: set[str] = set()
    if settings.trainable_layers > 0:
        if not stacks:
            raise ConfigError("method.partial.trainableLayers: the model has no numbered transformer blocks")
        stack, indices = max(stacks.items(), key=lambda item: len(item[1]))
        keep = set(sorted(indices)[-settings.trainable_layers :])
        for name in names:
            match = _BLOCK.match(name)
            if match and match["stack"] == stack and int(match["index"]) in keep:
                selected.add(name)
    for module in settings.trainable_modules:
        hits = {n for n in names if module in n}
        if not hits:
            raise ConfigError(f"method.partial.trainableModules: no parameter name contains {module!r}")
        selected |= hits
    return selected


class PartialUnit(MethodUnit):
    variant = PartialMethod

    def check_targets(self, ctx: RunContext, info: ModelInfo) -> None:
        trainable_parameter_names(sorted(info.module_names), as_variant(ctx.spec.method, PartialMethod).partial)

    def memory(self, shape: ModelShape, setup: TrainSetup) -> MemoryEstimate:
        settings = as_variant(setup.method, PartialMethod).partial
        selected = trainable_parameter_names(sorted(shape.parameter_sizes), settings)
        return full_weights(self.name, shape, setup, trainable=sum(shape.parameter_sizes[n] for n in selected))

    def apply(self, ctx: RunContext) -> Any:
        """New tokens also unfreeze the embedding modules, so their rows can learn."""
        model = ctx.model
        names = [n for n, _ in model.named_parameters()]
        keep = trainable_parameter_names(names, as_variant(ctx.spec.method, PartialMethod).partial)
        for name, param in model.named_parameters():
            param.requires_grad_(name in keep)
        for leaf in saved_embeddings(ctx) or []:
            next(m for n, m in model.named_modules() if n.rsplit(".", 1)[-1] == leaf).requires_grad_(True)
        return model


PARTIAL = PartialUnit()
