"""Supervised fine-tuning through TRL's `SFTTrainer`.

The datasets arrive normalised to TRL's layouts (`text`, `prompt`/`completion`, `messages`), so the
builder only maps the spec: `completionOnlyLoss` masks prompt tokens for prompt/completion rows and
the non-assistant turns of conversations, which TRL can only do when the chat template marks what
the assistant generated (`{% generation %}`); packing and the length limit come from `dataset.prep`.
`biasRegularizer` adds the counterfactual log-likelihood gap to the loss (`bias_regularizer`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kubetune.api.v1alpha1.objectives import SftObjective
from kubetune_trainer.context import RunContext
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.objectives.bias_regularizer import BiasTerm, attach, training_pairs
from kubetune_trainer.objectives.unit import ObjectiveUnit, trl_trainer
from kubetune_trainer.registry import as_variant

if TYPE_CHECKING:
    from transformers import Trainer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LossMasking:
    """Which tokens the loss covers: TRL's `completion_only_loss` and `assistant_only_loss` switches."""

    completion_only: bool
    assistant_only: bool
    note: str | None = None
    """Why completion-only loss does not apply although it was not turned off."""


def has_generation_markers(template: str) -> bool:
    from trl.chat_template_utils import has_generation_markers as trl_has_markers

    return bool(trl_has_markers(template))


def loss_masking(requested: bool | None, columns: set[str], template: str) -> LossMasking:
    """`requested` is `completionOnlyLoss`: None applies it where possible, True requires it, False disables it."""
    if requested is False:
        return LossMasking(completion_only=False, assistant_only=False)
    if "completion" in columns:
        return LossMasking(completion_only=True, assistant_only=False)
    if "messages" in columns:
        if has_generation_markers(template):
            return LossMasking(completion_only=False, assistant_only=True)
        problem = "the chat template has no {% generation %} markers, so TRL cannot tell assistant tokens from the rest"
        if requested:
            raise ConfigError(
                f"objective.completionOnlyLoss: {problem}; set tokenizer.chatTemplate to a template that wraps "
                "assistant content in {% generation %}...{% endgeneration %}, or completionOnlyLoss: false"
            )
        return LossMasking(False, False, f"completion-only loss does not apply: {problem}; training on every token")
    if requested:
        raise ConfigError(
            "objective.completionOnlyLoss: text rows have no prompt to mask; use prompt/completion (alpaca) or "
            "conversation rows, or completionOnlyLoss: false"
        )
    return LossMasking(completion_only=False, assistant_only=False)


def training_chat_template(tokenizer: object) -> str | None:
    """TRL's marked training template for the model families it knows (Llama 3, Qwen, Gemma, Phi...), or None."""
    from trl.chat_template_utils import get_training_chat_template

    try:
        patched: str | None = get_training_chat_template(tokenizer)  # type: ignore[arg-type]
    except ValueError:  # a template TRL has no marked version of
        return None
    return patched


class SftUnit(ObjectiveUnit):
    variant = SftObjective

    def check_data(self, ctx: RunContext) -> None:
        """Give a conversation template generation markers where TRL can, then refuse or note what cannot apply."""
        objective = as_variant(ctx.spec.objective, SftObjective)
        columns = set(ctx.train_dataset.column_names)
        template = getattr(ctx.tokenizer, "chat_template", None) or ""
        if (
            "messages" in columns
            and objective.completion_only_loss is not False
            and not has_generation_markers(template)
        ):
            patched = training_chat_template(ctx.tokenizer) if template else None
            if patched:
                ctx.tokenizer.chat_template = patched
                ctx.notes.append("chat template replaced by TRL's training version (with {% generation %} markers)")
        masking = loss_masking(objective.completion_only_loss, columns, ctx.tokenizer.chat_template or "")
        if masking.note:
            log.warning("%s", masking.note)
            ctx.notes.append(masking.note)
        if objective.bias_regularizer is not None and ctx.spec.dataset.constitution is None:
            training_pairs(ctx.train_dataset, ctx.tokenizer, objective.bias_regularizer.term_pairs)  # the final data

    def build(self, ctx: RunContext) -> Trainer:
        from trl import SFTConfig, SFTTrainer  # type: ignore[attr-defined]

        objective = as_variant(ctx.spec.objective, SftObjective)
        prep = ctx.spec.dataset.prep
        template = getattr(ctx.tokenizer, "chat_template", None) or ""
        masking = loss_masking(objective.completion_only_loss, set(ctx.train_dataset.column_names), template)
        config = {
            "max_length": prep.max_seq_length,
            "packing": prep.packing,
            "completion_only_loss": masking.completion_only,
            "assistant_only_loss": masking.assistant_only,
        }
        trainer = trl_trainer(ctx, SFTTrainer, SFTConfig, config)
        regularizer = objective.bias_regularizer
        if regularizer is None:
            return trainer
        pairs = training_pairs(ctx.train_dataset, ctx.tokenizer, regularizer.term_pairs)
        log.info("bias regulariser: %d counterfactual pairs, weight %g", len(pairs), regularizer.weight)
        regularized: Trainer = attach(trainer, BiasTerm(regularizer, pairs, ctx.tokenizer, prep.max_seq_length))
        return regularized


SFT = SftUnit()
