"""Continual learning (`spec.continual`): replay, EWC and LwF around any objective's trainer.

The pipeline calls `prepare` before the objective builds its trainer: it mixes replay rows into the
training set, estimates the EWC Fisher on the untouched starting model and prepares the LwF
teacher. `attach` then gives the built trainer a `compute_loss` that adds the EWC penalty and the
LwF distillation term. The trainer's class is swapped for a subclass with `ContinualLoss` in front,
because the objectives instantiate TRL classes directly and one mixin then serves every objective.
LwF needs token logits of a causal LM on the training batch, so it applies only to objectives whose
facts say `distillable`.
"""

from __future__ import annotations

import logging
from typing import Any

from kubetune.api.v1alpha1.objectives import OBJECTIVE_FACTS
from kubetune_trainer.context import RunContext
from kubetune_trainer.continual import ewc, lwf, replay
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.evaluate.scoring import heldout_pairs
from kubetune_trainer.loss_terms import per_micro_batch
from kubetune_trainer.reference_data import load_reference

log = logging.getLogger(__name__)


class ContinualLoss:
    """Adds `continual_ewc.penalty()` and the LwF term to whatever loss the trainer computes."""

    continual_ewc: ewc.EwcState | None = None
    continual_lwf: lwf.LwfState | None = None

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        result = super().compute_loss(  # type: ignore[misc]
            model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )
        loss, outputs = result if return_outputs else (result, None)
        extra = 0.0
        if self.continual_lwf is not None and model.training:
            state = self.continual_lwf
            student = model(**lwf.model_inputs(inputs)).logits
            teacher = lwf.teacher_logits(state, self.accelerator.unwrap_model(model), inputs)  # type: ignore[attr-defined]
            distill = lwf.distillation_loss(student, teacher, inputs.get("attention_mask"), state.temperature)
            loss = (1 - state.alpha) * loss
            extra = extra + state.alpha * distill
        if self.continual_ewc is not None and model.training:
            extra = extra + self.continual_ewc.penalty()
        loss = loss + per_micro_batch(self, extra, num_items_in_batch)
        return (loss, outputs) if return_outputs else loss


def attach(trainer: Any, *, ewc_state: ewc.EwcState | None, lwf_state: lwf.LwfState | None) -> Any:
    """Give an already built trainer the continual loss terms (no-op when there are none)."""
    if ewc_state is None and lwf_state is None:
        return trainer
    cls = type(trainer)
    trainer.__class__ = type(f"Continual{cls.__name__}", (ContinualLoss, cls), {})
    trainer.continual_ewc, trainer.continual_lwf = ewc_state, lwf_state
    return trainer


def prepare(ctx: RunContext) -> tuple[ewc.EwcState | None, lwf.LwfState | None]:
    """Replay mixing, Fisher estimation and teacher setup, on the model before any training step."""
    spec = ctx.spec.continual
    if spec is None:
        return None, None
    if spec.lwf is not None and not ctx.spec.objective.facts.distillable:
        distillable = " or ".join(name for name, facts in OBJECTIVE_FACTS.items() if facts.distillable)
        raise ConfigError(
            f"continual.lwf distils token distributions and works with objective {distillable} only, not "
            f"{ctx.spec.objective.type}: remove lwf or use ewc/replay"
        )
    if spec.replay is not None:
        before = len(ctx.train_dataset)
        data = _prepped(ctx, load_reference(ctx, spec.replay.dataset.uri))
        ctx.train_dataset = replay.mix(
            ctx.train_dataset, data, fraction=spec.replay.fraction, seed=ctx.spec.training.seed
        )
        ctx.notes.append(f"replay: {len(ctx.train_dataset) - before} rows of {spec.replay.dataset.uri} mixed in")
    ewc_state = None
    if spec.ewc is not None:
        rows = load_reference(ctx, spec.ewc.reference_dataset.uri)
        ewc_state = ewc.estimate_fisher(
            ctx.model,
            ctx.tokenizer,
            heldout_pairs(rows, ctx.tokenizer),
            samples=spec.ewc.fisher_samples,
            strength=spec.ewc.lambda_,
            max_length=ctx.spec.dataset.prep.max_seq_length,
        )
    lwf_state = None
    if spec.lwf is not None:
        lwf_state = lwf.prepare(ctx.model, alpha=spec.lwf.alpha, temperature=spec.lwf.temperature, peft=ctx.is_peft)
    return ewc_state, lwf_state


def _prepped(ctx: RunContext, dataset: Any) -> Any:
    """Replay rows are trained on, so they pass the same dedup, PII, license and length rules as train."""
    from kubetune_trainer.data.prep import prepare_from_spec
    from kubetune_trainer.data.prep_rows import TokenLengths

    result = prepare_from_spec(dataset, ctx.spec.dataset.prep, lengths=TokenLengths(ctx.tokenizer))
    log.info("replay data: %s", result.report.summary())
    return result.dataset
