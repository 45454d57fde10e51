"""Evaluation suites run after training: held-out perplexity/loss, multiple-choice accuracy, the
constraint suites (counterfactual bias gap in `bias`, refusal rates in `safety`) and
lm-evaluation-harness tasks (`harness`).

Metrics are reported flat as `NAME.METRIC`; a `compareToBase` suite also scores the starting model
and reports `NAME.base` and `NAME.delta` (tuned minus base), which the gate turns into a regression
check. For PEFT methods the base is the same model with its adapter disabled (no second copy in
memory); otherwise the base weights are loaded again from the model cache. Harness suites also
leave their per-task results for the artifact manifest and their metric's direction for the gate.
Every suite's data (and a harness suite's task index) is prepared before weights load
(`prepare_suites`), so a wrong URI or task name fails the run before any training.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from kubetune.api.v1alpha1.constraints import REFUSAL_METRICS, RefusalJudge
from kubetune.api.v1alpha1.training import EvalSuite
from kubetune_trainer.context import RunContext
from kubetune_trainer.data.uris import resolve
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.evaluate import bias, safety, scoring
from kubetune_trainer.evaluate.gate import HARNESS_DIRECTIONS
from kubetune_trainer.evaluate.harness import run_harness, task_index
from kubetune_trainer.reference_data import load_reference

log = logging.getLogger(__name__)


HARNESS_RESULTS = "evaluate.harness_results"
"""`RunContext.extras` key: harness suite name -> {"tasks": per-task results, "baseTasks": the base's}."""
PREPARED = "evaluate.prepared"
"""`RunContext.extras` key: suite name -> its data, as `suite_data` returns it (filled by `prepare_suites`)."""


def score_suite(ctx: RunContext, model: Any, suite: EvalSuite, data: Any, *, base: bool = False) -> float:
    """`data` is the suite's rows, or for a harness suite its `TaskIndex`."""
    tokenizer, max_length = ctx.tokenizer, ctx.spec.dataset.prep.max_seq_length
    if suite.lm_eval is not None:
        result = run_harness(model, tokenizer, suite.lm_eval, data, max_length=max_length)
        ctx.extras.setdefault(HARNESS_DIRECTIONS, {})[suite.name] = result.higher_is_better
        record = ctx.extras.setdefault(HARNESS_RESULTS, {}).setdefault(suite.name, {})
        record["baseTasks" if base else "tasks"] = dict(result.tasks)
        return result.score
    if suite.metric == "accuracy":
        return scoring.multiple_choice_accuracy(model, tokenizer, list(data), max_length=max_length)
    if suite.metric == "bias-gap":
        assert suite.term_pairs is not None  # the CEL rule requires them for bias-gap
        return bias.bias_gap(model, tokenizer, data, suite.term_pairs, max_length=max_length)
    if suite.metric in REFUSAL_METRICS:
        tokens = (suite.refusal or RefusalJudge()).max_new_tokens
        return safety.refusal_share(model, tokenizer, data, safety.judge_of(ctx, suite), max_new_tokens=tokens)
    total = scoring.nll_total(model, tokenizer, scoring.heldout_pairs(data, tokenizer), max_length=max_length)
    return total.perplexity if suite.metric == "perplexity" else total.loss


def suite_data(ctx: RunContext, suite: EvalSuite) -> Any:
    if suite.lm_eval is not None:
        include = suite.lm_eval.include
        directory = None
        if include is not None:
            directory = resolve(
                include.uri,
                cache_dir=ctx.paths.cache_dir,
                pvc_root=ctx.paths.pvc_root,
                token_env=ctx.config.runtime.model_token_env,
            ).path
        return task_index(suite.lm_eval, directory)
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


def prepare_suites(ctx: RunContext) -> None:
    """`Hooks.preflight`: every suite's data and harness task index, read before weights load, so a wrong URI,
    a missing eval split or an unknown task is a config error in seconds rather than after training."""
    if ctx.spec.objective.facts.model == "causal-lm":
        ctx.extras[PREPARED] = {suite.name: suite_data(ctx, suite) for suite in ctx.spec.evaluation.suites}


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
    model = trainer.model
    metrics: dict[str, float] = {}
    compare: list[tuple[EvalSuite, Any]] = []
    prepared = ctx.extras.get(PREPARED, {})
    for suite in suites:
        data = prepared[suite.name] if suite.name in prepared else suite_data(ctx, suite)
        metrics[f"{suite.name}.{suite.score_metric}"] = score_suite(ctx, model, suite, data)
        if suite.compare_to_base:
            compare.append((suite, data))
    if compare:
        with base_model(ctx, model) as base:
            for suite, data in compare:
                before = score_suite(ctx, base, suite, data, base=True)
                metrics[f"{suite.name}.base"] = before
                metrics[f"{suite.name}.delta"] = metrics[f"{suite.name}.{suite.score_metric}"] - before
    log.info("evaluation: %s", ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))
    return metrics
