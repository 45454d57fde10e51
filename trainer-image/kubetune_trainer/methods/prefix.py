"""Prefix tuning: learned key/value prefixes in every layer; the base model stays untouched."""

from __future__ import annotations

from typing import Any

from kubetune.api.v1alpha1.methods import PrefixMethod, PromptSettings
from kubetune_trainer.context import RunContext
from kubetune_trainer.methods.unit import MethodUnit, peft_model, task_type


def prefix_config(settings: PromptSettings, *, task_type: str) -> Any:
    from peft import PrefixTuningConfig

    return PrefixTuningConfig(num_virtual_tokens=settings.num_virtual_tokens, task_type=task_type)


class PrefixUnit(MethodUnit):
    variant = PrefixMethod

    def apply(self, ctx: RunContext) -> Any:
        method = ctx.spec.method
        assert isinstance(method, PrefixMethod)
        return peft_model(ctx, prefix_config(method.prompt, task_type=task_type(ctx)))


PREFIX = PrefixUnit()
