"""Reward modelling through TRL's `RewardTrainer` (Bradley-Terry loss on chosen/rejected pairs).

The objective's facts say it trains a sequence classifier, so the pipeline loads the base as
`AutoModelForSequenceClassification(num_labels=1)` and PEFT methods use task type `SEQ_CLS`, which
saves the new score head with the adapter. The artifact is therefore a complete reward model (or
adapter + head) that `input_adapters` loads as a reward model, cost model or refusal judge.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubetune.api.v1alpha1.objectives import RewardObjective
from kubetune_trainer.context import RunContext
from kubetune_trainer.objectives.unit import ObjectiveUnit, trl_trainer
from kubetune_trainer.registry import as_variant

if TYPE_CHECKING:
    from transformers import Trainer

CENTER_REWARDS_COEFFICIENT = 0.01
"""Keeps rewards near zero mean (as in the TRL docs), so GRPO/RLOO advantages are not dominated by an offset."""


def get_reward_config(_objective: RewardObjective, *, max_length: int) -> dict[str, Any]:
    """`RewardConfig` keywords for the objective."""
    return {"max_length": max_length, "center_rewards_coefficient": CENTER_REWARDS_COEFFICIENT}


class RewardUnit(ObjectiveUnit):
    variant = RewardObjective

    def build(self, ctx: RunContext) -> Trainer:
        from trl import RewardConfig, RewardTrainer  # type: ignore[attr-defined]

        objective = as_variant(ctx.spec.objective, RewardObjective)
        if ctx.model.config.pad_token_id is None:  # the score head pools at the last non-pad token
            ctx.model.config.pad_token_id = ctx.tokenizer.pad_token_id
        config = get_reward_config(objective, max_length=ctx.spec.dataset.prep.max_seq_length)
        return trl_trainer(ctx, RewardTrainer, RewardConfig, config)


REWARD = RewardUnit()
