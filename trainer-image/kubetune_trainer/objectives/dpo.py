"""DPO and IPO through TRL's `DPOTrainer` (one trainer, two losses).

IPO is DPO with a squared loss on the log-ratio margin, so both objectives share this builder and
differ only in `loss_type` (a list in TRL 1.16, which allows mixing losses). With a PEFT model no
reference copy is made: TRL scores the reference by disabling the adapter, which halves memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from kubetune.api.v1alpha1.objectives import DpoObjective, IpoObjective, ObjectiveVariant
from kubetune_trainer.context import RunContext
from kubetune_trainer.objectives.unit import ObjectiveUnit, trl_trainer

if TYPE_CHECKING:
    from transformers import Trainer

LOSS_TYPES = {"dpo": "sigmoid", "ipo": "ipo"}


def get_dpo_config(objective: DpoObjective | IpoObjective, *, max_length: int) -> dict[str, Any]:
    """`DPOConfig` keywords for the objective (merged over the run's TrainingArguments keywords)."""
    return {"beta": objective.beta, "loss_type": [LOSS_TYPES[objective.type]], "max_length": max_length}


class DpoUnit(ObjectiveUnit):
    variant: ClassVar[type[ObjectiveVariant]] = DpoObjective

    def build(self, ctx: RunContext) -> Trainer:
        from trl import DPOConfig, DPOTrainer  # type: ignore[attr-defined]

        objective = ctx.spec.objective
        assert isinstance(objective, DpoObjective | IpoObjective)
        config = get_dpo_config(objective, max_length=ctx.spec.dataset.prep.max_seq_length)
        return trl_trainer(ctx, DPOTrainer, DPOConfig, config)


class IpoUnit(DpoUnit):
    variant = IpoObjective


DPO = DpoUnit()
IPO = IpoUnit()
