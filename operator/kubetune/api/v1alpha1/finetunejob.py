"""The FineTuneJob resource: one declarative fine-tuning run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, StringConstraints, model_validator

from kubetune.api.base import CelRule, KubeModel
from kubetune.api.v1alpha1.common import (
    Condition,
    LocalObjectRef,
    ObjectMeta,
    SecretKeyRef,
    SecretRef,
    Sha256,
    Timestamp,
)
from kubetune.api.v1alpha1.constraints import CONSTITUTION_OBJECTIVES, ConstraintProgress
from kubetune.api.v1alpha1.data import BaseModelRef, ContinualSpec, DatasetSpec, TokenizerSpec
from kubetune.api.v1alpha1.methods import Method, TrainedMethod
from kubetune.api.v1alpha1.objectives import PACKING_OBJECTIVES, PAIRWISE_PREFERENCE, Objective, SftObjective
from kubetune.api.v1alpha1.preflight import PreflightReport, PreflightSpec
from kubetune.api.v1alpha1.tracking import TrackingSpec
from kubetune.api.v1alpha1.training import (
    CheckpointingSpec,
    DistributedSpec,
    EvaluationSpec,
    OutputSpec,
    ResourcesSpec,
    TrainingSpec,
)

Phase = Literal["Pending", "Queued", "Initializing", "Running", "Succeeded", "Failed", "Suspended"]


def _cel_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


_PAIRWISE = _cel_list(PAIRWISE_PREFERENCE)


class FineTuneJobSpec(KubeModel):
    """Desired state of a fine-tuning run. Immutable once started, except `suspend`."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            f"has(self.dataset.constitution) || !(self.objective.type in {_PAIRWISE}) || "
            "self.dataset.format in ['auto', 'preference']",
            "objective dpo, ipo, orpo and reward need preference data: set dataset.format to preference "
            "(prompt/chosen/rejected) or auto",
        ),
        CelRule(
            "has(self.dataset.constitution) || self.objective.type != 'kto' || self.dataset.format in ['auto', 'kto']",
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
            "!has(self.dataset.constitution) || (self.objective.type in "
            f"{list(CONSTITUTION_OBJECTIVES)} && self.dataset.format in ['auto', 'prompt'])",
            "dataset.constitution turns prompts into SFT rows or preference pairs: use dataset.format prompt (or "
            "auto) with objective sft, dpo, ipo, orpo or kto",
        ),
        CelRule(
            "!(self.method.type in ['qlora', 'auto']) || self.distributed.strategy != 'deepspeed' "
            "|| self.distributed.zeroStage < 3",
            "method qlora cannot be sharded with DeepSpeed ZeRO-3: use distributed.zeroStage 0..2 or strategy ddp",
        ),
        CelRule(
            f"!self.dataset.prep.packing || self.objective.type in {_cel_list(PACKING_OBJECTIVES)}",
            f"dataset.prep.packing applies to objective {', '.join(PACKING_OBJECTIVES)} only (the TRL trainers of "
            "the others do not pack): set packing: false",
        ),
        CelRule(
            "!self.training.ligerKernel || self.resources.gpus >= 1",
            "training.ligerKernel needs GPUs (Liger's kernels are written in Triton): set resources.gpus >= 1 "
            "or ligerKernel: false",
        ),
        CelRule(
            "!self.output.uri.startsWith('hf://') || has(self.checkpointing.storage.uri)",
            "output.uri hf://ORG/NAME receives only the finished artifact: set checkpointing.storage.uri "
            "(s3://BUCKET/PREFIX or pvc://CLAIM/PATH) for the checkpoints a replacement pod resumes from",
        ),
        CelRule(
            "!has(self.training.neftuneNoiseAlpha) || self.objective.type != 'rlhf'",
            "training.neftuneNoiseAlpha cannot be used with objective rlhf: the noise would also perturb the "
            "completions it samples; remove neftuneNoiseAlpha",
        ),
        CelRule(
            "!has(self.preflight) || !has(self.preflight.gpuMemory) || self.resources.gpus > 0",
            "preflight.gpuMemory is the memory of one GPU: set resources.gpus > 0, or remove it (a CPU run is "
            "checked against the trainer's host memory budget)",
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
    preflight: PreflightSpec = Field(
        default_factory=PreflightSpec,
        description="Checks run in a CPU pod before the GPU Job is created, and what a memory estimate miss does.",
    )
    output: OutputSpec = Field(description="Artifact location and Adapter publishing.")
    tracking: TrackingSpec | None = Field(default=None, description="TensorBoard and MLflow experiment tracking.")
    image: Annotated[str, StringConstraints(max_length=512)] | None = Field(
        default=None, description="Trainer image override (default: the operator's configured image)."
    )
    service_account_annotations: Annotated[
        dict[Annotated[str, StringConstraints(max_length=253)], Annotated[str, StringConstraints(max_length=1024)]],
        Field(max_length=16),
    ] = Field(
        default_factory=dict,
        description="Annotations on this run's ServiceAccount, over the operator's per-namespace ones: its cloud "
        "identity, e.g. eks.amazonaws.com/role-arn (IRSA) or iam.gke.io/gcp-service-account (Workload Identity).",
    )
    suspend: bool = Field(default=False, description="Suspend (true) or resume (false) the training Job.")
    active_deadline_seconds: int | None = Field(
        default=None, ge=1, le=31_536_000, description="Fail the run after this many seconds."
    )
    backoff_limit: int = Field(default=3, ge=0, le=100, description="Retries for failures other than preemption.")

    def secret_names(self) -> tuple[str, ...]:
        """Every Secret the run reads (base model, output and MLflow credentials), in spec order."""
        refs: list[SecretKeyRef | SecretRef | None] = [
            self.base_model.credentials_secret_ref,
            self.output.credentials_secret_ref,
        ]
        if self.tracking is not None and self.tracking.mlflow is not None:
            refs.append(self.tracking.mlflow.credentials_secret_ref)
        return tuple(dict.fromkeys(ref.name for ref in refs if ref is not None))


AdapterRole = Literal["reward model", "cost model", "refusal judge", "constitution writer"]


@dataclass(frozen=True)
class AdapterInput:
    """An Adapter the run reads. The trainer cannot read Adapters, so the operator resolves each one to its
    artifact URI (trainer.json `adapters`) and holds the run back until all of them are Ready."""

    name: str
    field: str
    """Where the spec names it, for messages: e.g. objective.rlhf.constraints[0].adapterRef."""
    role: AdapterRole

    @property
    def scores(self) -> bool:
        """Reward model, cost model and refusal judge score text with the one-logit head objective reward trains;
        a constitution writer generates text, so it is any other (language-model) run."""
        return self.role != "constitution writer"


def input_adapters(spec: FineTuneJobSpec) -> tuple[AdapterInput, ...]:
    """Every Adapter reference of the spec, in spec order."""
    found: list[AdapterInput] = []
    rlhf = getattr(spec.objective, "rlhf", None)
    if rlhf is not None:
        if rlhf.reward.adapter_ref is not None:
            found.append(AdapterInput(rlhf.reward.adapter_ref.name, "objective.rlhf.reward.adapterRef", "reward model"))
        for index, constraint in enumerate(rlhf.constraints):
            if constraint.adapter_ref is not None:
                field = f"objective.rlhf.constraints[{index}].adapterRef"
                found.append(AdapterInput(constraint.adapter_ref.name, field, "cost model"))
    for index, suite in enumerate(spec.evaluation.suites):
        if suite.refusal is not None and suite.refusal.adapter_ref is not None:
            field = f"evaluation.suites[{index}].refusal.adapterRef"
            found.append(AdapterInput(suite.refusal.adapter_ref.name, field, "refusal judge"))
    constitution = spec.dataset.constitution
    if constitution is not None and constitution.adapter_ref is not None:
        found.append(
            AdapterInput(constitution.adapter_ref.name, "dataset.constitution.adapterRef", "constitution writer")
        )
    return tuple(found)


class ResolvedInputs(KubeModel):
    """What the inputs resolved to, so a run is reproducible."""

    base_model_revision: Annotated[str, StringConstraints(max_length=128)] | None = Field(
        default=None, description="Commit or digest the base model revision resolved to."
    )
    dataset_digest: Sha256 | None = Field(default=None, description="sha256 of the prepared training data.")


LOSS_DIGITS = 4
"""Significant digits of `progress.lossRounded`: enough to see a trend, short enough for `kubectl get`."""


DERIVED_KEYS = frozenset({"percent", "summary", "lossRounded", "loss_rounded"})


def _first(data: dict[str, Any], *keys: str) -> Any:
    return next((data[k] for k in keys if data.get(k) is not None), None)


class Progress(KubeModel):
    """Live training progress, written by the trainer (field manager kubetune-trainer).

    `percent`, `summary` and `lossRounded` are derived from step, totalSteps and loss whenever a Progress
    is built, so the printer columns read well (`42% (420/1000 steps)`, `1.235`) while `loss` keeps full
    precision and the three can never disagree with the numbers they show.
    """

    step: int = Field(default=0, ge=0, description="Optimizer steps done.")
    total_steps: int = Field(default=0, ge=0, description="Optimizer steps planned (epochs x steps per epoch).")
    percent: int = Field(default=0, ge=0, le=100, description="step / totalSteps in percent.")
    summary: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="Progress with its unit for the printer column, e.g. 42% (420/1000 steps)."
    )
    epoch: float = Field(default=0.0, description="Fractional epoch reached.")
    loss: float | None = Field(default=None, description="Last logged training loss.")
    loss_rounded: float | None = Field(
        default=None, description=f"loss to {LOSS_DIGITS} significant digits, for the printer column."
    )
    eval_loss: float | None = Field(default=None, description="Last evaluation loss on the eval split.")
    learning_rate: float | None = Field(default=None, description="Current learning rate.")
    tokens_per_second: float | None = Field(default=None, description="Input tokens per second since the start.")
    eta_seconds: int | None = Field(default=None, description="Estimated seconds until the last step.")
    updated_at: Timestamp | None = Field(default=None, description="When the trainer last wrote progress.")
    resumed_from_step: int | None = Field(
        default=None,
        ge=0,
        description="Step of the checkpoint the current trainer pod resumed from (unset: it started at step 0).",
    )
    checkpoint_step: int | None = Field(
        default=None,
        ge=0,
        description="Step of the newest complete checkpoint on durable storage: where a replacement pod resumes.",
    )
    constraints: Annotated[list[ConstraintProgress], Field(max_length=8)] | None = Field(
        default=None,
        description="objective.rlhf.constraints: each constraint's mean cost, Lagrange multiplier and violation "
        "rate at the last logged step (the same signals as the kubetune_trainer_constraint gauge).",
    )

    @model_validator(mode="before")
    @classmethod
    def _derive_display_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        step = _first(data, "step") or 0
        total = _first(data, "totalSteps", "total_steps") or 0
        loss = _first(data, "loss")
        derived = {k: v for k, v in data.items() if k not in DERIVED_KEYS}
        percent = min(100, int(100 * step / total)) if total else 0
        derived["percent"] = percent
        derived["summary"] = f"{percent}% ({step}/{total} steps)" if total else None
        finite = isinstance(loss, int | float) and math.isfinite(loss)
        derived["lossRounded"] = float(f"{loss:.{LOSS_DIGITS}g}") if finite else None
        return derived


