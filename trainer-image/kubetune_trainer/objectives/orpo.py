"""ORPO through TRL's experimental `ORPOTrainer` (TRL 1.16 ships it only under `trl.experimental`).

ORPO adds an odds-ratio preference term to the SFT loss on the chosen answer and needs no reference
model, so it costs one forward per sequence instead of DPO's two; `beta` weighs the preference term.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubetune.api.v1alpha1.objectives import OrpoObjective
from kubetune_trainer.context import RunContext
from kubetune_trainer.objectives.unit import ObjectiveUnit, trl_trainer
from kubetune_trainer.registry import as_variant

if TYPE_CHECKING:
    from transformers import Trainer


def get_orpo_config(objective: OrpoObjective, *, max_length: int) -> dict[str, Any]:
    """`ORPOConfig` keywords for the objective."""
    return {"beta": objective.beta, "max_length": max_length}


class OrpoUnit(ObjectiveUnit):
    variant = OrpoObjective

    def build(self, ctx: RunContext) -> Trainer:
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        objective = as_variant(ctx.spec.objective, OrpoObjective)
        config = get_orpo_config(objective, max_length=ctx.spec.dataset.prep.max_seq_length)
        return trl_trainer(ctx, ORPOTrainer, ORPOConfig, config)


ORPO = OrpoUnit()
