"""Two identical runs end identically: the seed is set before the model is built and the method applied.

`training.seed` covers initialisation (LoRA's random A matrices, new embedding rows) as well as data
order, so two runs of the same spec on CPU log the same losses and write byte-identical adapter
weights; the seed is recorded in the artifact manifest.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from support.trainer_fixtures import RunJob

pytestmark = [pytest.mark.unit, pytest.mark.trainer]


def _weights(result_uri: str) -> dict[str, torch.Tensor]:
    path = Path(result_uri.removeprefix("file://")) / "adapter_model.safetensors"
    return load_file(str(path))


def test_identical_runs_give_identical_losses_and_weights(run_job: RunJob, data_files: dict[str, Path]) -> None:
    training = {"seed": 1234, "deterministic": True}
    _, first, first_logs = run_job(data_files["text"], training=training)
    _, second, second_logs = run_job(data_files["text"], training=training)
    assert first_logs.series("loss") == second_logs.series("loss")
    assert first_logs.series("grad_norm") == second_logs.series("grad_norm")
    a, b = _weights(first.artifact_uri), _weights(second.artifact_uri)
    assert a, "the adapter has no tensors"
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].equal(b[name]), name
    manifest = json.loads((Path(first.artifact_uri.removeprefix("file://")) / "kubetune.json").read_text())
    assert manifest["seed"] == 1234
    _, _, third_logs = run_job(data_files["text"], training={"seed": 99})
    assert third_logs.series("loss") != first_logs.series("loss")  # the seed really drives the run