class TrainResult(KubeModel):
    """Final result, written by the trainer once artifacts are saved."""

    artifact_uri: Annotated[str, StringConstraints(max_length=1024)] = Field(
        description="Where the trained weights were written."
    )
    sha256: Sha256 = Field(description="Digest over the artifact files (manifest order).")
    size_bytes: int = Field(ge=0, description="Total size of the artifact in bytes.")
    metrics: Annotated[dict[Annotated[str, StringConstraints(max_length=128)], float], Field(max_length=64)] = Field(
        default_factory=dict, description="Final evaluation metrics by suite (e.g. heldout.perplexity)."
    )
    gate_passed: bool = Field(default=True, description="Whether evaluation.gate accepted the run.")
    gate_message: Annotated[str, StringConstraints(max_length=1024)] | None = Field(
        default=None, description="Why the gate passed or failed."
    )
    base_model_revision: Annotated[str, StringConstraints(max_length=128)] | None = Field(
        default=None, description="Commit or digest of the base model actually loaded."
    )
    dataset_digest: Sha256 | None = Field(default=None, description="sha256 of the prepared training data.")
    prep_report: Annotated[dict[Annotated[str, StringConstraints(max_length=64)], int], Field(max_length=64)] = Field(
        default_factory=dict, description="Rows in, removed by reason, out."
    )
    method: TrainedMethod | None = Field(default=None, description="The method actually used (what auto resolved to).")


