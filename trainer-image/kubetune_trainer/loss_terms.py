"""Loss terms the trainer adds to an objective's own loss (EWC, LwF, the bias regulariser).

The objectives instantiate TRL classes directly, so the terms join a built trainer as mixins in front of its
class (`with_loss_terms`); each mixin's `training_loss_terms` extends the chain, so any of them stack. They
are computed per micro-batch, while the objective's loss may already be divided by the tokens of all
micro-batches of a step; whether it is decides whether the added terms must be divided by the accumulation
steps, and that is the Trainer's own rule, in one place here.
"""

from __future__ import annotations

from typing import Any


def divided_for_accumulation(trainer: Any, num_items_in_batch: Any) -> bool:
    """The Trainer's own rule (transformers 5) for whether it divides the loss by accumulation steps itself
    (False) or the loss is already scaled by the tokens of the whole step (True: added terms must be divided)."""
    flag = getattr(trainer, "loss_is_scaled_for_ga", None)
    if flag is not None:
        return bool(flag)
    accepts = bool(getattr(trainer, "model_accepts_loss_kwargs", False))
    return (accepts and num_items_in_batch is not None) or getattr(trainer, "compute_loss_func", None) is not None


def per_micro_batch(trainer: Any, term: Any, num_items_in_batch: Any) -> Any:
    """`term`, scaled the way the objective's loss of this micro-batch is."""
    if divided_for_accumulation(trainer, num_items_in_batch):
        return term / trainer.current_gradient_accumulation_steps
    return term


class AddedLossTerms:
    """Trainer mixin: while training, the objective's loss passes through `training_loss_terms`, whose added
    part is scaled like one micro-batch's loss."""

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        result = super().compute_loss(  # type: ignore[misc]
            model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )
        loss, outputs = result if return_outputs else (result, None)
        if model.training:
            loss, added = self.training_loss_terms(model, inputs, loss)
            loss = loss + per_micro_batch(self, added, num_items_in_batch)
        return (loss, outputs) if return_outputs else loss

    def training_loss_terms(self, model: Any, inputs: dict[str, Any], loss: Any) -> tuple[Any, Any]:
        """(the objective's loss, possibly reweighted; the sum of added terms). Mixins call super() first."""
        return loss, 0.0


def with_loss_terms(trainer: Any, mixin: type, prefix: str, **state: Any) -> Any:
    """A built trainer whose class gains `mixin` in front, with the mixin's `state` attributes set."""
    cls = type(trainer)
    trainer.__class__ = type(f"{prefix}{cls.__name__}", (mixin, cls), {})
    for name, value in state.items():
        setattr(trainer, name, value)
    return trainer
