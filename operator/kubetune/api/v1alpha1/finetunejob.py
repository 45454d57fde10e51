"""The FineTuneJob resource: one declarative fine-tuning run."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints

from kubetune.api.base import CelRule, KubeModel
from kubetune.api.v1alpha1.common import Condition, LocalObjectRef, ObjectMeta, Sha256, Timestamp
from kubetune.api.v1alpha1.data import BaseModelRef, ContinualSpec, DatasetSpec, TokenizerSpec
from kubetune.api.v1alpha1.methods import Method
from kubetune.api.v1alpha1.objectives import PAIRWISE_PREFERENCE, Objective, SftObjective
from kubetune.api.v1alpha1.training import (
    CheckpointingSpec,
    DistributedSpec,
    EvaluationSpec,
    OutputSpec,
    ResourcesSpec,
    TrainingSpec,
)

Phase = Literal["Pending", "Queued", "Initializing", "Running", "Succeeded", "Failed", "Suspended"]
_PAIRWISE = "[" + ", ".join(f"'{t}'" for t in PAIRWISE_PREFERENCE) + "]"


class FineTuneJobSpec(KubeModel):
    """Desired state of a fine-tuning run. Immutable once started, except `suspend`."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            f"!(self.objective.type in {_PAIRWISE}) || self.dataset.format in ['auto', 'preference']",
            "objective dpo, ipo, orpo and reward need preference data: set dataset.format to preference "
            "(prompt/chosen/rejected) or auto",
        ),
        CelRule(
            "self.objective.type != 'kto' || self.dataset.format in ['auto', 'kto']",
            "objective kto needs labelled data: set dataset.format to kto (prompt/completion/label) or auto",
        ),
        CelRule(
            "self.objective.type != 'rlhf' || self.dataset.format in ['auto', 'prompt']",
            "objective rlhf samples completions for prompts: set dataset.format to prompt or auto",
        ),
        CelRule(
            "self.objective.type != 'sft' || !(self.dataset.format in ['preference', 'kto'])",
            "objective sft cannot use preference or kto data: choose objective dpo/ipo/orpo/kto, "
            "or a text, alpaca, sharegpt, messages or prompt dataset",
        ),
        CelRule(
            "!(self.method.type in ['qlora', 'auto']) || self.distributed.strategy != 'deepspeed' "
            "|| self.distributed.zeroStage < 3",
            "method qlora cannot be sharded with DeepSpeed ZeRO-3: use distributed.zeroStage 0..2 or strategy ddp",
        ),
    )

    base_model: BaseModelRef = Field(description="The model to fine-tune.")
    dataset: DatasetSpec = Field(description="Training and evaluation data, format and preparation.")
    tokenizer: TokenizerSpec = Field(default_factory=TokenizerSpec, description="Vocabulary and chat template.")
    method: Method = Field(
        description="What is trained: full, partial, lora, dora, qlora, adapter, prefix, prompt, ia3 or auto."
    )
    objective: Objective = Field(
        default_factory=lambda: SftObjective(type="sft"),
        description="How it is trained: sft (the default), dpo, ipo, kto, orpo, reward or rlhf.",
    )
    continual: ContinualSpec | None = Field(default=None, description="EWC, replay or LwF against forgetting.")
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="Optimization hyperparameters.")
    distributed: DistributedSpec = Field(default_factory=DistributedSpec, description="Parallelism and sharding.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="GPUs, nodes, placement, queue.")
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec, description="Eval suites and the gate.")
    checkpointing: CheckpointingSpec = Field(default_factory=CheckpointingSpec, description="Checkpoint and resume.")
    output: OutputSpec = Field(description="Artifact location and Adapter publishing.")
    image: Annotated[str, StringConstraints(max_length=512)] | None = Field(
        default=None, description="Trainer image override (default: the operator's configured image)."
    )
    suspend: bool = Field(default=False, description="Suspend (true) or resume (false) the training Job.")
    active_deadline_seconds: int | None = Field(
        default=None, ge=1, le=31_536_000, description="Fail the run after this many seconds."
    )
    backoff_limit: int = Field(default=3, ge=0, le=100, description="Retries for failures other than preemption.")


class ResolvedInputs(KubeModel):
    """What the inputs resolved to, so a run is reproducible."""

    base_model_revision: Annotated[str, StringConstraints(max_length=128)] | None = None
    dataset_digest: Sha256 | None = None


class Progress(KubeModel):
    """Live training progress, written by the trainer (field manager kubetune-trainer)."""

    step: int = Field(default=0, ge=0)
    total_steps: int = Field(default=0, ge=0)
    percent: int = Field(default=0, ge=0, le=100, description="step / totalSteps, for the printer column.")
    epoch: float = 0.0
    loss: float | None = None
    eval_loss: float | None = None
    learning_rate: float | None = None
    tokens_per_second: float | None = None
    eta_seconds: int | None = None
    updated_at: Timestamp | None = None


class TrainResult(KubeModel):
    """Final result, written by the trainer once artifacts are saved."""

    artifact_uri: Annotated[str, StringConstraints(max_length=1024)]
    sha256: Sha256
    size_bytes: int = Field(ge=0)
    metrics: Annotated[dict[Annotated[str, StringConstraints(max_length=128)], float], Field(max_length=64)] = Field(
        default_factory=dict
    )
    gate_passed: bool = True
    gate_message: Annotated[str, StringConstraints(max_length=1024)] | None = None
    base_model_revision: Annotated[str, StringConstraints(max_length=128)] | None = None
    dataset_digest: Sha256 | None = None
    prep_report: Annotated[dict[Annotated[str, StringConstraints(max_length=64)], int], Field(max_length=64)] = Field(
        default_factory=dict, description="Rows in, removed by reason, out."
    )
    method: Annotated[str, StringConstraints(max_length=32)] | None = Field(
        default=None, description="The method actually used (what auto resolved to)."
    )


class FineTuneJobStatus(KubeModel):
    """Observed state; the operator owns everything except progress and result."""

    phase: Phase = "Pending"
    conditions: Annotated[list[Condition], Field(max_length=16)] = Field(default_factory=list)
    observed_generation: int | None = None
    job_name: Annotated[str, StringConstraints(max_length=63)] | None = None
    attempts: int = 0
    start_time: Timestamp | None = None
    completion_time: Timestamp | None = None
    resolved: ResolvedInputs | None = None
    progress: Progress | None = None
    result: TrainResult | None = None
    adapter_ref: LocalObjectRef | None = None
    reason: Annotated[str, StringConstraints(max_length=128)] | None = None
    message: Annotated[str, StringConstraints(max_length=2048)] | None = None


class FineTuneJob(KubeModel):
    """A declarative fine-tuning run."""

    model_config = KubeModel.model_config | {"extra": "ignore"}

    api_version: Literal["kubetune.io/v1alpha1"] = "kubetune.io/v1alpha1"
    kind: Literal["FineTuneJob"] = "FineTuneJob"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: FineTuneJobSpec
    status: FineTuneJobStatus | None = None
