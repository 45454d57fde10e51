"""Experiment tracking (`spec.tracking`): TensorBoard event files and MLflow runs through transformers' `report_to`.

transformers' callbacks read their settings from the environment, so `prepare` sets those variables from the
spec before the trainer is built, and checks before any weights load that MLflow credentials arrived and that
the server accepts them: a refused credential is a config error (not retried), an unreachable server a
retryable one. The credentials themselves stay in the environment the pod got from the Secret; nothing here
logs them or writes them anywhere.

A pod that resumes from a checkpoint at step C retrains the steps after C that its predecessor may have logged
already before it was stopped. `continue_logging` keeps each step in the trackers once: TensorBoard's writer
purges the events from step C+1 on (the new trajectory replaces them, as TensorBoard does after a crash), and the
MLflow callback skips the values the continued MLflow run holds already (MLflow cannot delete a metric value; the
run keeps the first one, which a resume that restores the data order and RNG states reproduces).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from kubetune.api.v1alpha1.tracking import MLFLOW_CREDENTIAL_KEYS, MlflowTracking
from kubetune_trainer.context import RunContext
from kubetune_trainer.data.uris import FileUri, PvcUri, local_path, parse_uri
from kubetune_trainer.errors import ConfigError

log = logging.getLogger(__name__)

TENSORBOARD_DIR = "tensorboard"
"""Where event files go inside the artifact (and, while training, inside the work dir) without a logDir."""
REFUSED = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED"})
"""MLflow's error codes for HTTP 401 and 403."""
MLFLOW_UNSUPPORTED = re.compile(r"[^0-9A-Za-z_\-\.\ :/]")
"""Characters transformers' MLflow callback replaces by `_` in metric names: the names as the MLflow run has them."""
UID_TAG = "kubetune.io/finetunejob-uid"
"""The MLflow run's tag that ties it to one FineTuneJob (its uid), across the pods that resume it."""


def tensorboard_dir(ctx: RunContext) -> Path | None:
    """Where this run's event files are written: LOGDIR/<name>/ on a volume, else the work dir."""
    tracking = ctx.spec.tracking
    if tracking is None or tracking.tensorboard is None:
        return None
    if tracking.tensorboard.log_dir is None:
        return ctx.paths.work_dir / TENSORBOARD_DIR
    parsed = parse_uri(tracking.tensorboard.log_dir)
    assert isinstance(parsed, FileUri | PvcUri), "the CRD allows pvc:// and file:/// only"
    return local_path(parsed, ctx.paths.pvc_root) / ctx.config.target.name


def prepare(ctx: RunContext, environ: MutableMapping[str, str] | None = None) -> None:
    """Point transformers' TensorBoard and MLflow callbacks at the spec's destinations; check MLflow first."""
    env = os.environ if environ is None else environ
    tracking = ctx.spec.tracking
    if tracking is None:
        return
    events = tensorboard_dir(ctx)
    if events is not None:
        events.mkdir(parents=True, exist_ok=True)
        env["TENSORBOARD_LOGGING_DIR"] = str(events)
        log.info("tensorboard event files in %s", events)
    if tracking.mlflow is not None:
        experiment = tracking.mlflow.experiment_name or ctx.config.target.namespace
        env["MLFLOW_TRACKING_URI"] = tracking.mlflow.tracking_uri
        env["MLFLOW_EXPERIMENT_NAME"] = experiment
        check_mlflow(tracking.mlflow, env)
        uid = run_uid(ctx)
        if uid is not None and env.get("RANK", "0") == "0":  # rank 0 logs; other ranks must not create runs
            env["MLFLOW_RUN_ID"] = mlflow_run_id(tracking.mlflow, experiment, ctx.config.target.name, uid)
        log.info(
            "mlflow run %s in experiment %s at %s", ctx.config.target.name, experiment, tracking.mlflow.tracking_uri
        )


def run_uid(ctx: RunContext) -> str | None:
    """The FineTuneJob's uid, the last folder of its durable checkpoint URI (`<storage>/<uid>/`); None for a run
    the operator did not start (`kubetune run`), which has no replacement pods to continue it."""
    uri = ctx.config.runtime.checkpoint_uri
    return uri.rstrip("/").rsplit("/", 1)[-1] if uri is not None else None


