"""Against a real MLflow tracking server (basic auth on), started once per session and stopped with it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.mlflow_server import MlflowServer, running_mlflow_server
from support.trainer_fixtures import data_files, model_dir, pvc_root, run_job

__all__ = ["data_files", "mlflow_server", "model_dir", "pvc_root", "run_job"]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow")) as server:
        yield server
