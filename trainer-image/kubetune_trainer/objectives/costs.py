"""Cost functions for constrained online RL: built-in ones (`rlhf.constraints[].builtin`) and cost models
(`rlhf.constraints[].adapterRef`).

Each returns one cost per completion in TRL's reward-function shape, 0 (fine) or 1 (violation), so a
constraint's threshold reads as the share of completions allowed to violate and the batch mean cost
is the violation rate. They are rules a platform team can state without training a cost model:
words or patterns that must not appear, and a hard length limit. A cost model scores what rules cannot
state; its cost is sigmoid(score), so thresholds stay between 0 and 1.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from kubetune.api.v1alpha1.constraints import CostConstraint
from kubetune_trainer.objectives.rewards import RewardFunction, completion_text


def blocked_terms_cost(terms: Sequence[str], patterns: Sequence[str]) -> RewardFunction:
    """1 for a completion containing any blocked term (whole word, case-insensitive) or pattern."""
    sources = [rf"(?<!\w){re.escape(term)}(?!\w)" for term in terms] + list(patterns)
    blocked = [re.compile(source, re.IGNORECASE) for source in sources]  # patterns are checked by the API model

    def blocked_terms(completions: list[Any], **_: Any) -> list[float]:
        texts = [completion_text(c) for c in completions]
        return [float(any(p.search(text) for p in blocked)) for text in texts]

    return blocked_terms


def length_cost(max_tokens: int) -> RewardFunction:
    """1 for a completion of more than `max_tokens` generated tokens."""

    def length(completions: list[Any], completion_ids: list[list[int]], **_: Any) -> list[float]:
        return [float(len(ids) > max_tokens) for ids in completion_ids]

    return length


def builtin_cost(constraint: CostConstraint) -> RewardFunction:
    if constraint.builtin == "blocked-terms":
        return blocked_terms_cost(constraint.terms or [], constraint.patterns or [])
    assert constraint.builtin == "length", "the CEL rules: a constraint without adapterRef has a builtin cost"
    assert constraint.max_tokens is not None, "the CEL rules: builtin length needs maxTokens"
    return length_cost(constraint.max_tokens)


def scored_texts(tokenizer: Any, prompts: Sequence[Any], completions: Sequence[Any]) -> list[str]:
    """Prompt and completion as one text, the way TRL feeds its reward models: conversations through the
    scoring model's chat template, plain prompts concatenated."""
    texts = []
    for prompt, completion in zip(prompts, completions, strict=True):
        if isinstance(prompt, list):
            texts.append(str(tokenizer.apply_chat_template([*prompt, *completion], tokenize=False)))
        else:
            texts.append(f"{prompt}{completion_text(completion)}")
    return texts


def model_cost(model: Any, tokenizer: Any) -> RewardFunction:
    """A cost model (an Adapter trained with objective reward, unsafe completions chosen): sigmoid(score) in (0, 1)."""
    from kubetune_trainer.input_adapters import sigmoid_scores

    def cost_model(completions: list[Any], prompts: list[Any], **_: Any) -> list[float]:
        return sigmoid_scores(model, tokenizer, scored_texts(tokenizer, prompts, completions))

    return cost_model
