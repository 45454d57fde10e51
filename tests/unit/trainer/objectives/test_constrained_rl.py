"""Safe-RLHF constraints in online RL: the cost rules, the multiplier update, and the effect in GRPO.

The effect test trains the tiny model twice from the same seed with the built-in `length` reward and a
blocked-pattern cost that most of its initial (random) completions violate: once under the constraint,
once with the constraint only measured (multiplier fixed at 0). Under the constraint the violation rate
ends below the threshold while the length reward stays comparable; measured only, it does not fall the
same way. On CPU the text is meaningless; the test reads the relations between the two runs' logs.
"""

from __future__ import annotations

from pathlib import Path
from statistics import mean
from typing import Any

import pytest

from kubetune.api.v1alpha1.constraints import CostConstraint
from kubetune_trainer.objectives.costs import blocked_terms_cost, length_cost
from kubetune_trainer.objectives.lagrangian import LagrangianConstraint
from support.trainer_fixtures import RunJob

pytestmark = [pytest.mark.unit, pytest.mark.trainer]


def test_builtin_costs() -> None:
    blocked = blocked_terms_cost(["Bad word"], [r"\d{3}"])
    assert blocked(["a bad word here", "badwords", "call 555", [{"role": "assistant", "content": "fine"}]]) == [
        1.0,
        0.0,
        1.0,
        0.0,
    ]
    assert length_cost(2)(["x", "y"], completion_ids=[[1, 2], [1, 2, 3]]) == [0.0, 1.0]
    with pytest.raises(ValueError, match="not a valid regular expression"):
        CostConstraint.model_validate({"name": "x", "builtin": "blocked-terms", "patterns": ["("], "threshold": 0})


def test_multiplier_rises_while_violated_and_is_projected_to_zero() -> None:
    constraint = CostConstraint.model_validate(
        {"name": "e", "builtin": "blocked-terms", "patterns": ["e"], "threshold": 0.25, "multiplierLearningRate": 2}
    )
    metrics: dict[str, float] = {}
    logged: list[tuple[str, float]] = []
    penalty = LagrangianConstraint(constraint, blocked_terms_cost([], ["e"]), metrics)
    batch = ["e", "e", "e", "x"]  # mean cost 0.75 > 0.25
    first = penalty(batch, log_metric=lambda k, v: logged.append((k, v)))
    assert first == [-0.75, -0.75, -0.75, 0.25]  # shaped with the initial multiplier 1: -(c - 0.25)
    assert penalty.multiplier == pytest.approx(1 + 2 * 0.5)
    assert metrics == {"constraint.e.cost": 0.75, "constraint.e.multiplier": 2.0, "constraint.e.violation-rate": 0.75}
    assert ("constraint/e/violation-rate", 0.75) in logged
    penalty(["x"] * 4)  # mean cost 0: 2 + 2 x (0 - 0.25) = 1.5
    assert penalty.multiplier == pytest.approx(1.5)
    for _ in range(5):
        penalty(["x"] * 4)
    assert penalty.multiplier == 0.0
    assert penalty(["e", "x"]) == [0.0, 0.0]


def _run(run_job: RunJob, data: Path, constraint: dict[str, Any]) -> tuple[list[float], list[float], Any]:
    rlhf = {
        "reward": {"builtin": ["length"]},
        "numGenerations": 4,
        "maxCompletionLength": 8,
        "constraints": [constraint],
    }
    _, result, logs = run_job(
        data,
        method="full",
        job={
            "objective": {"type": "rlhf", "beta": 0.01, "rlhf": rlhf},
            "dataset": {"train": {"uri": f"file://{data}"}, "prep": {"maxSeqLength": 64}},
        },
        training={"maxSteps": 12, "batchSize": 32, "learningRate": 3e-2},
    )
    return logs.series("constraint/e/violation-rate"), logs.series("rewards/length/mean"), result


def test_constraint_drives_violations_below_threshold_without_collapsing_reward(
    run_job: RunJob, data_files: dict[str, Path]
) -> None:
    cost = {"name": "e", "builtin": "blocked-terms", "patterns": ["e"], "threshold": 0.3}
    constrained, reward_c, result = _run(run_job, data_files["prompt"], cost | {"multiplierLearningRate": 2.0})
    measured, reward_m, _ = _run(
        run_job, data_files["prompt"], cost | {"initialMultiplier": 0, "multiplierLearningRate": 0}
    )
    print(f"violation rate constrained {constrained}\nmeasured only {measured}")
    print(f"length reward constrained {reward_c}\nmeasured only {reward_m}")
    assert min(constrained[0], measured[0]) > 0.3, "the random policy starts above the threshold"
    assert mean(constrained[-3:]) <= 0.3
    assert mean(measured[-3:]) > 0.3
    assert mean(reward_c[-3:]) >= 0.5 * mean(reward_m[-3:]), "the constrained policy keeps most of the reward"
    metrics = result.metrics
    assert metrics["constraint.e.violation-rate"] == constrained[-1]
    assert metrics["constraint.e.multiplier"] >= 0
