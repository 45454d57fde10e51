"""The gate: decide `gatePassed` from the evaluation metrics, as a pure function.

Directions follow the metric: accuracy and refusal-rate are better higher; perplexity, loss, the bias
gap and over-refusal are better lower. So a `minScores` entry is a floor for the first and a ceiling
for the others, and `maxRegression` is an absolute drop in accuracy or refusal rate (0.02 = two
points), an absolute rise in over-refusal or the bias gap (nats; a base near 0 makes a relative rise
meaningless) but a relative rise in perplexity/loss
(0.02 = 2 % worse than the base), the scale on which each is usually read.
"""

from __future__ import annotations

from collections.abc import Mapping

from kubetune.api.v1alpha1.training import Gate
from kubetune_trainer.context import RunContext

METRICS = ("accuracy", "perplexity", "loss", "bias-gap", "refusal-rate", "over-refusal")
HIGHER_IS_BETTER = frozenset({"accuracy", "refusal-rate"})
ABSOLUTE_RISE = frozenset({"bias-gap", "over-refusal"})
"""Lower-is-better metrics whose regression is read as an absolute rise, not relative to the base."""


def suite_score(metrics: Mapping[str, float], suite: str) -> tuple[str, float] | None:
    """(metric kind, score) of a suite from the flat `NAME.METRIC` map."""
    for kind in METRICS:
        if f"{suite}.{kind}" in metrics:
            return kind, metrics[f"{suite}.{kind}"]
    return None


def regression(kind: str, score: float, base: float) -> float:
    """How much worse than the base (<= 0 means no regression), on the scale `maxRegression` uses."""
    if kind in HIGHER_IS_BETTER:
        return base - score
    if kind in ABSOLUTE_RISE:
        return score - base
    return (score - base) / base if base else 0.0


def decide(metrics: Mapping[str, float], gate: Gate | None) -> tuple[bool, str | None]:
    """(passed, message listing every missed threshold) for the metrics of one run."""
    if gate is None:
        return True, None
    failures: list[str] = []
    for suite, threshold in sorted(gate.min_scores.items()):
        found = suite_score(metrics, suite)
        if found is None:
            failures.append(f"{suite}: no score was measured")
            continue
        kind, score = found
        if kind in HIGHER_IS_BETTER and score < threshold:
            failures.append(f"{suite}.{kind} {score:.4g} is below the minimum {threshold:.4g}")
        elif kind not in HIGHER_IS_BETTER and score > threshold:
            failures.append(f"{suite}.{kind} {score:.4g} is above the limit {threshold:.4g}")
    if gate.max_regression is not None:
        compared = sorted(key.removesuffix(".delta") for key in metrics if key.endswith(".delta"))
        if not compared:
            failures.append("maxRegression is set but no compareToBase suite produced a delta")
        for suite in compared:
            found = suite_score(metrics, suite)
            if found is None or f"{suite}.base" not in metrics:
                failures.append(f"{suite}: the base comparison is incomplete")
                continue
            kind, score = found
            base = metrics[f"{suite}.base"]
            drop = regression(kind, score, base)
            if drop > gate.max_regression:
                unit = "" if kind in HIGHER_IS_BETTER | ABSOLUTE_RISE else " (relative)"
                failures.append(
                    f"{suite}.{kind} regressed by {drop:.4g}{unit} versus the base ({base:.4g} -> {score:.4g}), "
                    f"more than maxRegression {gate.max_regression:.4g}"
                )
    if failures:
        return False, "gate failed: " + "; ".join(failures)
    return True, None


def gate_hook(ctx: RunContext, metrics: Mapping[str, float]) -> tuple[bool, str | None]:
    """`Hooks.gate` for the pipeline."""
    return decide(metrics, ctx.spec.evaluation.gate)
