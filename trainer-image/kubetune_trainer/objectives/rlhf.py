"""RLHF by online RL: TRL's `GRPOTrainer` or `RLOOTrainer` against a reward model or built-in rewards.

TRL removed `PPOTrainer` in 1.13; GRPO and RLOO are its maintained successors (both estimate the
baseline from a group of `numGenerations` completions per prompt instead of training a value head).
`beta` is the KL coefficient towards the starting policy; with a PEFT model the reference is the
base with the adapter disabled, so no second copy is loaded.

The reward model, and any cost model of a constraint, comes from an Adapter trained with objective
`reward`, which the operator resolves to its artifact (`input_adapters`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubetune.api.v1alpha1.objectives import RlhfObjective
from kubetune_trainer.context import RunContext
from kubetune_trainer.errors import ConfigError, DataFormatError
from kubetune_trainer.input_adapters import load_adapter
from kubetune_trainer.objectives.costs import builtin_cost, model_cost
from kubetune_trainer.objectives.lagrangian import ConstraintMultipliers, LagrangianConstraint, constraint_rewards
from kubetune_trainer.objectives.rewards import REFERENCE_COLUMN, RewardFunction, builtin_rewards
from kubetune_trainer.objectives.unit import ObjectiveUnit, trl_trainer
from kubetune_trainer.registry import as_variant

if TYPE_CHECKING:
    from transformers import Trainer


def get_rl_config(
    objective: RlhfObjective, *, batch_size: int, gradient_accumulation: int, world_size: int
) -> dict[str, Any]:
    """`GRPOConfig`/`RLOOConfig` keywords; every generation batch must hold whole groups of completions."""
    settings = objective.rlhf
    generation_batch = batch_size * gradient_accumulation * world_size
    if generation_batch % settings.num_generations:
        raise ConfigError(
            f"objective.rlhf.numGenerations ({settings.num_generations}) must divide the generation batch "
            f"(batchSize x gradientAccumulation x GPUs = {generation_batch}): change batchSize or numGenerations"
        )
    return {
        "beta": objective.beta,
        "num_generations": settings.num_generations,
        "max_completion_length": settings.max_completion_length,
        # extra dataset columns (e.g. reference answers) must reach the reward functions
        "remove_unused_columns": False,
    }


def reward_functions(ctx: RunContext) -> tuple[list[Any], list[Any] | None]:
    """(reward functions or models, their tokenizers) for the trainer: the spec's reward source, then one
    Lagrangian penalty per cost constraint (`lagrangian`)."""
    objective = as_variant(ctx.spec.objective, RlhfObjective)
    source = objective.rlhf.reward
    funcs: list[Any] = []
    tokenizers: list[Any] = []
    if source.builtin:
        if "reference-match" in source.builtin and REFERENCE_COLUMN not in ctx.train_dataset.column_names:
            raise DataFormatError(
                f"rlhf.reward.builtin reference-match needs a `{REFERENCE_COLUMN}` column in the prompt data "
                f"(the answer each completion should start with); the data has {sorted(ctx.train_dataset.column_names)}"
            )
        funcs = builtin_rewards(
            source.builtin, keywords=source.keywords, max_completion_length=objective.rlhf.max_completion_length
        )
        tokenizers = [None] * len(funcs)
    if source.adapter_ref is not None:
        field = "objective.rlhf.reward.adapterRef"
        model, tokenizer = load_adapter(ctx, source.adapter_ref.name, field, "sequence-classifier")
        funcs.append(model)
        tokenizers.append(tokenizer)
    penalties = constraint_rewards(objective.rlhf.constraints, constraint_costs(ctx), ctx.metrics)
    funcs.extend(penalties)
    tokenizers.extend([None] * len(penalties))
    return funcs, tokenizers if any(t is not None for t in tokenizers) else None


def constraint_costs(ctx: RunContext) -> list[RewardFunction]:
    """The cost function of each constraint: a built-in rule, or its cost model Adapter."""
    costs = []
    for index, constraint in enumerate(as_variant(ctx.spec.objective, RlhfObjective).rlhf.constraints):
        if constraint.adapter_ref is None:
            costs.append(builtin_cost(constraint))
            continue
        field = f"objective.rlhf.constraints[{index}].adapterRef"
        costs.append(model_cost(*load_adapter(ctx, constraint.adapter_ref.name, field, "sequence-classifier")))
    return costs


class RlhfUnit(ObjectiveUnit):
    variant = RlhfObjective

    def build(self, ctx: RunContext) -> Trainer:
        from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer  # type: ignore[attr-defined]

        objective = as_variant(ctx.spec.objective, RlhfObjective)
        training = ctx.spec.training
        config = get_rl_config(
            objective,
            batch_size=training.batch_size,
            gradient_accumulation=training.gradient_accumulation,
            world_size=ctx.config.runtime.world_size,
        )
        funcs, reward_tokenizers = reward_functions(ctx)
        trainer_cls, config_cls = (
            (GRPOTrainer, GRPOConfig) if objective.rlhf.algorithm == "grpo" else (RLOOTrainer, RLOOConfig)
        )
        trainer = trl_trainer(
            ctx,
            trainer_cls,
            config_cls,
            config,
            reward_funcs=funcs,
            reward_processing_classes=reward_tokenizers,
        )
        trainer.add_callback(ConstraintMultipliers([f for f in funcs if isinstance(f, LagrangianConstraint)]))
        return trainer


RLHF = RlhfUnit()
