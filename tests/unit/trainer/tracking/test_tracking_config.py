"""spec.tracking checks that need no server: a credentials Secret that gave the pod nothing fails at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubetune.api.v1alpha1.trainer_config import CONFIG_ERROR_EXIT_CODE
from kubetune_trainer import pipeline
from kubetune_trainer.__main__ import main
from support.trainer_job import trainer_config

pytestmark = [pytest.mark.unit, pytest.mark.trainer]


def test_an_mlflow_secret_without_credentials_is_a_config_error_before_any_data(
    tmp_path: Path, model_dir: Path, data_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("KUBETUNE_TERMINATION_LOG", str(tmp_path / "termination-log"))

    def forbidden(_ctx: object) -> None:
        raise AssertionError("data was loaded before the missing credentials were found")

    monkeypatch.setattr(pipeline.data_stage, "load", forbidden)
    mlflow = {"trackingUri": "http://127.0.0.1:9", "credentialsSecretRef": {"name": "mlflow-auth"}}
    config = tmp_path / "trainer.json"
    config.write_text(
        json.dumps(trainer_config(tmp_path, model_dir, data_files["text"], job={"tracking": {"mlflow": mlflow}}))
    )
    assert main(["--config", str(config)]) == CONFIG_ERROR_EXIT_CODE
    assert (tmp_path / "termination-log").read_text() == (
        "kubetune-trainer: config error: tracking.mlflow.credentialsSecretRef: Secret mlflow-auth gave none of the "
        "keys MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD: create it in this namespace "
        "with MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD\n"
    )
