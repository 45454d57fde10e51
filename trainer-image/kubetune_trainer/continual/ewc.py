"""Elastic weight consolidation: a Fisher-weighted pull of the trained parameters to their start.

The diagonal empirical Fisher is estimated once, before training, from per-example gradients of the
reference set's log-likelihood (the skill to protect), for the parameters that will train (the
adapter for PEFT methods, everything for full). The penalty `lambda/2 * sum F (theta - theta0)^2`
is added to the loss of every micro-batch. Parameters are held by identity, not name, so wrapping by
DDP or Accelerate (which prefixes names) does not lose them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubetune_trainer.evaluate.scoring import Pair, encode_pair

log = logging.getLogger(__name__)


@dataclass
class EwcState:
    """(parameter, Fisher diagonal, starting value) triples and the penalty strength."""

    params: list[tuple[Any, Any, Any]]
    strength: float

    def penalty(self) -> Any:
        """`lambda/2 * sum F (theta - theta0)^2` as a differentiable scalar."""
        total = sum((fisher * (param - anchor).pow(2)).sum() for param, fisher, anchor in self.params)
        return 0.5 * self.strength * total


def estimate_fisher(
    model: Any, tokenizer: Any, pairs: Sequence[Pair], *, samples: int, strength: float, max_length: int
) -> EwcState:
    """Average squared per-example gradients of the target log-likelihood over up to `samples` pairs."""
    import torch

    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("EWC needs trainable parameters; the method froze them all")
    fisher = [torch.zeros_like(p, dtype=torch.float32) for p in trainable]
    device = trainable[0].device
    used = pairs[:samples]
    was_training = model.training
    model.eval()  # no dropout: the Fisher describes the deterministic starting model
    try:
        for context, target in used:
            ids, start = encode_pair(tokenizer, context, target, max_length)
            input_ids = torch.tensor([ids], device=device)
            labels = input_ids.clone()
            labels[:, :start] = -100
            model.zero_grad(set_to_none=True)
            model(input_ids=input_ids, labels=labels).loss.backward()
            for acc, param in zip(fisher, trainable, strict=True):
                if param.grad is not None:
                    acc.add_(param.grad.detach().float().pow(2))
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    count = max(len(used), 1)
    params = [(p, (f / count).to(p.dtype), p.detach().clone()) for p, f in zip(trainable, fisher, strict=True)]
    log.info("EWC: Fisher over %d parameters from %d reference rows", sum(p.numel() for p in trainable), count)
    return EwcState(params=params, strength=strength)
