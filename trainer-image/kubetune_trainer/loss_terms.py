"""Loss terms the trainer adds to an objective's own loss (EWC, LwF, the bias regulariser).

They are computed per micro-batch, while the objective's loss may already be divided by the tokens of all
micro-batches of a step; whether it is decides whether an added term must be divided by the accumulation
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
