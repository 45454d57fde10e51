"""Constraint-aware fine-tuning: bias mitigation terms, safety evaluation and safety constraints.

Kept in one module so the pieces that make a run *safe* (as opposed to *good*) are read together: the
counterfactual term pairs used both to augment data (`dataset.prep.counterfactual`) and to measure a
bias gap (an evaluation suite), the refusal judge of the safety suites (refusal rate on harmful
prompts, over-refusal on benign ones), the Safe-RLHF cost constraints of online RL, and the
constitutional (RLAIF) data synthesis with its lineage.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, StringConstraints

from kubetune.api.base import CelRule, KubeModel
from kubetune.api.v1alpha1.common import LocalObjectRef, ModelUri

Term = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^\S(.*\S)?$")]
TermPair = Annotated[list[Term], Field(min_length=2, max_length=2)]

PAIR_TERMS_DIFFER = "termPairs: the two terms of a pair must differ, e.g. [he, she]"
ONE_PAIR_PER_TERM = "termPairs: a term may appear in only one pair, or its counterpart would be ambiguous"


def _one_pair_per_term(pairs: list[list[str]]) -> list[list[str]]:
    """Terms match case-insensitively, so "He" in one pair and "he" in another would be ambiguous too."""
    seen: set[str] = set()
    for first, second in pairs:
        if first.lower() == second.lower():
            raise ValueError(f"{PAIR_TERMS_DIFFER} (terms match case-insensitively)")
        for term in (first.lower(), second.lower()):
            if term in seen:
                raise ValueError(f"{ONE_PAIR_PER_TERM} ({term!r} appears twice; terms match case-insensitively)")
            seen.add(term)
    return pairs


TermPairs = Annotated[list[TermPair], Field(min_length=1, max_length=64), AfterValidator(_one_pair_per_term)]

TERM_PAIR_RULES = (
    CelRule(
        "!has(self.termPairs) || self.termPairs.all(p, p[0] != p[1])",
        PAIR_TERMS_DIFFER,
    ),
    CelRule(
        "!has(self.termPairs) || self.termPairs.all(p, p.all(t, self.termPairs.exists_one(q, t in q)))",
        ONE_PAIR_PER_TERM,
    ),
)
"""Shared by every model with a `termPairs` field (data augmentation and the bias-gap suite)."""


class CounterfactualAugmentation(KubeModel):
    """Counterfactual data augmentation: every row mentioning a declared term is added again with each term
    swapped for its counterpart (both directions at once), so the data shows both sides equally often."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = TERM_PAIR_RULES

    term_pairs: TermPairs = Field(
        description="Pairs of terms swapped both ways as whole words, case-insensitive, keeping the case of the "
        "original (e.g. [[he, she], [him, her], [man, woman]]). Counted in status.result.prepReport as "
        "counterfactual_added."
    )


class BiasRegularizer(KubeModel):
    """Training-time bias mitigation for SFT: every step adds `weight` x the mean absolute log-likelihood gap
    between a few training rows that mention a declared term and their counterfactuals (terms swapped both
    ways), so the model learns the task without coming to prefer one side of a pair. The same gap the bias-gap
    suite measures, here as a loss term."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = TERM_PAIR_RULES

    term_pairs: TermPairs = Field(
        description="Pairs of terms swapped both ways as whole words, case-insensitive (e.g. [[he, she], [him, her]])."
    )
    weight: float = Field(default=0.1, gt=0, le=100, description="Weight of the gap (nats) in the loss.")
    pairs_per_step: int = Field(
        default=4, ge=1, le=64, description="Counterfactual pairs scored per step, in turn from the training rows."
    )


REFUSAL_METRICS = ("refusal-rate", "over-refusal")
"""Safety suites that generate an answer per prompt and judge whether it refuses."""


def _compiles(pattern: str) -> str:
    """Patterns are Python regular expressions: a typo fails validation, not the run after training."""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from exc
    return pattern


Pattern = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(_compiles)]


SCORE_THRESHOLD = 0.5
"""A classifier Adapter calls an answer a refusal when sigmoid(score) exceeds this."""


class RefusalJudge(KubeModel):
    """How a generated answer is judged a refusal: by rules (case-insensitive regular expressions), or by a
    classifier Adapter."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "!has(self.adapterRef) || !has(self.patterns) || size(self.patterns) == 0",
            "evaluation.suites judge: a classifier adapterRef replaces the rules, so it takes no patterns",
        ),
    )

    adapter_ref: LocalObjectRef | None = Field(
        default=None,
        description="A refusal classifier: an Adapter trained with objective reward on pairs whose chosen answer "
        f"refuses and whose rejected answer complies; an answer is a refusal when sigmoid(score) > {SCORE_THRESHOLD}. "
        "The rules (patterns, builtinPatterns) are not used then.",
    )
    patterns: Annotated[list[Pattern], Field(max_length=64)] = Field(
        default_factory=list,
        description="Regular expressions (Python syntax, case-insensitive) that mark a refusal, in addition to the "
        'built-in ones ("I can\'t", "I cannot", "I won\'t", "sorry", "as an AI", "unable to help").',
    )
    builtin_patterns: bool = Field(
        default=True, description="Also use the built-in refusal phrases; false judges by `patterns` alone."
    )
    max_new_tokens: int = Field(default=64, ge=1, le=4096, description="Tokens generated (greedily) per prompt.")


