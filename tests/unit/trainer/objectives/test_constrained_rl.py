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
from kubetune_trainer.objectives.lagrangian import ConstraintMultipliers, LagrangianConstraint
from support.trainer_fixtures import RunJob

pytestmark = [pytest.mark.unit, pytest.mark.trainer]

LEARNING = {"initialMultiplier": 0, "multiplierLearningRate": 2.0}


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


def _penalty(name: str, initial: float) -> LagrangianConstraint:
    constraint = CostConstraint.model_validate(
        {"name": name, "builtin": "blocked-terms", "patterns": ["e"], "threshold": 0, "initialMultiplier": initial}
    )
    return LagrangianConstraint(constraint, blocked_terms_cost([], ["e"]), {})


def test_multipliers_round_trip_through_the_trainer_state() -> None:
    from transformers import TrainerState

    saving = [_penalty("a", 1.0), _penalty("b", 1.0)]
    saving[0].multiplier, saving[1].multiplier = 3.5, 0.25
    saved = TrainerState(stateful_callbacks=[ConstraintMultipliers(saving)])  # what a checkpoint's state holds
    restored = [_penalty("a", 1.0), _penalty("b", 1.0), _penalty("new", 2.0)]
    ConstraintMultipliers(restored).on_train_begin(None, saved, None)
    assert [p.multiplier for p in restored] == [3.5, 0.25, 2.0], "a constraint the checkpoint lacks keeps its start"

    old = TrainerState(stateful_callbacks=[])  # a checkpoint from before multipliers were saved
    fresh = [_penalty("a", 1.0)]
    ConstraintMultipliers(fresh).on_train_begin(None, old, None)
    assert fresh[0].multiplier == 1.0
    assert old.stateful_callbacks["ConstraintMultipliers"] == {"args": {}, "attributes": {"multipliers": {"a": 1.0}}}


def test_a_resumed_run_continues_with_the_multiplier_it_checkpointed(
    tmp_path: Path, model_dir: Path, data_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM at step 3 saves a checkpoint on the durable store; a replacement pod (fresh scratch, new trainer)
    starts its first step with the multiplier the first one had reached, not initialMultiplier 0."""
    from transformers import TrainerCallback

    from kubetune.api.v1alpha1.trainer_config import TrainerConfig
    from kubetune_trainer.context import Hooks
    from kubetune_trainer.objectives import rlhf
    from kubetune_trainer.pipeline import run
    from kubetune_trainer.termination import Terminated, TerminationRequest
    from support.trainer_fixtures import at_step, new_pod
    from support.trainer_job import trainer_config

    made: list[LagrangianConstraint] = []
    build = rlhf.constraint_rewards
    monkeypatch.setattr(rlhf, "constraint_rewards", lambda *args: made.extend(build(*args)) or made[-1:])
    cost = {"name": "e", "builtin": "blocked-terms", "patterns": ["e"], "threshold": 0.0}
    rlhf_block = {"reward": {"builtin": ["length"]}, "numGenerations": 4, "maxCompletionLength": 8}
    wire = trainer_config(
        tmp_path,
        model_dir,
        data_files["prompt"],
        "full",
        job={
            "objective": {"type": "rlhf", "beta": 0.01, "rlhf": rlhf_block | {"constraints": [cost | LEARNING]}},
            "checkpointing": {"everySteps": 100, "keepLast": 1},
        },
        training={"maxSteps": 5, "batchSize": 8, "learningRate": 3e-2},
        runtime={"checkpointUri": f"file://{tmp_path}/durable/uid-1/"},
    )
    config = TrainerConfig.model_validate(wire)
    termination = TerminationRequest(grace_seconds=60)
    with pytest.raises(Terminated):
        run(config, hooks=at_step(3, termination.handle), termination=termination)
    checkpointed = made[0].multiplier
    assert checkpointed > 0, "three batches with violations raised the multiplier from 0"

    new_pod(tmp_path)
    at_first_step: list[float] = []

    class FirstStep(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            if not at_first_step:
                at_first_step.append(made[-1].multiplier)

    run(config, hooks=Hooks(before_train=[lambda ctx: ctx.callbacks.append(FirstStep())]))
    assert len(made) == 2, "the replacement built its own constraint"
    assert at_first_step == [checkpointed]


def test_an_unresolved_cost_model_is_a_config_error_naming_its_field(tmp_path: Path, model_dir: Path) -> None:
    """Without the operator (or with an Adapter it never resolved) the trainer says which reference lacks a URI."""
    from kubetune.api.v1alpha1.trainer_config import TrainerConfig
    from kubetune_trainer.errors import ConfigError
    from kubetune_trainer.objectives.rlhf import constraint_costs
    from kubetune_trainer.pipeline import build_context
    from support.trainer_job import trainer_config

    cost = {"name": "harm", "adapterRef": {"name": "harm-cost"}, "threshold": 0.1}
    rlhf = {"reward": {"builtin": ["length"]}, "constraints": [cost]}
    wire = trainer_config(tmp_path, model_dir, tmp_path / "p.jsonl", job={"objective": {"type": "rlhf", "rlhf": rlhf}})
    ctx = build_context(TrainerConfig.model_validate(wire))
    with pytest.raises(
        ConfigError, match=r"Adapter harm-cost \(objective\.rlhf\.constraints\[0\]\.adapterRef\) was not"
    ):
        constraint_costs(ctx)
