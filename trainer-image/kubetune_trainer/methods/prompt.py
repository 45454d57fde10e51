"""Prompt tuning: learned input embeddings only (the fewest trainable parameters); the base stays untouched.

Prefix tuning (`prefix.py`) is the same unit with key/value prefixes in every layer instead.
"""

from __future__ import annotations

from typing import Any, ClassVar

from kubetune.api.v1alpha1.methods import MethodVariant, PrefixMethod, PromptMethod, PromptSettings
from kubetune_trainer.context import RunContext
from kubetune_trainer.methods.unit import MethodUnit, peft_model, task_type


class PromptUnit(MethodUnit):
    variant: ClassVar[type[MethodVariant]] = PromptMethod

    def peft_config(self, settings: PromptSettings, *, task_type: str) -> Any:
        """Random init: text init needs a prompt string the API does not carry (and a tokenizer round-trip)."""
        from peft import PromptTuningConfig

        return PromptTuningConfig(num_virtual_tokens=settings.num_virtual_tokens, task_type=task_type)

    def apply(self, ctx: RunContext) -> Any:
        method = ctx.spec.method
        assert isinstance(method, PromptMethod | PrefixMethod)
        return peft_model(ctx, self.peft_config(method.prompt, task_type=task_type(ctx)))


PROMPT = PromptUnit()