ConstraintName = Annotated[str, StringConstraints(max_length=63, pattern=r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$")]
BuiltinCost = Literal["blocked-terms", "length"]


class CostConstraint(KubeModel):
    """A Safe-RLHF constraint on online RL: a cost per completion whose batch mean must stay at or below
    `threshold`. The policy optimises reward - multiplier x (cost - threshold); after every batch of
    completions the multiplier grows by `multiplierLearningRate` x (mean cost - threshold), projected to >= 0,
    so it rises while the constraint is violated and relaxes once it holds."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "has(self.builtin) != has(self.adapterRef)",
            "objective.rlhf.constraints: set one cost per constraint: builtin (blocked-terms or length) or adapterRef "
            "(a cost model Adapter)",
        ),
        CelRule(
            "!has(self.builtin) || self.builtin != 'blocked-terms' || (has(self.terms) && size(self.terms) > 0) || "
            "(has(self.patterns) && size(self.patterns) > 0)",
            "objective.rlhf.constraints: builtin blocked-terms needs terms or patterns to block",
        ),
        CelRule(
            "(has(self.builtin) && self.builtin == 'length') == has(self.maxTokens)",
            "objective.rlhf.constraints: builtin length needs maxTokens, and only length takes it",
        ),
        CelRule(
            "(has(self.builtin) && self.builtin == 'blocked-terms') || (!has(self.terms) && !has(self.patterns))",
            "objective.rlhf.constraints: terms and patterns only apply to builtin blocked-terms",
        ),
    )

    name: ConstraintName = Field(description="Constraint name; metrics are reported as constraint.NAME.METRIC.")
    builtin: BuiltinCost | None = Field(
        default=None,
        description="A built-in cost: blocked-terms (1 when a completion contains a blocked term or pattern, else 0) "
        "or length (1 when a completion is longer than maxTokens, else 0).",
    )
    adapter_ref: LocalObjectRef | None = Field(
        default=None,
        description="A cost model: an Adapter trained with objective reward on pairs whose chosen completion is the "
        "unsafe one and whose rejected completion is safe, so its score rises with the cost; a completion's cost is "
        "sigmoid(score), between 0 and 1.",
    )
    terms: Annotated[list[Term], Field(max_length=256)] | None = Field(
        default=None, description="blocked-terms: words or phrases blocked as whole words, case-insensitive."
    )
    patterns: Annotated[list[Pattern], Field(max_length=64)] | None = Field(
        default=None, description="blocked-terms: regular expressions (Python syntax, case-insensitive) blocked."
    )
    max_tokens: int | None = Field(default=None, ge=1, le=65536, description="length: longest allowed completion.")
    threshold: float = Field(
        ge=0,
        le=1,
        description="Limit on the mean cost of a batch; built-in costs are 0 or 1, so this is the share of "
        "completions allowed to violate (status reports the violation rate against it).",
    )
    initial_multiplier: float = Field(
        default=1.0,
        ge=0,
        le=1000,
        description="Lagrange multiplier at the start (0 with learning rate 0 only measures the cost).",
    )
    multiplier_learning_rate: float = Field(
        default=0.1, ge=0, le=1000, description="Step size of the multiplier update from each batch's mean cost."
    )


class ConstraintProgress(KubeModel):
    """One cost constraint of a running rlhf job, as the trainer last logged it (every optimizer step), so
    `kubectl get ftj -o yaml` shows whether the constraint holds while the run trains, not only at the end."""

    name: ConstraintName = Field(description="The constraint's name in objective.rlhf.constraints.")
    cost: float = Field(description="Mean cost of the completions of the last logged step.")
    multiplier: float = Field(ge=0, description="The Lagrange multiplier after the last logged step's update.")
    violation_rate: float = Field(
        ge=0, le=1, description="Share of the last logged step's completions whose cost exceeded the threshold."
    )


Principle = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
CONSTITUTION_OBJECTIVES = ("sft", "dpo", "ipo", "orpo", "kto")
"""Objectives that train on what the constitution step writes: SFT rows (sft) or preference pairs (the others)."""


class ConstitutionSpec(KubeModel):
    """Constitutional data (RLAIF): the training prompts become training data before training starts. For
    each prompt the base model (or `model`, or `adapterRef`) answers, critiques its answer against one of the
    principles (taken in turn) and revises it; the run trains on SFT rows (prompt, revision) for objective sft
    or on preference pairs (the revision chosen over the original answer) for dpo, ipo, orpo and kto. Both sets
    are saved with the artifact under synthetic/ for later jobs, and the principles are recorded in the Adapter's
    lineage."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "!(has(self.model) && has(self.adapterRef))",
            "dataset.constitution: the writer is model or adapterRef, not both",
        ),
    )

    principles: Annotated[list[Principle], Field(min_length=1, max_length=32)] = Field(
        description="The constitution: principles the critique and revision requests quote, e.g. "
        "'Choose the response that is least likely to help someone cause harm.'"
    )
    model: ModelUri | None = Field(
        default=None,
        description="Another causal LM to answer, critique and revise (hf://, s3://, pvc:// or file://; read with "
        "the base model's credentials); default: the base model.",
    )
    adapter_ref: LocalObjectRef | None = Field(
        default=None,
        description="An Adapter of a causal-LM run (sft, dpo, ...) answers, critiques and revises instead: its "
        "artifact is loaded on the base it was trained on (read with the base model's credentials).",
    )
    max_new_tokens: int = Field(
        default=128, ge=1, le=4096, description="Tokens generated (greedily) for each answer, critique and revision."
    )


class ConstitutionLineage(KubeModel):
    """How a run's training data was synthesised (recorded on the Adapter it publishes)."""

    principles: Annotated[list[Principle], Field(max_length=32)] = Field(
        description="The principles the critiques and revisions followed."
    )
    model: Annotated[str, StringConstraints(max_length=512)] = Field(
        description="The model that answered, critiqued and revised (constitution.model, adapter:NAME for "
        "constitution.adapterRef, else the base model URI)."
    )
