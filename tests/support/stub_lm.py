"""A hand-checkable stand-in for a causal LM, for scoring tests whose expected values are computed by hand."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch

RED, BLUE = 308, 305
"""Token ids of " red" and " blue" in the tiny tokenizer (tests check them, so a rebuilt tokenizer fails loudly)."""


class FixedLogits(torch.nn.Module):
    """A 'language model' whose next-token logits are the same vector at every position."""

    def __init__(self, vocab: int, boost: dict[int, float] | None = None) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.row = torch.zeros(vocab)
        for token, value in (boost or {}).items():
            self.row[token] = value

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        return SimpleNamespace(logits=self.row.expand(*input_ids.shape, -1).clone())


def tiny_tokenizer(model_dir: Any) -> Any:
    """The tiny model's tokenizer, checked against the token ids above."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    assert tok(" red", add_special_tokens=False)["input_ids"] == [RED]
    assert tok(" blue", add_special_tokens=False)["input_ids"] == [BLUE]
    return tok
