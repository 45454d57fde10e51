"""Greedy text generation for the trainer's own use (safety suites, constitutional data synthesis).

Greedy, so the same model gives the same text each time: a safety score or a synthesised dataset is
then a function of the weights, which is what makes them comparable and reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def generate(
    model: Any, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int, batch_size: int = 8
) -> list[str]:
    """Greedy continuations of `prompts`, decoded without the prompt."""
    import torch

    device = next(model.parameters()).device
    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # generation continues on the right
    was_training = model.training
    model.eval()
    answers: list[str] = []
    try:
        for first in range(0, len(prompts), batch_size):
            batch = tokenizer(list(prompts[first : first + batch_size]), return_tensors="pt", padding=True)
            with torch.no_grad():
                out = model.generate(
                    **batch.to(device),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                )
            answers.extend(tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return answers
