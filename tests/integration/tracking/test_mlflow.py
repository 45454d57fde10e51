"""spec.tracking.mlflow against a real `mlflow server` with basic auth: the run, its metrics, and the credentials.

The credentials reach the trainer as the pod gets them from the Secret (MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD in its environment); the password must show up nowhere: not in the MLflow run's
params or tags, not in the trainer's logs, not in the one-line error of a refused login.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubetune.api.v1alpha1.trainer_config import CONFIG_ERROR_EXIT_CODE
from kubetune_dev.tiny import tiny_model_dir
from kubetune_trainer import pipeline
from kubetune_trainer import tracking as tracking_module
from kubetune_trainer.__main__ import main
from support.mlflow_server import MlflowServer
from support.trainer_fixtures import RunJob, at_step
from support.trainer_job import trainer_config

pytestmark = [pytest.mark.integration, pytest.mark.trainer]

SECRET = "mlflow-auth"


@pytest.fixture(autouse=True)
def restore_environment() -> Iterator[None]:
    """The trainer sets the callbacks' variables in its process's environment; give each test a clean one."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def tracking(server: MlflowServer, experiment: str) -> dict[str, Any]:
    return {
        "tracking": {
            "mlflow": {
                "trackingUri": server.url,
                "experimentName": experiment,
                "credentialsSecretRef": {"name": SECRET},
            }
        }
    }


def as_admin(server: MlflowServer) -> Any:
    from mlflow.tracking import MlflowClient

    os.environ["MLFLOW_TRACKING_USERNAME"] = server.username
    os.environ["MLFLOW_TRACKING_PASSWORD"] = server.password
    return MlflowClient(tracking_uri=server.url)


def test_training_is_logged_to_an_mlflow_run_named_after_the_job(
    mlflow_server: MlflowServer, run_job: RunJob, data_files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    os.environ["MLFLOW_TRACKING_USERNAME"] = mlflow_server.username
    os.environ["MLFLOW_TRACKING_PASSWORD"] = mlflow_server.password
    caplog.set_level(logging.DEBUG)
    _, result, recorder = run_job(data_files["text"], job=tracking(mlflow_server, "kubetune-tests"))
    assert result.metrics["train.steps"] == 8
    client = as_admin(mlflow_server)
    experiment = client.get_experiment_by_name("kubetune-tests")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "job"
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == list(range(1, 9))
    assert [m.value for m in history] == pytest.approx(recorder.series("loss"), rel=1e-6)
    assert run.data.params["learning_rate"] == "0.01"
    recorded = json.dumps([run.data.params, run.data.tags])
    assert mlflow_server.password not in recorded
    assert mlflow_server.password not in caplog.text


def test_refused_credentials_are_a_config_error_before_weights_load(
    mlflow_server: MlflowServer,
    data_files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def forbidden(_ctx: object) -> None:
        raise AssertionError("weights were loaded before the refused login was found")

    monkeypatch.setattr(pipeline, "load_weights", forbidden)
    wrong = "not-the-password-42"
    os.environ["MLFLOW_TRACKING_USERNAME"] = mlflow_server.username
    os.environ["MLFLOW_TRACKING_PASSWORD"] = wrong
    os.environ["KUBETUNE_TERMINATION_LOG"] = str(tmp_path / "termination-log")
    config = tmp_path / "trainer.json"
    wire = trainer_config(tmp_path, tiny_model_dir(), data_files["text"], job=tracking(mlflow_server, "refused"))
    config.write_text(json.dumps(wire))
    assert main(["--config", str(config)]) == CONFIG_ERROR_EXIT_CODE
    message = (tmp_path / "termination-log").read_text()
    assert f"refused the credentials from Secret {SECRET} (UNAUTHENTICATED)" in message
    captured = capsys.readouterr()
    assert wrong not in message + captured.out + captured.err


def test_a_second_pod_of_the_same_finetunejob_continues_its_mlflow_run(
    mlflow_server: MlflowServer, run_job: RunJob, data_files: dict[str, Path], tmp_path: Path
) -> None:
    """Pods of one FineTuneJob (its uid is the last folder of the durable checkpoint URI) log into one MLflow run,
    as a replacement pod does after the first one was evicted; another FineTuneJob of the same name gets its own."""
    os.environ["MLFLOW_TRACKING_USERNAME"] = mlflow_server.username
    os.environ["MLFLOW_TRACKING_PASSWORD"] = mlflow_server.password
    job = tracking(mlflow_server, "kubetune-resume")
    for uid in ("uid-1", "uid-1", "uid-2"):
        run_job(data_files["text"], job=job, runtime={"checkpointUri": f"file://{tmp_path}/durable/{uid}/"})
    client = as_admin(mlflow_server)
    experiment = client.get_experiment_by_name("kubetune-resume")
    runs = {r.data.tags[tracking_module.UID_TAG]: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["uid-1", "uid-2"]
    assert {r.info.run_name for r in runs.values()} == {"job"}
    assert all(r.info.status == "FINISHED" for r in runs.values())
    steps = {uid: [m.step for m in client.get_metric_history(r.info.run_id, "loss")] for uid, r in runs.items()}
    assert steps == {"uid-1": list(range(1, 9)), "uid-2": list(range(1, 9))}, "a step the run holds is not logged again"


def test_a_pod_resumed_from_a_checkpoint_logs_each_step_once(
    mlflow_server: MlflowServer, run_job: RunJob, data_files: dict[str, Path], tmp_path: Path
) -> None:
    """The first pod logs steps 1 to 5 and dies in step 6; the replacement pod resumes from checkpoint 4 and
    retrains step 5, which the continued MLflow run holds already: every step is in the run once."""
    import mlflow

    os.environ["MLFLOW_TRACKING_USERNAME"] = mlflow_server.username
    os.environ["MLFLOW_TRACKING_PASSWORD"] = mlflow_server.password
    job = tracking(mlflow_server, "kubetune-resumed") | {"checkpointing": {"everySteps": 2, "keepLast": 2}}
    runtime = {"checkpointUri": f"file://{tmp_path}/durable/uid-r/"}

    def crash() -> None:
        raise RuntimeError("the node went away")

    with pytest.raises(RuntimeError, match="the node went away"):
        run_job(data_files["text"], job=job, runtime=runtime, hooks=at_step(6, crash))
    mlflow.end_run("KILLED")  # the pod's process is gone, and its active run with it
    client = as_admin(mlflow_server)
    experiment = client.get_experiment_by_name("kubetune-resumed")
    (run,) = client.search_runs([experiment.experiment_id])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3, 4, 5]

    _, result, recorder = run_job(data_files["text"], job=job, runtime=runtime)
    assert len(recorder.series("loss")) == 4, "the replacement pod trained steps 5 to 8 (resumed from checkpoint 4)"
    (resumed,) = client.search_runs([experiment.experiment_id])
    assert resumed.info.run_id == run.info.run_id
    for metric in ("loss", "grad_norm", "learning_rate"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
        assert steps == list(range(1, 9)), (metric, steps)
    assert result.metrics["train.steps"] == 8
