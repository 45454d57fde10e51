"""Constraint-aware fine-tuning: bias mitigation terms, safety evaluation and safety constraints.

Kept in one module so the pieces that make a run *safe* (as opposed to *good*) are read together: the
counterfactual term pairs used both to augment data (`dataset.prep.counterfactual`) and to measure a
bias gap (an evaluation suite), and the refusal judge of the safety suites (refusal rate on harmful
prompts, over-refusal on benign ones).
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, StringConstraints

from kubetune.api.base import CelRule, KubeModel

Term = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^\S(.*\S)?$")]
TermPair = Annotated[list[Term], Field(min_length=2, max_length=2)]
TermPairs = Annotated[list[TermPair], Field(min_length=1, max_length=64)]

TERM_PAIR_RULES = (
    CelRule(
        "!has(self.termPairs) || self.termPairs.all(p, p[0] != p[1])",
        "termPairs: the two terms of a pair must differ, e.g. [he, she]",
    ),
    CelRule(
        "!has(self.termPairs) || self.termPairs.all(p, p.all(t, self.termPairs.exists_one(q, t in q)))",
        "termPairs: a term may appear in only one pair, or its counterpart would be ambiguous",
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


REFUSAL_METRICS = ("refusal-rate", "over-refusal")
"""Safety suites that generate an answer per prompt and judge whether it refuses."""

RefusalPattern = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class RefusalJudge(KubeModel):
    """How a generated answer is judged a refusal: by rules (case-insensitive regular expressions)."""

    patterns: Annotated[list[RefusalPattern], Field(max_length=64)] = Field(
        default_factory=list,
        description="Regular expressions (Python syntax, case-insensitive) that mark a refusal, in addition to the "
        'built-in ones ("I can\'t", "I cannot", "I won\'t", "sorry", "as an AI", "unable to help").',
    )
    builtin_patterns: bool = Field(
        default=True, description="Also use the built-in refusal phrases; false judges by `patterns` alone."
    )
    max_new_tokens: int = Field(default=64, ge=1, le=4096, description="Tokens generated (greedily) per prompt.")
