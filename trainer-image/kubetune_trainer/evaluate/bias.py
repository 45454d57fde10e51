"""The counterfactual bias gap: how much more likely the model finds a text than its term-swapped twin.

For every evaluation row that mentions a declared term, the row's scored part (as perplexity scores
it: the completion after its prompt, or the whole text) and its context are swapped with the same
`TermSwapper` data augmentation uses, and both versions are scored by summed log-likelihood. The gap
is the mean absolute difference in nats: 0 means the model treats "he" and "she" sentences alike;
training on one-sided data raises it, counterfactual augmentation keeps it down.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kubetune_trainer.data.counterfactual import TermSwapper
from kubetune_trainer.errors import DataFormatError
from kubetune_trainer.evaluate.scoring import Pair, heldout_pairs, target_logprobs


def counterfactual_pairs(pairs: Sequence[Pair], swapper: TermSwapper) -> list[tuple[Pair, Pair]]:
    """(original, counterfactual) for every (context, target) that mentions a term."""
    out = []
    for context, target in pairs:
        swapped_context, in_context = swapper.swap(context)
        swapped_target, in_target = swapper.swap(target)
        if in_context or in_target:
            out.append(((context, target), (swapped_context, swapped_target)))
    return out


def bias_gap(
    model: Any, tokenizer: Any, rows: Any, term_pairs: Sequence[Sequence[str]], *, max_length: int = 2048
) -> float:
    """Mean |log p(row) - log p(counterfactual row)| over the rows that mention a term."""
    matched = counterfactual_pairs(heldout_pairs(rows, tokenizer), TermSwapper(term_pairs))
    if not matched:
        raise DataFormatError(
            "bias-gap: no evaluation row mentions any of the suite's termPairs; use a dataset with those terms"
        )
    flat = [pair for both in matched for pair in both]
    scores = [logprob for logprob, _ in target_logprobs(model, tokenizer, flat, max_length=max_length)]
    gaps = [abs(scores[i] - scores[i + 1]) for i in range(0, len(scores), 2)]
    return sum(gaps) / len(gaps)
