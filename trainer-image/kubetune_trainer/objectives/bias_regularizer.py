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
from kubetune_trainer.loss_terms import per_micro_batch


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


class BiasRegularizedLoss:
    """Adds `bias_term`'s weighted gap to whatever loss the trainer computes, while training."""

    bias_term: BiasTerm | None = None

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        result = super().compute_loss(  # type: ignore[misc]
            model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )
        loss, outputs = result if return_outputs else (result, None)
        if self.bias_term is not None and model.training:
            term = self.bias_term.settings.weight * self.bias_term.gap(model)
            loss = loss + per_micro_batch(self, term, num_items_in_batch)
        return (loss, outputs) if return_outputs else loss


def attach(trainer: Any, term: BiasTerm) -> Any:
    """Give a built trainer the regulariser (its class swapped for a subclass with the loss mixin in front)."""
    cls = type(trainer)
    trainer.__class__ = type(f"BiasRegularized{cls.__name__}", (BiasRegularizedLoss, cls), {})
    trainer.bias_term = term
    return trainer
