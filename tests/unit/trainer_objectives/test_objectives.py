"""Each preference/RL objective trains the tiny model through the real pipeline and its signal moves.

The characteristic metric is read from the trainer's own logs: DPO/IPO reward margin and accuracy,
KTO and ORPO loss, reward-model pairwise accuracy, GRPO/RLOO mean reward on a built-in reward the
tiny model can learn in a few steps (character length: prefer multi-character tokens).
"""

from __future__ import annotations

from pathlib import Path
from statistics import mean
from typing import Any

import pytest

from unit.trainer_objectives.conftest import RunJob

pytestmark = [pytest.mark.unit, pytest.mark.trainer]

SHORT = {"maxSteps": 10, "batchSize": 8, "learningRate": 5e-3}


def _head_tail(values: list[float], k: int = 3) -> tuple[float, float]:
    return mean(values[:k]), mean(values[-k:])


@pytest.mark.parametrize("objective", ["dpo", "ipo"])
def test_dpo_family_margin_and_accuracy_rise(objective: str, run_job: RunJob, data_files: dict[str, Path]) -> None:
    _, result, logs = run_job(
        data_files["preference"],
        job={"objective": {"type": objective, "beta": 0.1}, "dataset": _dataset(data_files["preference"])},
        training=SHORT,
    )
    margins = logs.series("rewards/margins")
    accuracy = logs.series("rewards/accuracies")
    first, last = _head_tail(margins)
    assert last > first + 0.05, f"{objective} margin {first:.3f} -> {last:.3f}"
    assert mean(accuracy[-3:]) > mean(accuracy[:1]), accuracy
    assert result.gate_passed
    assert Path(result.artifact_uri.removeprefix("file://"), "adapter_model.safetensors").is_file()


def _dataset(path: Path, fmt: str = "auto") -> dict[str, Any]:
    return {"train": {"uri": f"file://{path}"}, "format": fmt, "prep": {"maxSeqLength": 64}}
