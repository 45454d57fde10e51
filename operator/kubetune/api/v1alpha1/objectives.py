"""HOW it is trained: one variant per TRL trainer family, discriminated on `type`.

Each variant also declares its static facts (`ObjectiveFacts`: the data it trains on, the model it
trains), so the CRD rules, the trainer's data check, model loading and evaluation read one
declaration. How the trainer is built lives in `kubetune_trainer.objectives`, one module per
objective. A new objective is a variant here plus one trainer module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from kubetune.api.base import CelRule, KubeModel
from kubetune.api.unions import TaggedUnion, variant_classes
from kubetune.api.v1alpha1.common import LocalObjectRef
from kubetune.api.v1alpha1.constraints import BiasRegularizer, CostConstraint
from kubetune.api.v1alpha1.data import DataFormat

Beta = Annotated[float, Field(gt=0, le=100, description="Strength of the pull towards the reference policy.")]
BuiltinReward = Literal["length", "format", "keyword-match", "non-repetition", "reference-match"]
TrainedModel = Literal["causal-lm", "sequence-classifier"]


@dataclass(frozen=True)
class ObjectiveFacts:
    """What is known about an objective before anything runs."""

    data_formats: frozenset[DataFormat]
    """The dataset formats (after detection) it trains on."""
    model: TrainedModel = "causal-lm"
    """causal-lm: a language model (evaluation suites score it); sequence-classifier: a one-logit
    classifier head on the base (a reward model)."""
    distillable: bool = False
    """`continual.lwf` can distil its training batches (token sequences of a causal LM)."""
    packs: bool = False
    """`dataset.prep.packing` applies: its TRL trainer packs rows into full-length sequences (TRL 1.16:
    SFT only; DPO's `padding_free` is disabled in TRL since its refactor)."""


PREFERENCE = frozenset[DataFormat]({"preference"})


class ObjectiveVariant(KubeModel):
    """Base of the objective variants."""

    facts: ClassVar[ObjectiveFacts]


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
        description="Built-in reward functions, summed: length, format, keyword-match, non-repetition, "
        "reference-match (the completion starts with the prompt row's `reference` answer).",
    )
    keywords: Annotated[list[Annotated[str, Field(max_length=128)]], Field(max_length=64)] | None = Field(
        default=None, description="Words rewarded by keyword-match."
    )


