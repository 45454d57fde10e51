"""Built-in reward functions for online RL (`rlhf.reward.builtin`), in TRL's reward-function shape.

Each function takes the batch of completions (strings, or assistant turns for conversational
prompts) and returns one float per completion in [0, 1]; TRL sums the selected functions. They are
deliberately simple, cheap and deterministic: they shape style (use the budget, end properly, mention
required terms, do not loop), not correctness, and are meant to be combined. The exception is
`reference-match`, a verifiable reward: the prompt data carries each prompt's known answer in a
`reference` column (TRL hands extra dataset columns to reward functions), and a completion that
starts with it earns 1.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from kubetune_trainer.errors import ConfigError, DataFormatError

RewardFunction = Callable[..., list[float]]

CHARS_PER_TOKEN = 4
"""Rough characters per token, to turn the token budget into a character target for `length`."""

_WORD = re.compile(r"\w+", re.UNICODE)
_TERMINAL = (".", "!", "?", '"', "'", ")", "]", "}", "`")
_PAIRS = {"(": ")", "[": "]", "{": "}"}


def completion_text(completion: Any) -> str:
    """The generated text of one completion; conversational completions are lists of turns."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence):
        return "".join(str(turn.get("content") or "") for turn in completion if isinstance(turn, dict))
    return str(completion)


def length_reward(max_completion_length: int) -> RewardFunction:
    """Rewards using the completion budget (characters up to ~4 per token), against collapse to empty answers."""
    target = max(1, max_completion_length * CHARS_PER_TOKEN)

    def length(completions: list[Any], **_: Any) -> list[float]:
        return [min(len(completion_text(c).strip()), target) / target for c in completions]

    return length


def format_score(text: str) -> float:
    """Share of basic checks passed: non-empty, no leading space, ends a sentence, brackets balanced."""
    stripped = text.strip()
    if not stripped:
        return 0.0
    checks = [text == text.lstrip(), stripped.endswith(_TERMINAL), _balanced(stripped)]
    return (1 + sum(checks)) / (1 + len(checks))


def _balanced(text: str) -> bool:
    stack: list[str] = []
    closing = set(_PAIRS.values())
    for char in text:
        if char in _PAIRS:
            stack.append(_PAIRS[char])
        elif char in closing and (not stack or stack.pop() != char):
            return False
    return not stack


def format_reward(completions: list[Any], **_: Any) -> list[float]:
    return [format_score(completion_text(c)) for c in completions]


def keyword_reward(keywords: Sequence[str]) -> RewardFunction:
    """Share of the keywords that appear as whole words (case-insensitive)."""
    if not keywords:
        raise ConfigError("objective.rlhf.reward.builtin keyword-match needs reward.keywords (words to reward)")
    patterns = [re.compile(rf"(?<!\w){re.escape(k.lower())}(?!\w)") for k in keywords]

    def keyword_match(completions: list[Any], **_: Any) -> list[float]:
        texts = [completion_text(c).lower() for c in completions]
        return [sum(1 for p in patterns if p.search(t)) / len(patterns) for t in texts]

    return keyword_match


def non_repetition_score(text: str, n: int = 3) -> float:
    """Distinct word n-grams over all n-grams (words when shorter than n); 0 for empty text."""
    words = _WORD.findall(text.lower())
    if not words:
        return 0.0
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)] or [(w,) for w in words]
    return len(set(grams)) / len(grams)


def non_repetition_reward(completions: list[Any], **_: Any) -> list[float]:
    return [non_repetition_score(completion_text(c)) for c in completions]


REFERENCE_COLUMN = "reference"


def reference_match_reward(completions: list[Any], reference: list[Any] | None = None, **_: Any) -> list[float]:
    """1 when the completion starts with its prompt's reference answer (both stripped), else 0."""
    if reference is None:
        raise DataFormatError(
            f"rlhf.reward.builtin reference-match needs a `{REFERENCE_COLUMN}` column in the prompt data "
            "(the answer each completion should start with)"
        )
    return [
        float(completion_text(c).strip().startswith(str(r).strip()))
        for c, r in zip(completions, reference, strict=True)
    ]


def builtin_rewards(names: Sequence[str], *, keywords: Sequence[str] | None, max_completion_length: int) -> list[Any]:
    """The reward functions for `rlhf.reward.builtin`, in the order given (duplicates once)."""
    factories: dict[str, Callable[[], RewardFunction]] = {
        "length": lambda: length_reward(max_completion_length),
        "format": lambda: format_reward,
        "keyword-match": lambda: keyword_reward(keywords or []),
        "non-repetition": lambda: non_repetition_reward,
        "reference-match": lambda: reference_match_reward,
    }
    unknown = sorted(set(names) - set(factories))
    if unknown:
        raise ConfigError(f"unknown built-in rewards {unknown}; available: {sorted(factories)}")
    return [factories[name]() for name in dict.fromkeys(names)]
