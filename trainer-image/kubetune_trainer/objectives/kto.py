"""KTO through TRL's `KTOTrainer` (top-level in TRL 1.16; `trl.experimental.kto` is a deprecated alias).

KTO learns from unpaired desirable/undesirable completions. The objective also accepts paired
preference rows (`KtoObjective.facts`); those are split here into one desirable and one undesirable
row each, so a preference dataset can be reused without a separate export.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubetune.api.v1alpha1.objectives import KtoObjective
from kubetune_trainer.context import RunContext
from kubetune_trainer.objectives.unit import ObjectiveUnit, trl_trainer
from kubetune_trainer.registry import as_variant

if TYPE_CHECKING:
    from transformers import Trainer


def get_kto_config(objective: KtoObjective, *, max_length: int) -> dict[str, Any]:
    """`KTOConfig` keywords for the objective."""
    return {
        "beta": objective.beta,
        "desirable_weight": objective.desirable_weight,
        "undesirable_weight": objective.undesirable_weight,
        "max_length": max_length,
    }


def unpaired(dataset: Any) -> Any:
    """Preference pairs -> (prompt, completion, label) rows; KTO-format rows pass through."""
    if dataset is None or "chosen" not in dataset.column_names:
        return dataset
    from trl.data_utils import unpair_preference_dataset

    return unpair_preference_dataset(dataset)


class KtoUnit(ObjectiveUnit):
    variant = KtoObjective

    def build(self, ctx: RunContext) -> Trainer:
        from trl import KTOConfig, KTOTrainer  # type: ignore[attr-defined]

        objective = as_variant(ctx.spec.objective, KtoObjective)
        config = get_kto_config(objective, max_length=ctx.spec.dataset.prep.max_seq_length)
        return trl_trainer(
            ctx,
            KTOTrainer,
            KTOConfig,
            config,
            train_dataset=unpaired(ctx.train_dataset),
            eval_dataset=unpaired(ctx.eval_dataset),
        )


KTO = KtoUnit()
