"""TrainerConfig: the document the operator renders into the Job's pod template and the trainer reads.

It carries the validated FineTuneJob spec plus everything resolved at render time (world size,
launcher, mount points, where to report), so the trainer never talks to the API server to learn
what to do. Secrets are never in it: credentials arrive as environment variables named here.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints

from kubetune.api.base import CelRule, KubeModel
from kubetune.api.v1alpha1.adapter import AdapterBaseModel, AdapterMethodSummary, Combination
from kubetune.api.v1alpha1.finetunejob import FineTuneJobSpec
from kubetune.api.v1alpha1.pod_contract import CACHE_DIR, CHECKPOINT_DIR, PVC_ROOT, SCRATCH_DIR, TRAINER_METRICS_PORT

Path = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
EnvName = Annotated[str, StringConstraints(max_length=128, pattern=r"^[A-Z_][A-Z0-9_]*$")]

CONFIG_ERROR_EXIT_CODE = 78
"""Exit code of the trainer for bad configuration or data (EX_CONFIG): never retried."""
TERMINATED_EXIT_CODE = 143
"""Exit code of a trainer stopped by SIGTERM (128 + 15: the pod was deleted, evicted, preempted or its Job
suspended), after saving a checkpoint when the grace period allowed: not a failure, never counted as a retry."""


class StatusTarget(KubeModel):
    """The object whose status the trainer patches (its Role allows exactly this one)."""

    kind: Literal["FineTuneJob", "Adapter"]
    namespace: Annotated[str, StringConstraints(max_length=63)]
    name: Annotated[str, StringConstraints(max_length=253)]


class RuntimeSettings(KubeModel):
    """Resolved at render time from the spec and the operator settings."""

    strategy: Literal["single", "ddp", "deepspeed", "fsdp"] = "single"
    launcher: Literal["python", "torchrun", "deepspeed"] = "python"
    nodes: int = Field(default=1, ge=1)
    processes_per_node: int = Field(default=1, ge=1)
    world_size: int = Field(default=1, ge=1)
    cache_dir: Path = CACHE_DIR
    work_dir: Path = SCRATCH_DIR
    checkpoint_dir: Path = CHECKPOINT_DIR
    checkpoint_uri: Path | None = None
    """Durable checkpoints of this run (`checkpointing.storage.uri`/<uid>/); None keeps them in checkpoint_dir only."""
    termination_grace_seconds: int = Field(default=120, ge=1)
    """The pod's terminationGracePeriodSeconds: how long a SIGTERM leaves to save a last checkpoint."""
    pvc_mount_root: Path = PVC_ROOT
    metrics_port: int = Field(default=TRAINER_METRICS_PORT, ge=0, le=65535)
    progress_interval_seconds: float = Field(default=10.0, gt=0)
    report_status: bool = True
    model_token_env: EnvName | None = None
    output_token_env: EnvName | None = None


class MergeInput(KubeModel):
    """One adapter to merge, resolved by the operator to its artifact."""

    name: Annotated[str, StringConstraints(max_length=253)]
    artifact_uri: Path
    weight: float
    method: AdapterMethodSummary | None = None


class MergeTask(KubeModel):
    """What merge mode combines and where the result goes."""

    base_model: AdapterBaseModel
    sources: Annotated[list[MergeInput], Field(min_length=2, max_length=16)]
    combination: Combination
    density: float | None = None
    output_uri: Path


class TrainerConfig(KubeModel):
    """Everything one trainer pod needs; `mode` selects training or merging."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule("self.mode != 'train' || (has(self.job) && !has(self.merge))", "mode train needs job and no merge"),
        CelRule("self.mode != 'merge' || (has(self.merge) && !has(self.job))", "mode merge needs merge and no job"),
    )

    api_version: Literal["kubetune.io/v1alpha1"] = "kubetune.io/v1alpha1"
    kind: Literal["TrainerConfig"] = "TrainerConfig"
    mode: Literal["train", "merge"] = "train"
    target: StatusTarget
    job: FineTuneJobSpec | None = None
    merge: MergeTask | None = None
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    adapters: Annotated[dict[Annotated[str, StringConstraints(max_length=253)], Path], Field(max_length=32)] | None = (
        Field(
            default=None,
            description="The Adapters the spec names (reward model, cost models, refusal judges, constitution writer), "
            "by name, resolved by the operator to their artifact URIs.",
        )
    )
