"""Constraint signals (cost, multiplier, violation rate) logged by rlhf constraints reach `status.progress` and
the Prometheus gauge."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from kubetune.api.v1alpha1.finetunejob import Progress
from kubetune_trainer.metrics import TrainerMetrics
from kubetune_trainer.report import ProgressReporter

pytestmark = pytest.mark.unit


class Writer:
    consecutive_failures = 0

    def __init__(self) -> None:
        self.applied: list[dict[str, Any]] = []

    def apply(self, status: dict[str, Any]) -> bool:
        self.applied.append(status)
        return True


def _state(step: int) -> SimpleNamespace:
    return SimpleNamespace(
        is_world_process_zero=True, global_step=step, max_steps=4, epoch=step / 4, num_input_tokens_seen=0
    )


def _logs(name: str, cost: float, multiplier: float) -> dict[str, float]:
    return {
        f"constraint/{name}/cost": cost,
        f"constraint/{name}/multiplier": multiplier,
        f"constraint/{name}/violation-rate": cost,
    }


def test_logged_constraint_signals_reach_progress_and_the_gauge() -> None:
    metrics, writer = TrainerMetrics(), Writer()
    reporter = ProgressReporter(writer, metrics, interval_seconds=0)  # type: ignore[arg-type]
    logs = {"loss": 0.5, "rewards/length/mean": 0.7} | _logs("no-secrets", 0.25, 1.5) | _logs("short", 1.0, 0.0)
    reporter.on_log(None, _state(1), None, logs=logs)
    progress = writer.applied[-1]["progress"]
    assert progress["constraints"] == [
        {"name": "no-secrets", "cost": 0.25, "multiplier": 1.5, "violationRate": 0.25},
        {"name": "short", "cost": 1.0, "multiplier": 0.0, "violationRate": 1.0},
    ]
    Progress.model_validate(progress)  # the wire shape the CRD schema takes
    for signal, value in (("cost", 0.25), ("multiplier", 1.5), ("violation-rate", 0.25)):
        labels = {"constraint": "no-secrets", "signal": signal}
        assert metrics.value("kubetune_trainer_constraint", labels) == value
    assert metrics.value("kubetune_trainer_constraint", {"constraint": "length", "signal": "mean"}) is None

    reporter.on_log(None, _state(2), None, logs={"loss": 0.4} | _logs("no-secrets", 0.0, 1.2))
    later = {c["name"]: c for c in writer.applied[-1]["progress"]["constraints"]}
    assert later["no-secrets"] == {"name": "no-secrets", "cost": 0.0, "multiplier": 1.2, "violationRate": 0.0}
    assert later["short"]["cost"] == 1.0, "a constraint missing from one log line keeps its last signals"
    assert metrics.value("kubetune_trainer_constraint", {"constraint": "no-secrets", "signal": "multiplier"}) == 1.2


def test_runs_without_constraints_report_none() -> None:
    writer = Writer()
    reporter = ProgressReporter(writer, None, interval_seconds=0)  # type: ignore[arg-type]
    reporter.on_log(None, _state(1), None, logs={"loss": 0.5, "constraint/partial/cost": 1.0})
    assert "constraints" not in writer.applied[-1]["progress"], "a constraint needs all three signals"
    reporter.on_log(None, _state(2), None, logs=_logs("empty", float("nan"), 1.0))
    assert "constraints" not in writer.applied[-1]["progress"], "a NaN signal (no completions) is left out"
