"""Evaluation suites run after training: held-out perplexity/loss, multiple-choice accuracy, and the
constraint suites (counterfactual bias gap in `bias`, refusal rates in `safety`).

Metrics are reported flat as `NAME.METRIC`; a `compareToBase` suite also scores the starting model
and reports `NAME.base` and `NAME.delta` (tuned minus base), which the gate turns into a regression
check. For PEFT methods the base is the same model with its adapter disabled (no second copy in
memory); otherwise the base weights are loaded again from the model cache.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from kubetune.api.v1alpha1.constraints import REFUSAL_METRICS
from kubetune.api.v1alpha1.training import EvalSuite
from kubetune_trainer.context import RunContext
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.evaluate import bias, safety, scoring
from kubetune_trainer.reference_data import load_reference

log = logging.getLogger(__name__)


def score_suite(model: Any, tokenizer: Any, suite: EvalSuite, rows: Any, *, max_length: int) -> float:
    if suite.metric == "accuracy":
        return scoring.multiple_choice_accuracy(model, tokenizer, list(rows), max_length=max_length)
    if suite.metric == "bias-gap":
        assert suite.term_pairs is not None  # the CEL rule requires them for bias-gap
        return bias.bias_gap(model, tokenizer, rows, suite.term_pairs, max_length=max_length)
    if suite.metric in REFUSAL_METRICS:
        return safety.refusal_share(model, tokenizer, rows, suite.refusal)
    total = scoring.nll_total(model, tokenizer, scoring.heldout_pairs(rows, tokenizer), max_length=max_length)
    return total.perplexity if suite.metric == "perplexity" else total.loss


def suite_rows(ctx: RunContext, suite: EvalSuite) -> Any:
    if suite.dataset is not None:
        return load_reference(ctx, suite.dataset.uri, raw=suite.metric == "accuracy")
    if ctx.eval_dataset is None:
        raise ConfigError(
            f"evaluation suite {suite.name} has no dataset and the job has no eval split: "
            "set the suite's dataset or dataset.eval"
        )
    return ctx.eval_dataset


@contextlib.contextmanager
def base_model(ctx: RunContext, model: Any) -> Iterator[Any]:
    """The starting model: the adapter switched off, or a fresh copy of the base weights."""
    if ctx.is_peft and hasattr(model, "disable_adapter"):
        with model.disable_adapter():
            yield model
        return
    from transformers import AutoModelForCausalLM

    from kubetune_trainer.tokenizer_align import resize_embeddings

    assert ctx.base_model_path is not None  # set by the pipeline before any model exists
    base = AutoModelForCausalLM.from_pretrained(ctx.base_model_path, dtype=next(model.parameters()).dtype)
    resize_embeddings(base, ctx.tokenizer)
    yield base.to(next(model.parameters()).device)
    del base


def evaluate_suites(ctx: RunContext, trainer: Any) -> Mapping[str, float]:
    """`Hooks.evaluate` for the pipeline: every suite of `spec.evaluation`, on the trained model."""
    suites = ctx.spec.evaluation.suites
    if not suites:
        return {}
    trained = ctx.spec.objective.facts.model
    if trained != "causal-lm":
        ctx.notes.append(
            f"evaluation suites skipped: objective {ctx.spec.objective.type} trains a {trained}, not a language model"
        )
        return {}
    model, tokenizer = trainer.model, ctx.tokenizer
    max_length = ctx.spec.dataset.prep.max_seq_length
    metrics: dict[str, float] = {}
    compare: list[tuple[EvalSuite, Any]] = []
    for suite in suites:
        rows = suite_rows(ctx, suite)
        metrics[f"{suite.name}.{suite.metric}"] = score_suite(model, tokenizer, suite, rows, max_length=max_length)
        if suite.compare_to_base:
            compare.append((suite, rows))
    if compare:
        with base_model(ctx, model) as base:
            for suite, rows in compare:
                before = score_suite(base, tokenizer, suite, rows, max_length=max_length)
                metrics[f"{suite.name}.base"] = before
                metrics[f"{suite.name}.delta"] = metrics[f"{suite.name}.{suite.metric}"] - before
    log.info("evaluation: %s", ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))
    return metrics
