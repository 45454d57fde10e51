"""Continual learning (`spec.continual`): replay, EWC and LwF around any objective's trainer.

The pipeline calls `prepare` before the objective builds its trainer: it mixes replay rows into the
training set, estimates the EWC Fisher on the untouched starting model and prepares the LwF
teacher. `attach` then gives the built trainer the EWC penalty and the LwF distillation term as
`loss_terms` (a mixin in front of its class, so one mixin serves every objective).
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
from kubetune_trainer.loss_terms import AddedLossTerms, with_loss_terms
from kubetune_trainer.reference_data import load_reference

log = logging.getLogger(__name__)


class ContinualLoss(AddedLossTerms):
    """Adds `continual_ewc.penalty()` and the LwF term to whatever loss the trainer computes."""

    continual_ewc: ewc.EwcState | None = None
    continual_lwf: lwf.LwfState | None = None

    def training_loss_terms(self, model: Any, inputs: dict[str, Any], loss: Any) -> tuple[Any, Any]:
        loss, added = super().training_loss_terms(model, inputs, loss)
        if self.continual_lwf is not None:
            state = self.continual_lwf
            student = model(**lwf.model_inputs(inputs)).logits
            teacher = lwf.teacher_logits(state, self.accelerator.unwrap_model(model), inputs)  # type: ignore[attr-defined]
            distill = lwf.distillation_loss(student, teacher, inputs.get("attention_mask"), state.temperature)
            loss = (1 - state.alpha) * loss
            added = added + state.alpha * distill
        if self.continual_ewc is not None:
            added = added + self.continual_ewc.penalty()
        return loss, added


def attach(trainer: Any, *, ewc_state: ewc.EwcState | None, lwf_state: lwf.LwfState | None) -> Any:
    """Give an already built trainer the continual loss terms (no-op when there are none)."""
    if ewc_state is None and lwf_state is None:
        return trainer
    return with_loss_terms(trainer, ContinualLoss, "Continual", continual_ewc=ewc_state, continual_lwf=lwf_state)


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
