"""DPO and IPO through TRL's `DPOTrainer` (one trainer, two losses).

IPO is DPO with a squared loss on the log-ratio margin, so both objectives share this builder and
differ only in `loss_type` (a list in TRL 1.16, which allows mixing losses). With a PEFT model no
reference copy is made: TRL scores the reference by disabling the adapter, which halves memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubetune.api.v1alpha1.objectives import DpoObjective, IpoObjective
from kubetune_trainer.context import RunContext

if TYPE_CHECKING:
    from transformers import Trainer

LOSS_TYPES = {"dpo": "sigmoid", "ipo": "ipo"}


def get_dpo_config(objective: DpoObjective | IpoObjective, *, max_length: int) -> dict[str, Any]:
    """`DPOConfig` keywords for the objective (merged over the run's TrainingArguments keywords)."""
    return {"beta": objective.beta, "loss_type": [LOSS_TYPES[objective.type]], "max_length": max_length}


def build(ctx: RunContext) -> Trainer:
    from trl import DPOConfig, DPOTrainer  # type: ignore[attr-defined]

    objective = ctx.spec.objective
    assert isinstance(objective, DpoObjective | IpoObjective)
    mapped = get_dpo_config(objective, max_length=ctx.spec.dataset.prep.max_seq_length)
    args = DPOConfig(**ctx.training_args_kwargs(**mapped))
    return DPOTrainer(
        model=ctx.model,
        args=args,
        train_dataset=ctx.train_dataset,
        eval_dataset=ctx.eval_dataset,
        processing_class=ctx.tokenizer,
        callbacks=list(ctx.callbacks),
    )
