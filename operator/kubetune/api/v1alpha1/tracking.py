"""Experiment tracking: where the trainer sends its training logs besides status and Prometheus.

Both trackers are transformers integrations (`report_to`): TensorBoard event files and MLflow runs get
every logged step (loss, learning rate, grad norm, eval loss). Credentials for MLflow come from a Secret as
environment variables of the trainer container; they are never in the spec, the trainer config, status or logs.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, StringConstraints

from kubetune.api.base import CelRule, KubeModel
from kubetune.api.v1alpha1.common import OutputUri, SecretRef

MLFLOW_CREDENTIAL_KEYS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
"""Keys of `mlflow.credentialsSecretRef` the trainer receives (each optional), under the same names as env vars:
a bearer token, or basic-auth user and password, as the MLflow client reads them."""

HttpUri = Annotated[str, StringConstraints(max_length=512, pattern=r"^https?://\S+$")]


class TensorBoardTracking(KubeModel):
    """TensorBoard event files of the run."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "!has(self.logDir) || self.logDir.startsWith('pvc://') || self.logDir.startsWith('file:///')",
            "tracking.tensorboard.logDir must be pvc://CLAIM/PATH or file:///PATH (event files are written while "
            "training); leave it unset to publish them with the artifact, also on s3://",
        ),
    )

    log_dir: OutputUri | None = Field(
        default=None,
        description="pvc://CLAIM/PATH or file:///PATH: event files go to LOGDIR/<FineTuneJob name>/ as training "
        "runs, so a TensorBoard reading the claim shows the run live. Unset: they are published with the "
        "artifact, under tensorboard/.",
    )


class MlflowTracking(KubeModel):
    """An MLflow tracking server: one MLflow run per FineTuneJob, named after it."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "!self.trackingUri.matches('^https?://[^/]*@')",
            "tracking.mlflow.trackingUri must not carry credentials (user:password@host): put them in a Secret "
            "and name it in tracking.mlflow.credentialsSecretRef",
        ),
    )

    tracking_uri: HttpUri = Field(description="http(s) URL of the MLflow tracking server.")
    experiment_name: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = Field(
        default=None, description="MLflow experiment (created when missing); default: the FineTuneJob's namespace."
    )
    credentials_secret_ref: SecretRef | None = Field(
        default=None,
        description="Secret with MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD; "
        "passed to the trainer as environment variables, never logged or written to status.",
    )


class TrackingSpec(KubeModel):
    """Experiment trackers that receive the training logs (transformers' report_to)."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "has(self.tensorboard) || has(self.mlflow)",
            "tracking is empty: add tensorboard: {} or mlflow: {trackingUri: ...}, or remove tracking",
        ),
    )

    tensorboard: TensorBoardTracking | None = Field(default=None, description="TensorBoard event files.")
    mlflow: MlflowTracking | None = Field(default=None, description="An MLflow tracking server.")

    @property
    def report_to(self) -> list[str]:
        """transformers' names of the integrations this spec turns on."""
        return [name for name, block in (("tensorboard", self.tensorboard), ("mlflow", self.mlflow)) if block]
