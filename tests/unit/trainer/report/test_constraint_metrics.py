"""Constraint signals (cost, multiplier, violation rate) logged by rlhf constraints reach the Prometheus gauge."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from kubetune_trainer.metrics import TrainerMetrics
from kubetune_trainer.report import ProgressReporter

pytestmark = pytest.mark.unit


def test_logged_constraint_signals_set_the_gauge() -> None:
    metrics = TrainerMetrics()
    reporter = ProgressReporter(None, metrics, interval_seconds=5)
    state = SimpleNamespace(is_world_process_zero=True, global_step=1, max_steps=4, epoch=0.1, num_input_tokens_seen=0)
    logs = {
        "loss": 0.5,
        "constraint/no-secrets/cost": 0.25,
        "constraint/no-secrets/multiplier": 1.5,
        "constraint/no-secrets/violation-rate": 0.25,
        "rewards/length/mean": 0.7,
    }
    reporter.on_log(None, state, None, logs=logs)
    for signal, value in (("cost", 0.25), ("multiplier", 1.5), ("violation-rate", 0.25)):
        labels = {"constraint": "no-secrets", "signal": signal}
        assert metrics.value("kubetune_trainer_constraint", labels) == value
    assert metrics.value("kubetune_trainer_constraint", {"constraint": "length", "signal": "mean"}) is None
