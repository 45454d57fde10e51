"""Prompt tuning: learned input embeddings only (the fewest trainable parameters); the base stays untouched.

Prefix tuning (`prefix.py`) is the same unit with key/value prefixes in every layer instead.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from kubetune.api.estimate import MemoryEstimate, ModelShape, TrainSetup, frozen_base
from kubetune.api.v1alpha1.methods import MethodVariant, PrefixMethod, PromptMethod, PromptSettings
from kubetune_trainer.context import RunContext
from kubetune_trainer.methods.unit import MethodUnit, peft_model, task_type


class PromptUnit(MethodUnit):
    variant: ClassVar[type[MethodVariant]] = PromptMethod

    def peft_config(self, settings: PromptSettings, *, task_type: str) -> Any:
        """Random init: text init needs a prompt string the API does not carry (and a tokenizer round-trip)."""
        from peft import PromptTuningConfig

        return PromptTuningConfig(num_virtual_tokens=settings.num_virtual_tokens, task_type=task_type)

    def virtual_parameters(self, shape: ModelShape) -> int:
        """Learned values per virtual token: one input embedding."""
        return shape.hidden_size

    def memory(self, shape: ModelShape, setup: TrainSetup) -> MemoryEstimate:
        method = setup.method
        assert isinstance(method, PromptMethod | PrefixMethod)
        tokens = method.prompt.num_virtual_tokens
        longer = replace(setup, seq_len=setup.seq_len + tokens)
        return frozen_base(self.name, shape, longer, tokens * self.virtual_parameters(shape))

    def apply(self, ctx: RunContext) -> Any:
        method = ctx.spec.method
        assert isinstance(method, PromptMethod | PrefixMethod)
        return peft_model(ctx, self.peft_config(method.prompt, task_type=task_type(ctx)))


PROMPT = PromptUnit()
