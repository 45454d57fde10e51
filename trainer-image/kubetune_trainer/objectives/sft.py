"""Supervised fine-tuning through TRL's `SFTTrainer`.

The datasets arrive normalised to TRL's layouts (`text`, `prompt`/`completion`, `messages`), so the
builder only maps the spec: `completionOnlyLoss` masks prompt tokens for prompt/completion rows and
assistant-only loss for conversations when the chat template marks generations; packing and the
length limit come from `dataset.prep`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubetune.api.v1alpha1.objectives import SftObjective
from kubetune_trainer.context import RunContext
from kubetune_trainer.objectives.unit import ObjectiveUnit, trl_trainer
from kubetune_trainer.registry import as_variant

if TYPE_CHECKING:
    from transformers import Trainer


class SftUnit(ObjectiveUnit):
    variant = SftObjective

    def build(self, ctx: RunContext) -> Trainer:
        from trl import SFTConfig, SFTTrainer  # type: ignore[attr-defined]

        objective = as_variant(ctx.spec.objective, SftObjective)
        prep = ctx.spec.dataset.prep
        columns = set(ctx.train_dataset.column_names)
        conversational = "messages" in columns
        template = getattr(ctx.tokenizer, "chat_template", None) or ""
        config = {
            "max_length": prep.max_seq_length,
            "packing": prep.packing,
            # completion-only loss applies to prompt/completion rows; for conversations TRL needs
            # {% generation %} markers in the template to know which tokens the assistant produced
            "completion_only_loss": objective.completion_only_loss and "completion" in columns,
            "assistant_only_loss": objective.completion_only_loss and conversational and "{% generation %}" in template,
        }
        return trl_trainer(ctx, SFTTrainer, SFTConfig, config)


SFT = SftUnit()
