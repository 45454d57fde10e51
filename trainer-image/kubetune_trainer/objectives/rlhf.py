"""RLHF by online RL: TRL's `GRPOTrainer` or `RLOOTrainer` against a reward model or built-in rewards.

TRL removed `PPOTrainer` in 1.13; GRPO and RLOO are its maintained successors (both estimate the
baseline from a group of `numGenerations` completions per prompt instead of training a value head).
`beta` is the KL coefficient towards the starting policy; with a PEFT model the reference is the
base with the adapter disabled, so no second copy is loaded.

The reward model comes from an Adapter trained with objective `reward`. The trainer has no API
access to read that Adapter, so the operator resolves `rlhf.reward.adapterRef` to its artifact URI
and passes it in `KUBETUNE_REWARD_MODEL_URI` (`REWARD_MODEL_URI_ENV`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetune.api.v1alpha1.data import BaseModelRef
from kubetune.api.v1alpha1.objectives import RlhfObjective
from kubetune.api.v1alpha1.pod_contract import REWARD_MODEL_URI_ENV
from kubetune_trainer.context import RunContext
from kubetune_trainer.errors import ConfigError, DataFormatError
from kubetune_trainer.objectives import reward as reward_objective
from kubetune_trainer.objectives.lagrangian import ConstraintMultipliers, LagrangianConstraint, constraint_rewards
from kubetune_trainer.objectives.rewards import REFERENCE_COLUMN, builtin_rewards
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
        model, tokenizer = reward_objective.load_reward_model(*_reward_artifact(ctx, source.adapter_ref.name))
        funcs.append(model)
        tokenizers.append(tokenizer)
    penalties = constraint_rewards(objective.rlhf.constraints, ctx.metrics)
    funcs.extend(penalties)
    tokenizers.extend([None] * len(penalties))
    return funcs, tokenizers if any(t is not None for t in tokenizers) else None


def _reward_artifact(ctx: RunContext, name: str) -> tuple[Path, Path | None]:
    from kubetune_trainer.data.uris import resolve
    from kubetune_trainer.loading import resolve_base_model

    uri = os.environ.get(REWARD_MODEL_URI_ENV) or ctx.extras.get("reward_model_uri")
    if not uri:
        raise ConfigError(
            f"reward model Adapter {name} was not resolved: the operator passes its artifact URI in "
            f"{REWARD_MODEL_URI_ENV}; check that Adapter {name} exists and is Ready"
        )
    directory = resolve(uri, cache_dir=ctx.paths.cache_dir, pvc_root=ctx.paths.pvc_root, repo_type="model").path
    base = reward_objective.artifact_base_uri(directory)
    if base is None or base[0] == ctx.spec.base_model.uri:
        return directory, ctx.base_model_path
    source = resolve_base_model(
        BaseModelRef(uri=base[0], revision=base[1] or "main"),
        cache_dir=ctx.paths.cache_dir,
        pvc_root=ctx.paths.pvc_root,
        token_env=ctx.config.runtime.model_token_env,
    )
    return directory, source.path


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
