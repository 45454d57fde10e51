"""LoRA: a low-rank update W' = W + (alpha / rank) * B A on the target modules, through `peft.LoraConfig`.

DoRA and QLoRA are the same unit with one thing changed (`dora.py`, `qlora.py`), and `auto`
resolves to lora or qlora with its own `lora` block.
"""

from __future__ import annotations

from typing import Any, ClassVar

from kubetune.api.sizing import lora_block
from kubetune.api.v1alpha1.methods import LoraMethod, LoraSettings, MethodVariant
from kubetune_trainer.context import RunContext
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.loading import ModelInfo
from kubetune_trainer.methods.unit import MethodUnit, check_linear_targets, peft_model, task_type
from kubetune_trainer.tokenizer_align import new_token_training


def lora_settings(ctx: RunContext) -> LoraSettings:
    settings = lora_block(ctx.spec.method)
    if settings is None:
        raise ConfigError(f"method {ctx.spec.method.type} has no lora block")
    return settings


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


class LoraUnit(MethodUnit):
    variant: ClassVar[type[MethodVariant]] = LoraMethod
    use_dora = False

    def check_targets(self, ctx: RunContext, info: ModelInfo) -> None:
        targets = [t for t in lora_settings(ctx).target_modules if t != "all-linear"]
        check_linear_targets(info, targets, "method.lora.targetModules")

    def prepare_base(self, ctx: RunContext) -> Any:
        """The base model the adapter wraps (QLoRA prepares its quantized base here)."""
        return ctx.model

    def apply(self, ctx: RunContext) -> Any:
        """New tokens: LoRA trains just their input rows, and saves an untied output head whole."""
        tokens, save = new_token_training(ctx.model, ctx.new_token_ids)
        ctx.model = self.prepare_base(ctx)
        config = lora_config(
            lora_settings(ctx),
            task_type=task_type(ctx),
            use_dora=self.use_dora,
            trainable_token_indices=tokens,
            modules_to_save=save,
        )
        return peft_model(ctx, config)


LORA = LoraUnit()
