"""The objective unit: how the trainer builds one objective's TRL trainer.

The objective's static facts (the data formats it trains on, the model it trains, whether LwF can
distil it) live on its API variant, where the CRD rules and the operator read them too; the unit
maps the variant's settings onto its TRL config and builds the trainer with `trl_trainer`, which
hands every trainer the same model, data, tokenizer and callbacks from the context.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from kubetune.api.v1alpha1.objectives import OBJECTIVE_UNION, ObjectiveVariant
from kubetune_trainer.context import RunContext
from kubetune_trainer.registry import VariantUnit

if TYPE_CHECKING:
    from transformers import Trainer


class ObjectiveUnit(VariantUnit):
    """One objective in the trainer, registered in `kubetune_trainer.objectives.OBJECTIVES` by its API `type`."""

    union = OBJECTIVE_UNION
    variant: ClassVar[type[ObjectiveVariant]]

    def check_data(self, ctx: RunContext) -> None:
        """Refuse (or adapt to) settings the prepared data and tokenizer cannot honour; runs before weights load."""

    def build(self, ctx: RunContext) -> Trainer:
        """A ready-to-train trainer for the filled context (model wrapped by the method, data prepared)."""
        raise NotImplementedError


def trl_trainer(
    ctx: RunContext, trainer_cls: Any, config_cls: Any, config: Mapping[str, Any], **overrides: Any
) -> Trainer:
    """`trainer_cls` with `config_cls` from the run's TrainingArguments keywords plus the objective's `config`.

    Model, datasets, tokenizer and callbacks come from the context; `overrides` replaces any of them
    (e.g. KTO's unpaired datasets) or adds trainer-specific ones (RLHF's reward functions).
    """
    kwargs: dict[str, Any] = {
        "model": ctx.model,
        "args": config_cls(**ctx.training_args_kwargs(**config)),
        "train_dataset": ctx.train_dataset,
        "eval_dataset": ctx.eval_dataset,
        "processing_class": ctx.tokenizer,
        "callbacks": list(ctx.callbacks),
    }
    trainer: Trainer = trainer_cls(**(kwargs | overrides))
    return trainer
