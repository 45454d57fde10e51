"""Prefix tuning and prompt tuning: learned virtual tokens, the base model stays untouched."""

from __future__ import annotations

from typing import Any

from kubetune.api.v1alpha1.methods import PromptSettings


def prefix_config(settings: PromptSettings, *, task_type: str) -> Any:
    from peft import PrefixTuningConfig

    return PrefixTuningConfig(num_virtual_tokens=settings.num_virtual_tokens, task_type=task_type)


def prompt_config(settings: PromptSettings, *, task_type: str) -> Any:
    """Random init: text init needs a prompt string the API does not carry (and a tokenizer round-trip)."""
    from peft import PromptTuningConfig

    return PromptTuningConfig(num_virtual_tokens=settings.num_virtual_tokens, task_type=task_type)
