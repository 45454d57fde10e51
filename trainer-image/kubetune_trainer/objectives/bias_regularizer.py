"""The SFT bias regulariser (`objective.biasRegularizer`): the counterfactual log-likelihood gap as a loss term.

The training rows that mention a declared term are paired with their counterfactuals (the terms swapped
both ways, as `dataset.prep.counterfactual` and the bias-gap suite swap them). Every micro-batch, the
next `pairsPerStep` pairs (in turn, so every pair comes up) are scored by summed target log-likelihood
with gradients, and `weight` x the mean absolute gap joins the SFT loss: the model still learns the rows,
but not that one side of a pair is likelier than the other. Augmentation changes what the model sees;
the regulariser changes what it is rewarded for, and works on data that cannot be duplicated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubetune.api.v1alpha1.constraints import BiasRegularizer
from kubetune_trainer.data.counterfactual import TermSwapper
from kubetune_trainer.errors import DataFormatError
from kubetune_trainer.evaluate.bias import counterfactual_pairs
from kubetune_trainer.evaluate.scoring import Pair, heldout_pairs, summed_target_logprobs
from kubetune_trainer.loss_terms import AddedLossTerms, with_loss_terms


def training_pairs(rows: Any, tokenizer: Any, term_pairs: Sequence[Sequence[str]]) -> list[tuple[Pair, Pair]]:
    """(row, counterfactual) for every training row that mentions a term; refuses data that mentions none."""
    pairs = counterfactual_pairs(heldout_pairs(rows, tokenizer), TermSwapper(term_pairs))
    if not pairs:
        raise DataFormatError(
            "objective.biasRegularizer: no training row mentions any of its termPairs, so there is no gap to "
            "penalise; check the terms against the data"
        )
    return pairs


@dataclass
class BiasTerm:
    settings: BiasRegularizer
    pairs: list[tuple[Pair, Pair]]
    tokenizer: Any
    max_length: int
    position: int = 0

    def gap(self, model: Any) -> Any:
        """Mean |log p(row) - log p(counterfactual)| over the next pairs, as a tensor with gradients."""
        count = min(self.settings.pairs_per_step, len(self.pairs))
        chosen = [self.pairs[(self.position + i) % len(self.pairs)] for i in range(count)]
        self.position = (self.position + count) % len(self.pairs)
        flat = [pair for both in chosen for pair in both]
        sums, _ = summed_target_logprobs(model, self.tokenizer, flat, max_length=self.max_length)
        return (sums[0::2] - sums[1::2]).abs().mean()


class BiasRegularizedLoss(AddedLossTerms):
    """Adds `bias_term`'s weighted gap to whatever loss the trainer computes, while training."""

    bias_term: BiasTerm | None = None

    def training_loss_terms(self, model: Any, inputs: dict[str, Any], loss: Any) -> tuple[Any, Any]:
        loss, added = super().training_loss_terms(model, inputs, loss)
        if self.bias_term is not None:
            added = added + self.bias_term.settings.weight * self.bias_term.gap(model)
        return loss, added


def attach(trainer: Any, term: BiasTerm) -> Any:
    """Give a built trainer the regulariser as a loss term."""
    return with_loss_terms(trainer, BiasRegularizedLoss, "BiasRegularized", bias_term=term)
