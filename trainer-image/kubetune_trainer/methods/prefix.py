"""Prefix tuning: learned key/value prefixes in every layer; the base model stays untouched."""

from __future__ import annotations

from typing import Any

from kubetune.api.estimate import ModelShape
from kubetune.api.v1alpha1.methods import PrefixMethod, PromptSettings
from kubetune_trainer.methods.prompt import PromptUnit


class PrefixUnit(PromptUnit):
    variant = PrefixMethod

    def virtual_parameters(self, shape: ModelShape) -> int:
        """A key and a value per layer, as wide as the model's key/value projections (PEFT sizes them so)."""
        return shape.num_layers * 2 * (shape.kv_dim or shape.hidden_size)

    def peft_config(self, settings: PromptSettings, *, task_type: str) -> Any:
        from peft import PrefixTuningConfig

        return PrefixTuningConfig(num_virtual_tokens=settings.num_virtual_tokens, task_type=task_type)


PREFIX = PrefixUnit()
