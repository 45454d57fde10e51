"""Reward modelling through TRL's `RewardTrainer` (Bradley-Terry loss on chosen/rejected pairs).

The objective's facts say it trains a sequence classifier, so the pipeline loads the base as
`AutoModelForSequenceClassification(num_labels=1)` and PEFT methods use task type `SEQ_CLS`, which
saves the new score head with the adapter. The artifact is therefore a complete reward model (or
adapter + head) that `objectives.rlhf` can load as `rlhf.reward.adapterRef` through
`load_reward_model`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetune.api.v1alpha1.objectives import RewardObjective
from kubetune_trainer.context import RunContext
from kubetune_trainer.manifest import read_manifest
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


def artifact_base_uri(artifact_dir: Path) -> tuple[str, str | None] | None:
    """(uri, revision) of the base a reward artifact was trained on, from its manifest."""
    manifest = read_manifest(artifact_dir)
    if manifest is None or not manifest.base_model.uri:
        return None
    return manifest.base_model.uri, manifest.base_model.revision


def load_reward_model(artifact_dir: Path, base_model_path: Path | None) -> tuple[Any, Any]:
    """(model, tokenizer) of a reward artifact: a full sequence classifier, or base + SEQ_CLS adapter.

    The adapter is merged so scoring every generated batch pays no PEFT indirection; the reward model
    is frozen during RL anyway.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from kubetune_trainer.tokenizer_align import resize_embeddings

    tokenizer = AutoTokenizer.from_pretrained(artifact_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if (artifact_dir / "config.json").is_file():
        model = AutoModelForSequenceClassification.from_pretrained(artifact_dir, num_labels=1)
    else:
        if base_model_path is None:
            raise ValueError(f"{artifact_dir} holds a reward adapter; its base model path is needed")
        from peft import PeftModel

        base = AutoModelForSequenceClassification.from_pretrained(base_model_path, num_labels=1)
        resize_embeddings(base, tokenizer)
        model = PeftModel.from_pretrained(base, str(artifact_dir)).merge_and_unload()
    model.config.pad_token_id = tokenizer.pad_token_id
    model.eval().requires_grad_(False)
    return model, tokenizer