def mlflow_run_id(spec: MlflowTracking, experiment: str, name: str, uid: str) -> str:
    """The one MLflow run of this FineTuneJob: found by its uid tag, or created with it. A replacement pod that
    resumes from the durable checkpoints continues that run (transformers' callback resumes `MLFLOW_RUN_ID`)
    instead of starting a second one of the same name."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=spec.tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found is not None else client.create_experiment(experiment)
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{UID_TAG}` = '{uid}'", max_results=1)
    if runs:
        log.info("mlflow: continuing run %s of this FineTuneJob", runs[0].info.run_id)
        return str(runs[0].info.run_id)
    return str(client.create_run(experiment_id, run_name=name, tags={UID_TAG: uid}).info.run_id)


def check_mlflow(spec: MlflowTracking, env: MutableMapping[str, str]) -> None:
    """Credentials from the Secret are present, and the server answers with them."""
    ref = spec.credentials_secret_ref
    if ref is not None and not any(env.get(key) for key in MLFLOW_CREDENTIAL_KEYS):
        raise ConfigError(
            f"tracking.mlflow.credentialsSecretRef: Secret {ref.name} gave none of the keys "
            f"{', '.join(MLFLOW_CREDENTIAL_KEYS)}: create it in this namespace with MLFLOW_TRACKING_TOKEN, or "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        MlflowClient(tracking_uri=spec.tracking_uri).search_experiments(max_results=1)
    except MlflowException as exc:
        if exc.error_code in REFUSED:
            source = f"the credentials from Secret {ref.name}" if ref is not None else "requests without credentials"
            raise ConfigError(
                f"tracking.mlflow: {spec.tracking_uri} refused {source} ({exc.error_code}): fix the Secret's keys "
                "or the user's permissions on the server"
            ) from None
        raise RuntimeError(f"tracking.mlflow: {spec.tracking_uri} did not answer: {exc.message}") from None


def publish_with_artifact(ctx: RunContext, root: Path) -> None:
    """Event files written to the work dir (no logDir) become part of the artifact, under tensorboard/."""
    tracking = ctx.spec.tracking
    events = tensorboard_dir(ctx)
    if tracking is None or tracking.tensorboard is None or tracking.tensorboard.log_dir or events is None:
        return
    if events.is_dir() and any(events.iterdir()):
        shutil.copytree(events, root / TENSORBOARD_DIR)


def continue_logging(ctx: RunContext, trainer: Any, resumed_step: int) -> None:
    """Before training starts at `resumed_step` + 1: each step reaches TensorBoard and MLflow once (module doc)."""
    from transformers.integrations.integration_utils import MLflowCallback, TensorBoardCallback

    if not trainer.is_world_process_zero():
        return
    events = tensorboard_dir(ctx)
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback) and callback.tb_writer is None and events is not None:
            from torch.utils.tensorboard import SummaryWriter

            callback.tb_writer = SummaryWriter(log_dir=str(events), purge_step=resumed_step + 1)
    run_id = os.environ.get("MLFLOW_RUN_ID")
    tracking = ctx.spec.tracking
    if run_id is None or tracking is None or tracking.mlflow is None:
        return
    logged = logged_steps(tracking.mlflow.tracking_uri, run_id)
    if logged and trainer.pop_callback(MLflowCallback) is not None:
        trainer.add_callback(continued_mlflow_callback(logged))
        log.info("mlflow: the run holds steps up to %d already; those are not logged again", max(logged.values()))


def logged_steps(tracking_uri: str, run_id: str) -> dict[str, int]:
    """Metric name -> the highest step the MLflow run holds for it."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    keys = client.get_run(run_id).data.metrics
    return {key: max(m.step for m in client.get_metric_history(run_id, key)) for key in keys}


def continued_mlflow_callback(logged: Mapping[str, int]) -> Any:
    """transformers' MLflow callback, logging only the values of steps after those the run holds (per metric, so an
    evaluation its predecessor did not reach at a step whose loss it logged is still logged)."""
    from transformers.integrations.integration_utils import MLflowCallback

    class ContinuedMlflowCallback(MLflowCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, model: Any = None, **kw: Any) -> None:
            step = state.global_step
            fresh = {k: v for k, v in (logs or {}).items() if logged.get(MLFLOW_UNSUPPORTED.sub("_", k), -1) < step}
            if fresh:
                super().on_log(args, state, control, fresh, model=model, **kw)  # type: ignore[no-untyped-call]

    return ContinuedMlflowCallback()  # type: ignore[no-untyped-call]
