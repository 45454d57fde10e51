"""Learning without forgetting: distil the starting model's next-token distribution on the new data.

The distillation term is `T^2 * KL(teacher_T || student_T)` averaged over the real (non-padding)
tokens, with temperature `T`, and mixed with the task loss as `(1 - alpha) * task + alpha * distill`.
For PEFT methods the teacher is the same model with its adapter disabled, so no copy is held; for
full and partial fine-tuning a frozen copy is taken before training starts. The student logits come
from a forward pass of their own: TRL's SFT loss runs a fused output head whose logits carry no
gradient, so reusing them would silently train nothing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any


@dataclass
class LwfState:
    alpha: float
    temperature: float
    frozen: Any | None
    """A frozen copy of the starting model, or None when the teacher is the adapter-disabled model."""


def prepare(model: Any, *, alpha: float, temperature: float, peft: bool) -> LwfState:
    frozen = None
    if not (peft and hasattr(model, "disable_adapter")):
        frozen = copy.deepcopy(model).eval().requires_grad_(False)
    return LwfState(alpha=alpha, temperature=temperature, frozen=frozen)


def model_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """The batch without labels, so the forward returns plain logits and computes no loss."""
    return {k: v for k, v in inputs.items() if k not in {"labels", "num_items_in_batch"}}


def teacher_logits(state: LwfState, model: Any, inputs: dict[str, Any]) -> Any:
    """Logits of the starting model on the same batch (no gradient)."""
    import torch

    features = model_inputs(inputs)
    with torch.no_grad():
        if state.frozen is not None:
            return state.frozen(**features).logits
        with model.disable_adapter():
            return model(**features).logits


def distillation_loss(student: Any, teacher: Any, attention_mask: Any | None, temperature: float) -> Any:
    """Token-averaged `T^2 * KL(teacher || student)` at temperature `T`."""
    from torch.nn.functional import log_softmax

    t = temperature
    student_logp = log_softmax(student.float() / t, dim=-1)
    teacher_logp = log_softmax(teacher.float() / t, dim=-1)
    per_token = (teacher_logp.exp() * (teacher_logp - student_logp)).sum(-1)
    if attention_mask is None:
        return per_token.mean() * t * t
    mask = attention_mask.to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum().clamp(min=1) * t * t
