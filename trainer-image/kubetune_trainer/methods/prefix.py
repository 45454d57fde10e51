"""Prefix tuning: learned key/value prefixes in every layer; the base model stays untouched."""

from __future__ import annotations

from typing import Any

from kubetune.api.v1alpha1.methods import PrefixMethod, PromptSettings
from kubetune_trainer.methods.prompt import PromptUnit


class PrefixUnit(PromptUnit):
    variant = PrefixMethod

    def peft_config(self, settings: PromptSettings, *, task_type: str) -> Any:
        from peft import PrefixTuningConfig

        return PrefixTuningConfig(num_virtual_tokens=settings.num_virtual_tokens, task_type=task_type)


PREFIX = PrefixUnit()