class RlhfSettings(KubeModel):
    """Online RL against a reward (the maintained TRL successors of PPO), optionally under cost constraints."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "!has(self.constraints) || self.constraints.all(a, self.constraints.exists_one(b, b.name == a.name))",
            "objective.rlhf.constraints: constraint names must be unique",
        ),
    )

    algorithm: Literal["grpo", "rloo"] = Field(default="grpo", description="grpo or rloo (TRL removed PPOTrainer).")
    reward: RewardSource = Field(description="Reward model Adapter or built-in reward functions.")
    num_generations: int = Field(default=4, ge=2, le=64, description="Completions sampled per prompt (group size).")
    max_completion_length: int = Field(default=64, ge=1, le=8192, description="Tokens generated per completion.")
    constraints: Annotated[list[CostConstraint], Field(max_length=8)] = Field(
        default_factory=list,
        description="Safe-RLHF cost constraints: reward minus a Lagrange multiplier times each cost's excess over "
        "its threshold, the multiplier adapted per batch; status.progress.constraints shows each one's mean cost, "
        "multiplier and violation rate while training, status.result.metrics reports constraint.NAME.cost, "
        ".multiplier and .violation-rate (the last batch).",
    )


class SftObjective(ObjectiveVariant):
    """Supervised fine-tuning on text, instructions or conversations."""

    facts: ClassVar[ObjectiveFacts] = ObjectiveFacts(
        data_formats=frozenset({"text", "alpaca", "sharegpt", "messages"}), distillable=True, packs=True
    )

    type: Literal["sft"] = Field(description="Objective discriminator.")
    completion_only_loss: bool | None = Field(
        default=None,
        description="Loss on completions and assistant turns only, not on prompts. Unset: wherever the data and "
        "chat template allow it (conversations need {% generation %} markers in the template; kubetune uses TRL's "
        "marked template for the model families TRL knows, and otherwise trains on every token and says so in the "
        "artifact notes). true: required, a template without markers is a config error before training. false: "
        "train on every token.",
    )
    bias_regularizer: BiasRegularizer | None = Field(
        default=None,
        description="Penalise the log-likelihood gap between training rows that mention a declared term and their "
        "counterfactuals (terms swapped), so the model does not learn to prefer one side of a pair.",
    )


class DpoObjective(ObjectiveVariant):
    """Direct preference optimization on (prompt, chosen, rejected) pairs."""

    facts: ClassVar[ObjectiveFacts] = ObjectiveFacts(data_formats=PREFERENCE)

    type: Literal["dpo"] = Field(description="Objective discriminator.")
    beta: Beta = 0.1


class IpoObjective(ObjectiveVariant):
    """IPO: DPO with a squared loss that resists overfitting to deterministic preferences."""

    facts: ClassVar[ObjectiveFacts] = ObjectiveFacts(data_formats=PREFERENCE)

    type: Literal["ipo"] = Field(description="Objective discriminator.")
    beta: Beta = 0.1


class KtoObjective(ObjectiveVariant):
    """KTO: unpaired good/bad examples (prompt, completion, label)."""

    # paired preference rows are unpaired into desirable/undesirable ones by the trainer
    facts: ClassVar[ObjectiveFacts] = ObjectiveFacts(data_formats=frozenset({"kto", "preference"}))

    type: Literal["kto"] = Field(description="Objective discriminator.")
    beta: Beta = 0.1
    desirable_weight: float = Field(default=1.0, gt=0, le=100, description="Loss weight of desirable examples.")
    undesirable_weight: float = Field(default=1.0, gt=0, le=100, description="Loss weight of undesirable examples.")


class OrpoObjective(ObjectiveVariant):
    """ORPO: SFT plus an odds-ratio preference term, no reference model."""

    facts: ClassVar[ObjectiveFacts] = ObjectiveFacts(data_formats=PREFERENCE)

    type: Literal["orpo"] = Field(description="Objective discriminator.")
    beta: Beta = 0.1


class RewardObjective(ObjectiveVariant):
    """Train a reward model (sequence classifier) on preference pairs, for later RLHF."""

    facts: ClassVar[ObjectiveFacts] = ObjectiveFacts(data_formats=PREFERENCE, model="sequence-classifier")

    type: Literal["reward"] = Field(description="Objective discriminator.")


class RlhfObjective(ObjectiveVariant):
    """Online RL (GRPO or RLOO) with a KL penalty `beta` towards the starting policy."""

    facts: ClassVar[ObjectiveFacts] = ObjectiveFacts(data_formats=frozenset({"prompt"}))

    type: Literal["rlhf"] = Field(description="Objective discriminator.")
    beta: Beta = 0.04
    rlhf: RlhfSettings = Field(description="Algorithm, reward source and sampling.")


Objective = Annotated[
    SftObjective | DpoObjective | IpoObjective | KtoObjective | OrpoObjective | RewardObjective | RlhfObjective,
    Field(discriminator="type"),
]

OBJECTIVE_UNION = TaggedUnion("objective", variant_classes(Objective))

OBJECTIVE_FACTS: Mapping[str, ObjectiveFacts] = {
    OBJECTIVE_UNION.tag_of(variant): variant.facts
    for variant in OBJECTIVE_UNION.variants
    if issubclass(variant, ObjectiveVariant)
}
"""The facts of every objective, by `type`."""

PACKING_OBJECTIVES = tuple(tag for tag, facts in OBJECTIVE_FACTS.items() if facts.packs)
"""The objectives `dataset.prep.packing` applies to."""

PAIRWISE_PREFERENCE = tuple(tag for tag, facts in OBJECTIVE_FACTS.items() if facts.data_formats == PREFERENCE)
"""The objectives that train on (prompt, chosen, rejected) pairs only."""
