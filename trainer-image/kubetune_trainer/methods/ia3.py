"""IA3: learned per-channel rescaling of keys, values and feed-forward activations."""

from __future__ import annotations

from typing import Any

from kubetune.api.v1alpha1.methods import IA3Settings


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
