"""The run measurements the code labs read: pure helpers on stand-in tensors, the training log file,
the series entry's usage error and the preference score (the trained runs are in tests/unit/trainer/labs)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from kubetune.api.estimate import MemoryEstimate
from kubetune.api.v1alpha1.artifact import TRAINING_LOG_FILE
from kubetune_trainer.artifacts import write_training_log
from kubetune_trainer.measure import estimate_measurements, quant_state_bytes, tensor_bytes, weight_measurements
from kubetune_trainer.score import preference_scores
from kubetune_trainer.series import main as series_main

pytestmark = [pytest.mark.unit, pytest.mark.trainer]


def test_weight_measurements_split_trainable_from_frozen() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2, bias=False))
    model[0].requires_grad_(False)
    measured = weight_measurements(model)
    assert measured["params.total"] == 4 * 3 + 3 + 3 * 2
    assert measured["params.trainable"] == 3 * 2
    assert measured["memory.trainable_bytes"] == 3 * 2 * 4
    assert measured["memory.weights_bytes"] == measured["params.total"] * 4
    assert "params.quantized" not in measured


def test_quant_state_bytes_count_scales_and_nested_scales() -> None:
    absmax = torch.zeros(8, dtype=torch.uint8)
    nested = SimpleNamespace(absmax=torch.zeros(2, dtype=torch.float32), offset=None, state2=None)
    state = SimpleNamespace(absmax=absmax, offset=torch.zeros((), dtype=torch.float32), state2=nested)
    assert quant_state_bytes(state) == 8 + 4 + 2 * 4
    assert quant_state_bytes(None) == 0


def test_optimizer_state_bytes_walk_nested_containers() -> None:
    state = {0: {"exp_avg": torch.zeros(5), "exp_avg_sq": torch.zeros(5), "step": 3}, 1: [torch.zeros(2)]}
    assert tensor_bytes(state) == (5 + 5 + 2) * 4


def test_estimate_measurements_name_each_part() -> None:
    estimate = MemoryEstimate(method="lora", weights=10, gradients=2, optimizer=4, activations=1, overhead=0)
    assert estimate_measurements(estimate) == {
        "estimate.weights_bytes": 10.0,
        "estimate.gradients_bytes": 2.0,
        "estimate.optimizer_bytes": 4.0,
        "estimate.total_bytes": 17.0,
    }
    assert estimate_measurements(None) == {}


def test_training_log_keeps_numbers_in_order(tmp_path: Path) -> None:
    path = tmp_path / TRAINING_LOG_FILE
    write_training_log(path, [{"step": 1, "loss": 0.5, "note": "x"}, {"step": 2, "eval_loss": 0.4}])
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        {"loss": 0.5, "step": 1},
        {"eval_loss": 0.4, "step": 2},
    ]


def test_preference_scores_count_ties_as_half() -> None:
    scores = preference_scores([1.0, 0.0, -1.0, 2.0], [0.0, 0.0, 0.0, 0.0])
    assert scores == {"accuracy": (1 + 0.5 + 0 + 1) / 4, "margin": 0.5}


def test_series_without_configs_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert series_main([]) == 2
    assert "usage: python -m kubetune_trainer.series" in capsys.readouterr().err
