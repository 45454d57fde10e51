"""Full fine-tuning: every weight of the base trains (pair with DeepSpeed ZeRO for large models)."""

from __future__ import annotations

from typing import Any

from kubetune.api.v1alpha1.methods import FullMethod
from kubetune_trainer.context import RunContext
from kubetune_trainer.methods.unit import MethodUnit


class FullUnit(MethodUnit):
    variant = FullMethod

    def apply(self, ctx: RunContext) -> Any:
        for param in ctx.model.parameters():
            param.requires_grad_(True)
        return ctx.model


FULL = FullUnit()
