"""The Adapter resource: a published, versioned set of trained (or merged) adapter weights."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints

from kubetune.api.base import CelRule, KubeModel
from kubetune.api.v1alpha1.common import Condition, ObjectMeta, ResourceName, Sha256
from kubetune.api.v1alpha1.constraints import ConstitutionLineage
from kubetune.api.v1alpha1.methods import QuantizationSettings, TrainedMethod

ArtifactFormat = Literal["peft-safetensors", "merged-safetensors", "full-safetensors"]
Combination = Literal["linear", "cat", "ties", "dare_linear", "dare_ties", "svd"]
MetricMap = Annotated[dict[Annotated[str, StringConstraints(max_length=128)], float], Field(max_length=64)]


class AdapterBaseModel(KubeModel):
    """The exact base the adapter was trained on (revision resolved, not a branch)."""

    uri: Annotated[str, StringConstraints(max_length=512)] = Field(description="Base model URI.")
    revision: Annotated[str, StringConstraints(max_length=128)] = Field(
        default="main", description="Resolved revision (commit or digest)."
    )


class AdapterMethodSummary(KubeModel):
    """How the adapter was trained, enough to load and merge it."""

    type: TrainedMethod = Field(description="Method that produced the weights.")
    rank: int | None = Field(default=None, ge=1, le=1024, description="LoRA rank, for lora/dora/qlora.")
    alpha: float | None = Field(default=None, gt=0, description="LoRA alpha.")
    target_modules: Annotated[list[Annotated[str, StringConstraints(max_length=128)]], Field(max_length=64)] = Field(
        default_factory=list, description="Adapted modules."
    )
    quantization: QuantizationSettings | None = Field(default=None, description="QLoRA quantization of the base.")


class Artifact(KubeModel):
    """Where the weights are and how to check them."""

    uri: Annotated[str, StringConstraints(max_length=1024)] = Field(description="Directory with the weights.")
    format: ArtifactFormat = Field(default="peft-safetensors", description="Layout of the artifact.")
    sha256: Sha256 | None = Field(default=None, description="Digest over the artifact files (manifest order).")
    size_bytes: int | None = Field(default=None, ge=0, description="Total size in bytes.")


class JobRef(KubeModel):
    """The FineTuneJob that produced the adapter."""

    name: ResourceName = Field(description="FineTuneJob name.")
    uid: Annotated[str, StringConstraints(max_length=64)] | None = Field(default=None, description="FineTuneJob uid.")


class AdapterSource(KubeModel):
    """Lineage: which run, on which data, with which objective."""

    fine_tune_job: JobRef | None = Field(default=None, description="The producing FineTuneJob.")
    dataset_digest: Sha256 | None = Field(default=None, description="Digest of the prepared training data.")
    objective: Annotated[str, StringConstraints(max_length=32)] | None = Field(default=None, description="Objective.")
    constitution: ConstitutionLineage | None = Field(
        default=None, description="Set when the training data was synthesised by dataset.constitution (RLAIF)."
    )


class GateOutcome(KubeModel):
    """The producing run's evaluation gate, kept with the weights so the verdict outlives the FineTuneJob."""

    passed: bool = Field(description="Whether the adapter met every threshold of the run's evaluation.gate.")
    message: Annotated[str, StringConstraints(max_length=1024)] | None = Field(
        default=None, description="The thresholds it missed, with the measured scores."
    )
    publish_unvalidated: bool = Field(
        default=False, description="Ready despite a failed gate (the run set evaluation.gate.publishUnvalidated)."
    )


class MergeSource(KubeModel):
    """One adapter to combine, with its weight."""

    name: ResourceName = Field(description="Adapter name in the same namespace.")
    weight: float = Field(default=1.0, ge=-10, le=10, description="Weight of this adapter in the combination.")


class MergeSpec(KubeModel):
    """Compose several adapters of the same base model into one (PEFT weighted adapters)."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "self.sources.all(a, self.sources.exists_one(b, b.name == a.name))",
            "merge.sources lists an adapter twice: each source name must be unique",
        ),
        CelRule(
            "!(self.combination in ['ties', 'dare_linear', 'dare_ties']) || has(self.density)",
            "merge.combination ties, dare_linear and dare_ties need merge.density (0 < density <= 1)",
        ),
        CelRule(
            "!has(self.density) || self.combination in ['ties', 'dare_linear', 'dare_ties']",
            "merge.density only applies to ties, dare_linear and dare_ties: remove it or change merge.combination",
        ),
    )

    sources: Annotated[list[MergeSource], Field(min_length=2, max_length=16)] = Field(
        description="At least two Adapters that share the base model."
    )
    combination: Combination = Field(default="linear", description="linear, cat, ties, dare_linear, dare_ties or svd.")
    density: float | None = Field(default=None, gt=0, le=1, description="Fraction of weights kept (ties/dare).")


class AdapterSpec(KubeModel):
    """A trained adapter (artifact) or a composition of others (merge)."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "has(self.artifact) != has(self.merge)",
            "set exactly one of artifact (a trained adapter) or merge (a composition of other Adapters)",
        ),
    )

    base_model: AdapterBaseModel = Field(description="The base model the weights apply to.")
    method: AdapterMethodSummary | None = Field(default=None, description="How the weights were trained.")
    artifact: Artifact | None = Field(default=None, description="The weights (absent for merge until produced).")
    source: AdapterSource | None = Field(default=None, description="Lineage.")
    metrics: MetricMap = Field(default_factory=dict, description="Evaluation metrics of the producing run.")
    gate: GateOutcome | None = Field(
        default=None,
        description="Outcome of the producing run's evaluation gate. An adapter that failed it is not Ready "
        "(reason GateFailed) unless publishUnvalidated is set; absent for merged or hand-made adapters.",
    )
    merge: MergeSpec | None = Field(default=None, description="Build this adapter by combining others.")


class AdapterStatus(KubeModel):
    """Observed state of an Adapter."""

    phase: Literal["Pending", "Merging", "Ready", "Failed"] = Field(
        default="Pending", description="Pending, Merging, Ready or Failed."
    )
    conditions: Annotated[list[Condition], Field(max_length=16)] = Field(
        default_factory=list, description="Ready, and Validated (the producing run passed its eval gate)."
    )
    observed_generation: int | None = Field(
        default=None, description="metadata.generation the operator last reconciled."
    )
    artifact: Artifact | None = Field(default=None, description="The merged weights, written by the merge Job.")
    job_name: Annotated[str, StringConstraints(max_length=63)] | None = Field(
        default=None, description="The merge Job, for a merge Adapter."
    )
    message: Annotated[str, StringConstraints(max_length=2048)] | None = Field(
        default=None, description="What is happening, and for a blocked or failed Adapter what to change."
    )


class Adapter(KubeModel):
    """A published adapter."""

    model_config = KubeModel.model_config | {"extra": "ignore"}

    api_version: Literal["kubetune.io/v1alpha1"] = "kubetune.io/v1alpha1"
    kind: Literal["Adapter"] = "Adapter"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: AdapterSpec
    status: AdapterStatus | None = None
