"""Operator settings: one frozen object handed to every pure builder.

Builders never read the environment or globals; the handlers' startup reads the environment once
(`from_env`, given the mapping explicitly) and passes the result down. That keeps render and status
deterministic, so golden files and table tests need no monkeypatching.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from kubetune.api.v1alpha1.pod_contract import TRAINER_METRICS_PORT

ENV_PREFIX = "KUBETUNE_"


class OperatorSettings(BaseModel):
    """Cluster-wide defaults of the operator; the FineTuneJob spec overrides where it has a field."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    trainer_image: Annotated[str, StringConstraints(min_length=1, max_length=512)] = (
        "ghcr.io/kubetune/kubetune-trainer:0.1.0"
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    run_as_user: int = Field(
        default=65532, ge=1, description="Non-root uid of the trainer: the user the trainer image is built for."
    )
    scratch_size: str = Field(default="200Gi", description="sizeLimit of the scratch emptyDir (checkpoints).")
    tmp_size: str = Field(default="4Gi", description="sizeLimit of the /tmp emptyDir.")
    model_cache_claim: str | None = Field(
        default=None, description="PVC shared as the model cache; an emptyDir when unset."
    )
    storage_secret_name: str | None = Field(
        default=None, description="Secret with AWS_* keys for s3:// URIs, passed as envFrom (optional)."
    )
    preflight_cpu: str = Field(default="1", description="CPU request and limit of the preflight pod.")
    preflight_memory: str = Field(
        default="4Gi", description="Memory request and limit of the preflight pod (config, tokenizer, data check)."
    )
    preflight_deadline_seconds: int = Field(
        default=900, ge=60, description="activeDeadlineSeconds of the preflight Job (it downloads the data it checks)."
    )
    rendezvous_port: int = Field(default=29500, ge=1, le=65535)
    termination_grace_seconds: int = Field(
        default=120,
        ge=10,
        le=3600,
        description="terminationGracePeriodSeconds of trainer pods: on SIGTERM (eviction, preemption, suspend) "
        "the trainer saves a checkpoint when the last one took less than this, then exits.",
    )
    trainer_metrics_port: int = Field(default=TRAINER_METRICS_PORT, ge=1, le=65535)
    progress_interval_seconds: float = Field(default=10.0, gt=0)
    merge_output_prefix: str | None = Field(
        default=None, description="Where merged adapters go; next to the first source's artifact when unset."
    )
    metrics_port: int = Field(default=8080, ge=0, le=65535, description="Operator /metrics port; 0 disables.")
    resync_seconds: float = Field(default=30.0, gt=0, description="Level-based re-reconcile interval.")
    watch_server_timeout: int = Field(default=300, ge=1, description="Seconds before the API server ends a watch.")
    watch_client_timeout: int = Field(default=330, ge=1, description="Client-side bound on a watch request.")
    error_backoffs: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0)
    handler_backoff: float = Field(
        default=5.0, gt=0, description="Delay before a failed reconcile is retried; doubled per further failure."
    )
    child_event_delay: float = Field(
        default=0.5,
        ge=0,
        le=60,
        description="Seconds a Job or pod event waits for more before its owner is reconciled (one status update "
        "for a burst of them); the owner's own changes are reconciled at once.",
    )
    workers: int = Field(
        default=16,
        ge=1,
        le=128,
        description="Reconciles running at once (one per object at a time), each a thread. A reconcile mostly waits "
        "on its writes (its reads come from the watch cache), so threads overlap well (docs/benchmarks.md).",
    )
    service_account_annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Annotations on every trainer ServiceAccount: the cloud identity of the pods (IRSA "
        "eks.amazonaws.com/role-arn, GKE iam.gke.io/gcp-service-account). JSON in the environment.",
    )
    service_account_annotations_by_namespace: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Namespace -> annotations merged over service_account_annotations. JSON in the environment.",
    )
    image_pull_secrets: tuple[str, ...] = Field(
        default=(), description="Secrets named in every trainer ServiceAccount's imagePullSecrets."
    )
    trainer_status_policy: str = Field(
        default="kubetune-trainer-status",
        description="The chart's ValidatingAdmissionPolicy (and binding of the same name) that lets a token of the "
        "namespace's `kubetune-trainer` ServiceAccount write only the status of its own pod's run. Found at startup: "
        "runs share that identity, applied once per namespace; not found: each run gets its own (a warning).",
    )
    namespace_trainer_identity: bool = Field(
        default=False,
        exclude=True,
        description="Whether runs share the namespace's trainer identity: decided at startup from "
        "`trainer_status_policy`, never read from the environment.",
    )
    check_secrets: bool = Field(
        default=True,
        description="Look up baseModel.credentialsSecretRef before creating the Job (needs `get` on Secrets). "
        "The chart turns it off: the operator holds no Secret permission and a missing Secret is reported "
        "from the trainer pod (SecretNotFound) instead.",
    )
    lifecycle_events: bool = Field(
        default=False,
        description="Also post a Normal Event on each phase change of a FineTuneJob and when an Adapter turns Ready. "
        "Warning Events (a failure, a run or Adapter that needs the user) are always posted. Off by default: the "
        "lifecycle is in status.conditions with transition times, and each Event is one more write to the API "
        "server and etcd per run and phase (docs/benchmarks.md).",
    )
    pod_annotation_prefixes: tuple[str, ...] = Field(
        default=(),
        description="Annotations of a FineTuneJob or Adapter with these prefixes are copied onto its pods "
        "(e.g. cluster-autoscaler.kubernetes.io/, or kwok.kubetune.io/ in tests).",
    )

    def service_account_annotations_for(self, namespace: str) -> dict[str, str]:
        return {**self.service_account_annotations, **self.service_account_annotations_by_namespace.get(namespace, {})}

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> OperatorSettings:
        """Reads `KUBETUNE_<FIELD>` (upper case) from the given mapping; unknown variables are ignored.
        Tuples are comma-separated, mappings JSON objects."""
        values: dict[str, object] = {}
        for name, field in cls.model_fields.items():
            raw = None if field.exclude else environ.get(ENV_PREFIX + name.upper())
            if raw is None or raw == "":
                continue
            if isinstance(field.default, tuple):
                values[name] = tuple(x.strip() for x in raw.split(",") if x.strip())
            elif field.default_factory is dict:
                try:
                    values[name] = json.loads(raw)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{ENV_PREFIX}{name.upper()} must be a JSON object: {error}") from error
            else:
                values[name] = raw
        return cls.model_validate(values)
