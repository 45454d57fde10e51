"""Safe-RLHF constraints for online RL: a Lagrangian penalty per cost, as one more TRL reward function.

Safe RLHF (Dai et al., 2023) maximises reward subject to E[cost] <= threshold through the Lagrangian
reward - multiplier x (cost - threshold), raising the multiplier while the constraint is violated and
lowering it (never below 0) once it holds. TRL sums its reward functions, so each constraint joins
them as a function returning -multiplier x (cost - threshold) per completion: the policy sees the
Lagrangian, TRL logs the penalty as a reward column, and the multiplier update runs after every
batch of completions on the batch's mean cost (averaged over all processes, so every rank keeps the
same multiplier). The multipliers are saved with every checkpoint and restored on resume
(`ConstraintMultipliers`).

The batch's mean cost, multiplier and violation rate go to the trainer logs (TRL's `log_metric`, as
`constraint/NAME/SIGNAL`), from there to `status.progress.constraints` and the `kubetune_trainer_constraint`
gauge (`logged_constraints`), and, for the last batch, to `status.result.metrics` as
`constraint.NAME.cost|multiplier|violation-rate`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from kubetune.api.v1alpha1.constraints import ConstraintProgress, CostConstraint
from kubetune_trainer.objectives.rewards import RewardFunction

log = logging.getLogger(__name__)

SIGNALS = ("cost", "multiplier", "violation-rate")
LOG_PREFIX = "constraint"


def logged_constraints(logs: Mapping[str, Any]) -> list[ConstraintProgress]:
    """The constraints whose three signals are in one trainer log line (TRL averages each over the log window).
    A signal that is not a finite number leaves its constraint out: progress reporting never stops training."""
    signals: dict[str, dict[str, float]] = {}
    for key, value in logs.items():
        prefix, _, rest = key.partition("/")
        name, _, signal = rest.partition("/")
        if prefix == LOG_PREFIX and signal in SIGNALS and isinstance(value, int | float) and math.isfinite(value):
            signals.setdefault(name, {})[signal] = float(value)
    return [
        ConstraintProgress(
            name=name,
            cost=found["cost"],
            multiplier=max(0.0, found["multiplier"]),
            violation_rate=min(1.0, max(0.0, found["violation-rate"])),
        )
        for name, found in signals.items()
        if len(found) == len(SIGNALS)
    ]


def global_means(*values: float, count: int) -> list[float]:
    """Means of per-process sums over every process (the local ones when not distributed)."""
    import torch
    import torch.distributed as dist

    totals = torch.tensor([*values, float(count)], dtype=torch.float64)
    if dist.is_available() and dist.is_initialized():
        totals = totals.to("cuda" if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(totals)
    *sums, n = totals.tolist()
    return [s / n if n else 0.0 for s in sums]


class LagrangianConstraint:
    """One constraint as a reward function with its multiplier as state."""

    def __init__(self, constraint: CostConstraint, cost: RewardFunction, metrics: MutableMapping[str, float]) -> None:
        self.constraint = constraint
        self.cost = cost
        self.multiplier = constraint.initial_multiplier
        self.metrics = metrics
        self.__name__ = f"constraint_{constraint.name}"  # TRL names the reward column after it

    def __call__(self, completions: list[Any], log_metric: Any = None, **kwargs: Any) -> list[float]:
        threshold = self.constraint.threshold
        costs = self.cost(completions, **kwargs)
        multiplier = self.multiplier  # this batch is shaped with the multiplier learned so far
        mean_cost, violation_rate = global_means(sum(costs), sum(c > threshold for c in costs), count=len(costs))
        self.multiplier = max(0.0, multiplier + self.constraint.multiplier_learning_rate * (mean_cost - threshold))
        observed = dict(zip(SIGNALS, (mean_cost, self.multiplier, violation_rate), strict=True))
        for key, value in observed.items():
            self.metrics[f"constraint.{self.constraint.name}.{key}"] = value
            if log_metric is not None:
                log_metric(f"{LOG_PREFIX}/{self.constraint.name}/{key}", value)
        return [-multiplier * (cost - threshold) for cost in costs]


def constraint_rewards(
    constraints: Sequence[CostConstraint], costs: Sequence[RewardFunction], metrics: MutableMapping[str, float]
) -> list[LagrangianConstraint]:
    """The reward functions for `rlhf.constraints` (each with its cost function), writing their last batch into
    `metrics`."""
    return [LagrangianConstraint(c, cost, metrics) for c, cost in zip(constraints, costs, strict=True)]


class ConstraintMultipliers(TrainerCallback, ExportableState):
    """Keeps the multipliers in every checkpoint and restores them on resume, so a replacement pod continues with
    the multipliers it had learned rather than `initialMultiplier`, which would let violations rise again.

    They travel in the checkpoint's trainer_state.json (`stateful_callbacks`, which the Trainer writes for every
    `ExportableState` callback and reads back on resume), so they are uploaded and downloaded with the checkpoint
    and belong to exactly the step they were saved at. The Trainer's own restoring
    (`restore_callback_states_from_checkpoint`) stays off: it would build a new callback detached from the reward
    functions; `on_train_begin` copies the saved values into them instead.
    """

    def __init__(self, constraints: Sequence[LagrangianConstraint] = ()) -> None:
        self.constraints = list(constraints)

    def state(self) -> dict[str, Any]:
        return {"args": {}, "attributes": {"multipliers": {c.constraint.name: c.multiplier for c in self.constraints}}}

    def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        key = type(self).__name__
        saved = state.stateful_callbacks.get(key)
        if saved is None:  # a checkpoint written before multipliers were saved: keep the initial ones
            state.stateful_callbacks[key] = self.state()  # the Trainer updates this entry at every save
            return
        multipliers = saved["attributes"]["multipliers"]
        for penalty in self.constraints:
            penalty.multiplier = float(multipliers.get(penalty.constraint.name, penalty.multiplier))
        if state.global_step:
            log.info("resumed at step %d with constraint multipliers %s", state.global_step, multipliers)
