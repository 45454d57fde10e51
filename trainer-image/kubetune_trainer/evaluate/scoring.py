"""Log-likelihood scoring: token negative log-likelihood of targets given contexts, batched.

Every metric reduces to "how likely is this continuation after this context": perplexity and loss
score the target part of held-out rows (the completion for prompt/completion rows, as SFT trains it),
multiple choice compares the summed log-likelihood of each choice after the question (as
lm-evaluation-harness does for `acc`). Only `model(input_ids, attention_mask).logits` is used, so
any causal LM (plain, PEFT, or a stub in tests) can be scored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubetune_trainer.errors import DataFormatError

Pair = tuple[str, str]
"""(context, target): the target's tokens are scored, the context's only condition them."""


@dataclass(frozen=True)
class NllTotal:
    nll: float
    tokens: int

    @property
    def loss(self) -> float:
        return self.nll / self.tokens if self.tokens else math.nan

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss) if self.tokens else math.nan


def encode_pair(tokenizer: Any, context: str, target: str, max_length: int) -> tuple[list[int], int]:
    """(ids, index of the first target token); the tokenizer's BOS opens the context (or the target)."""
    if context:
        ctx_ids = list(tokenizer(context, add_special_tokens=True)["input_ids"])
        target_ids = list(tokenizer(target, add_special_tokens=False)["input_ids"])
    else:
        ids = list(tokenizer(target, add_special_tokens=True)["input_ids"])
        bos = 1 if tokenizer.bos_token_id is not None and ids[:1] == [tokenizer.bos_token_id] else 0
        ctx_ids, target_ids = ids[:bos], ids[bos:]
    ids = (ctx_ids + target_ids)[-max_length:]  # keep the target; drop the oldest context first
    start = max(len(ids) - len(target_ids), 1)  # the first token has no prediction
    return ids, start


def summed_target_logprobs(model: Any, tokenizer: Any, pairs: Sequence[Pair], *, max_length: int = 2048) -> Any:
    """One batch: a tensor of each pair's summed target-token log-probability, with gradients where the caller
    allows them (the bias regulariser trains through it), and the target token counts."""
    import torch

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    encoded = [encode_pair(tokenizer, c, t, max_length) for c, t in pairs]
    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    targets = torch.zeros_like(input_ids, dtype=torch.bool)
    for row, (ids, start) in enumerate(encoded):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = 1
        targets[row, start - 1 : len(ids) - 1] = True  # token i is predicted at position i - 1
    logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits.float()
    logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
    picked = logprobs.gather(-1, input_ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
    sums = (picked * targets[:, :-1].to(device)).sum(dim=-1)
    return sums, [len(ids) - start for ids, start in encoded]


def target_logprobs(
    model: Any, tokenizer: Any, pairs: Sequence[Pair], *, batch_size: int = 8, max_length: int = 2048
) -> list[tuple[float, int]]:
    """Per pair: (sum of target-token log-probabilities, target token count)."""
    import torch

    results: list[tuple[float, int]] = []
    was_training = model.training
    model.eval()
    try:
        for first in range(0, len(pairs), batch_size):
            with torch.no_grad():
                sums, counts = summed_target_logprobs(
                    model, tokenizer, pairs[first : first + batch_size], max_length=max_length
                )
            results.extend(zip(sums.tolist(), counts, strict=True))
    finally:
        model.train(was_training)
    return results


def nll_total(model: Any, tokenizer: Any, pairs: Sequence[Pair], **kwargs: Any) -> NllTotal:
    scored = target_logprobs(model, tokenizer, pairs, **kwargs)
    return NllTotal(nll=-sum(lp for lp, _ in scored), tokens=sum(n for _, n in scored))


def heldout_pairs(rows: Any, tokenizer: Any) -> list[Pair]:
    """(context, target) per normalised row: the part the objective trains on is the target."""
    pairs = []
    for row in rows:
        if row.get("messages"):
            turns = row["messages"]
            context = tokenizer.apply_chat_template(turns[:-1], tokenize=False, add_generation_prompt=True)
            pairs.append((context, str(turns[-1].get("content") or "")))
        elif row.get("chosen") is not None:
            pairs.append((_text(row.get("prompt")), _text(row["chosen"])))
        elif row.get("completion") is not None:
            pairs.append((_text(row.get("prompt")), _text(row["completion"])))
        elif row.get("text") is not None:
            pairs.append(("", _text(row["text"])))
        else:
            pairs.append(("", _text(row.get("prompt"))))
    return pairs


def _text(value: Any) -> str:
    if isinstance(value, list):  # conversational prompt/completion
        return "\n".join(str(turn.get("content") or "") for turn in value)
    return "" if value is None else str(value)


def answer_index(row: Mapping[str, Any], position: int) -> int:
    """The correct choice: an index, the choice text itself, or a letter (A = first)."""
    choices, answer = row["choices"], row["answer"]
    if isinstance(answer, bool) or not isinstance(answer, int | str):
        raise DataFormatError(f"multiple-choice row {position}: answer must be an index, a choice or a letter")
    if isinstance(answer, int) and 0 <= answer < len(choices):
        return answer
    if isinstance(answer, str):
        if answer in choices:
            return list(choices).index(answer)
        letter = answer.strip().upper()
        if len(letter) == 1 and 0 <= ord(letter) - ord("A") < len(choices):
            return ord(letter) - ord("A")
    raise DataFormatError(f"multiple-choice row {position}: answer {answer!r} is not one of {len(choices)} choices")


def multiple_choice_accuracy(model: Any, tokenizer: Any, rows: Sequence[Mapping[str, Any]], **kwargs: Any) -> float:
    """Share of rows where the correct choice has the highest summed log-likelihood after the question."""
    pairs: list[Pair] = []
    spans: list[tuple[int, int, int]] = []
    for position, row in enumerate(rows):
        if not {"question", "choices", "answer"} <= set(row) or len(row["choices"]) < 2:
            raise DataFormatError(
                f"multiple-choice row {position} needs question, choices (at least two) and answer; got {sorted(row)}"
            )
        correct = answer_index(row, position)
        question = str(row["question"])
        sep = "" if question.endswith((" ", "\n")) else " "
        spans.append((len(pairs), len(row["choices"]), correct))
        pairs.extend((question, sep + str(choice)) for choice in row["choices"])
    if not spans:
        raise DataFormatError("the multiple-choice dataset is empty")
    scores = [lp for lp, _ in target_logprobs(model, tokenizer, pairs, **kwargs)]
    hits = 0
    for first, count, correct in spans:
        block = scores[first : first + count]
        hits += int(max(range(count), key=block.__getitem__) == correct)
    return hits / len(spans)
