"""LoRA (and, with `use_dora`, DoRA): map `method.lora` onto `peft.LoraConfig`."""

from __future__ import annotations

from typing import Any

from kubetune.api.v1alpha1.methods import LoraSettings


def lora_config(
    settings: LoraSettings,
    *,
    task_type: str,
    use_dora: bool = False,
    trainable_token_indices: dict[str, list[int]] | None = None,
    modules_to_save: list[str] | None = None,
) -> Any:
    """`all-linear` is passed as PEFT's own keyword (a string, not a list) so PEFT excludes the output head."""
    from peft import LoraConfig

    targets: str | list[str] = (
        "all-linear" if settings.target_modules == ["all-linear"] else list(settings.target_modules)
    )
    return LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,  # type: ignore[arg-type]  # PEFT annotates int, scales by any float
        lora_dropout=settings.dropout,
        target_modules=targets,
        use_dora=use_dora,
        task_type=task_type,
        trainable_token_indices=trainable_token_indices or None,
        modules_to_save=modules_to_save or None,
        # a tied output head must keep sharing the (now trainable) embedding copy
        ensure_weight_tying=bool(modules_to_save),
    )