class FineTuneJobStatus(KubeModel):
    """Observed state; the operator owns everything except progress and result."""

    phase: Phase = Field(
        default="Pending",
        description="Pending, Queued, Initializing, Running, Succeeded, Failed or Suspended; reason says why.",
    )
    conditions: Annotated[list[Condition], Field(max_length=16)] = Field(
        default_factory=list,
        description="Ready, Reconciling, Stalled, Succeeded, Failed, Suspended, PreflightPassed and Validated (the "
        "eval gate).",
    )
    observed_generation: int | None = Field(
        default=None, description="metadata.generation the operator last reconciled."
    )
    job_name: Annotated[str, StringConstraints(max_length=63)] | None = Field(
        default=None, description="The batch/v1 Job running the trainer."
    )
    attempts: int = Field(
        default=0,
        description="Tries so far: failures that count against backoffLimit plus the current try (a multi-node "
        "try is one pod per node); preemption, eviction and suspension do not count.",
    )
    start_time: Timestamp | None = Field(
        default=None, description="When the run first reached Running (spec is frozen from then on)."
    )
    completion_time: Timestamp | None = Field(default=None, description="When the run succeeded or failed.")
    resolved: ResolvedInputs | None = Field(default=None, description="What the inputs resolved to.")
    progress: Progress | None = Field(default=None, description="Live progress, written by the trainer.")
    result: TrainResult | None = Field(default=None, description="Artifact and metrics, written by the trainer.")
    preflight: PreflightReport | None = Field(
        default=None,
        description="What the preflight pod found (method, memory estimate) for the spec in specDigest; the GPU Job "
        "is created only after it passed.",
    )
    adapter_ref: LocalObjectRef | None = Field(default=None, description="The Adapter published from this run.")
    reason: Annotated[str, StringConstraints(max_length=128)] | None = Field(
        default=None, description="CamelCase reason of the phase, e.g. SecretNotFound, Training, OOMKilled."
    )
    message: Annotated[str, StringConstraints(max_length=2048)] | None = Field(
        default=None, description="What is happening, and for a blocked or failed run what to change."
    )


class FineTuneJob(KubeModel):
    """A declarative fine-tuning run."""

    model_config = KubeModel.model_config | {"extra": "ignore"}

    api_version: Literal["kubetune.io/v1alpha1"] = "kubetune.io/v1alpha1"
    kind: Literal["FineTuneJob"] = "FineTuneJob"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: FineTuneJobSpec
    status: FineTuneJobStatus | None = None
