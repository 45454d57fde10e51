"""The gate: decide `gatePassed` from the evaluation metrics, as a pure function.

Directions follow the metric: accuracy and refusal-rate are better higher; perplexity, loss, the bias
gap and over-refusal are better lower; an lm-evaluation-harness suite's metric goes the way the harness
says (`SuiteScore`). So a `minScores` entry is a floor for higher-is-better suites and a ceiling for the
others, and `maxRegression` is an absolute drop for higher-is-better scores (accuracy, refusal rate,
harness scores: 0.02 = two points), an absolute rise in over-refusal or the bias gap (nats; a base near 0
makes a relative rise meaningless) but a relative rise in perplexity/loss (0.02 = 2 % worse than the
base), the scale on which each is usually read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kubetune.api.v1alpha1.training import EvalSuite, Gate
from kubetune_trainer.context import RunContext

METRICS = ("accuracy", "perplexity", "loss", "bias-gap", "refusal-rate", "over-refusal")
HIGHER_IS_BETTER = frozenset({"accuracy", "refusal-rate"})
ABSOLUTE_RISE = frozenset({"bias-gap", "over-refusal"})
"""Lower-is-better metrics whose regression is read as an absolute rise, not relative to the base."""
HARNESS_DIRECTIONS = "evaluate.harness_higher_is_better"
"""`RunContext.extras` key: lm-evaluation-harness suite name -> whether its metric is better higher."""


@dataclass(frozen=True)
class SuiteScore:
    """Which `NAME.METRIC` is a suite's score, and which way is better."""

    metric: str
    higher_is_better: bool


def suite_scores(suites: list[EvalSuite], harness_directions: Mapping[str, bool]) -> dict[str, SuiteScore]:
    return {
        suite.name: SuiteScore(
            suite.score_metric,
            harness_directions.get(suite.name, True) if suite.lm_eval else suite.metric in HIGHER_IS_BETTER,
        )
        for suite in suites
    }


def suite_score(
    metrics: Mapping[str, float], suite: str, scores: Mapping[str, SuiteScore]
) -> tuple[str, float, bool] | None:
    """(metric, score, higher is better) of a suite from the flat `NAME.METRIC` map."""
    known = scores.get(suite)
    kinds = [known] if known else [SuiteScore(kind, kind in HIGHER_IS_BETTER) for kind in METRICS]
    for kind in kinds:
        if f"{suite}.{kind.metric}" in metrics:
            return kind.metric, metrics[f"{suite}.{kind.metric}"], kind.higher_is_better
    return None


def regression(kind: str, higher_is_better: bool, score: float, base: float) -> float:
    """How much worse than the base (<= 0 means no regression), on the scale `maxRegression` uses."""
    if higher_is_better:
        return base - score
    if kind in ABSOLUTE_RISE:
        return score - base
    return (score - base) / base if base else 0.0


def decide(
    metrics: Mapping[str, float], gate: Gate | None, scores: Mapping[str, SuiteScore] | None = None
) -> tuple[bool, str | None]:
    """(passed, message listing every missed threshold) for the metrics of one run.

    `scores` names each suite's score metric and direction; suites missing from it are read as
    builtin suites (by their metric name).
    """
    if gate is None:
        return True, None
    scores = scores or {}
    failures: list[str] = []
    for suite, threshold in sorted(gate.min_scores.items()):
        found = suite_score(metrics, suite, scores)
        if found is None:
            failures.append(f"{suite}: no score was measured")
            continue
        kind, score, higher = found
        if higher and score < threshold:
            failures.append(f"{suite}.{kind} {score:.4g} is below the minimum {threshold:.4g}")
        elif not higher and score > threshold:
            failures.append(f"{suite}.{kind} {score:.4g} is above the limit {threshold:.4g}")
    if gate.max_regression is not None:
        compared = sorted(key.removesuffix(".delta") for key in metrics if key.endswith(".delta"))
        if not compared:
            failures.append("maxRegression is set but no compareToBase suite produced a delta")
        for suite in compared:
            found = suite_score(metrics, suite, scores)
            if found is None or f"{suite}.base" not in metrics:
                failures.append(f"{suite}: the base comparison is incomplete")
                continue
            kind, score, higher = found
            base = metrics[f"{suite}.base"]
            drop = regression(kind, higher, score, base)
            if drop > gate.max_regression:
                unit = "" if higher or kind in ABSOLUTE_RISE else " (relative)"
                failures.append(
                    f"{suite}.{kind} regressed by {drop:.4g}{unit} versus the base ({base:.4g} -> {score:.4g}), "
                    f"more than maxRegression {gate.max_regression:.4g}"
                )
    if failures:
        return False, "gate failed: " + "; ".join(failures)
    return True, None


def gate_hook(ctx: RunContext, metrics: Mapping[str, float]) -> tuple[bool, str | None]:
    """`Hooks.gate` for the pipeline; harness suites' directions come from their evaluation."""
    evaluation = ctx.spec.evaluation
    scores = suite_scores(list(evaluation.suites), ctx.extras.get(HARNESS_DIRECTIONS, {}))
    return decide(metrics, evaluation.gate, scores)
