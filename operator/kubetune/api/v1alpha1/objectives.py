"""HOW it is trained: one variant per TRL trainer family, discriminated on `type`."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from kubetune.api.base import CelRule, KubeModel
from kubetune.api.unions import TaggedUnion, variant_classes
from kubetune.api.v1alpha1.common import LocalObjectRef

Beta = Annotated[float, Field(gt=0, le=100, description="Strength of the pull towards the reference policy.")]
BuiltinReward = Literal["length", "format", "keyword-match", "non-repetition"]


class RewardSource(KubeModel):
    """Where the RL reward comes from: a trained reward-model Adapter or built-in reward functions."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "has(self.adapterRef) || (has(self.builtin) && size(self.builtin) > 0)",
            "objective.rlhf.reward needs a reward source: set adapterRef (an Adapter trained with "
            "objective reward) or builtin (e.g. [length, format])",
        ),
    )

    adapter_ref: LocalObjectRef | None = Field(
        default=None, description="Adapter produced by a FineTuneJob with objective.type reward."
    )
    builtin: Annotated[list[BuiltinReward], Field(max_length=8)] | None = Field(
        default=None,
        description="Built-in reward functions, summed: length, format, keyword-match, non-repetition.",
    )
    keywords: Annotated[list[Annotated[str, Field(max_length=128)]], Field(max_length=64)] | None = Field(
        default=None, description="Words rewarded by keyword-match."
    )


class RlhfSettings(KubeModel):
    """Online RL against a reward (the maintained TRL successors of PPO)."""

    algorithm: Literal["grpo", "rloo"] = Field(default="grpo", description="grpo or rloo (TRL removed PPOTrainer).")
    reward: RewardSource = Field(description="Reward model Adapter or built-in reward functions.")
    num_generations: int = Field(default=4, ge=2, le=64, description="Completions sampled per prompt (group size).")
    max_completion_length: int = Field(default=64, ge=1, le=8192, description="Tokens generated per completion.")


class SftObjective(KubeModel):
    """Supervised fine-tuning on text, instructions or conversations."""

    type: Literal["sft"] = Field(description="Objective discriminator.")
    completion_only_loss: bool = Field(
        default=True, description="Train only on completions/assistant turns, not on the prompt tokens."
    )


class DpoObjective(KubeModel):
    """Direct preference optimization on (prompt, chosen, rejected) pairs."""

    type: Literal["dpo"] = Field(description="Objective discriminator.")
    beta: Beta = 0.1


class IpoObjective(KubeModel):
    """IPO: DPO with a squared loss that resists overfitting to deterministic preferences."""

    type: Literal["ipo"] = Field(description="Objective discriminator.")
    beta: Beta = 0.1


class KtoObjective(KubeModel):
    """KTO: unpaired good/bad examples (prompt, completion, label)."""

    type: Literal["kto"] = Field(description="Objective discriminator.")
    beta: Beta = 0.1
    desirable_weight: float = Field(default=1.0, gt=0, le=100, description="Loss weight of desirable examples.")
    undesirable_weight: float = Field(default=1.0, gt=0, le=100, description="Loss weight of undesirable examples.")


class OrpoObjective(KubeModel):
    """ORPO: SFT plus an odds-ratio preference term, no reference model."""

    type: Literal["orpo"] = Field(description="Objective discriminator.")
    beta: Beta = 0.1


class RewardObjective(KubeModel):
    """Train a reward model (sequence classifier) on preference pairs, for later RLHF."""

    type: Literal["reward"] = Field(description="Objective discriminator.")


class RlhfObjective(KubeModel):
    """Online RL (GRPO or RLOO) with a KL penalty `beta` towards the starting policy."""

    type: Literal["rlhf"] = Field(description="Objective discriminator.")
    beta: Beta = 0.04
    rlhf: RlhfSettings = Field(description="Algorithm, reward source and sampling.")


Objective = Annotated[
    SftObjective | DpoObjective | IpoObjective | KtoObjective | OrpoObjective | RewardObjective | RlhfObjective,
    Field(discriminator="type"),
]

OBJECTIVE_UNION = TaggedUnion("objective", variant_classes(Objective))

PAIRWISE_PREFERENCE = ("dpo", "ipo", "orpo", "reward")
