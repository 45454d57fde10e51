"""The artifact manifest `kubetune.json`: what a published artifact is, how it was made, what it holds.

The trainer writes it last into every artifact it publishes (a training run or a merge), so a
prefix without it is absent; readers (a merge checking that its sources share the base model, RLHF
loading a reward model) validate it with this same model. Training and merge manifests share one
shape: the fields of the other mode are left out, while the nulls inside a section (a revision not
known, a gate without a message) are kept.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from kubetune.api.base import KubeModel

MANIFEST_FILE = "kubetune.json"
TRAINING_LOG_FILE = "training_log.jsonl"
"""Every logged step of a training run, one JSON object a line (numbers only), next to the weights."""
ManifestFormat = Literal["peft-safetensors", "safetensors"]
"""peft-safetensors: a PEFT adapter (needs its base model); safetensors: a complete model."""


class ManifestModel(KubeModel):
    """Tolerates fields it does not know, so an artifact written by a newer trainer still reads."""

    model_config = KubeModel.model_config | {"extra": "ignore"}


class ManifestBaseModel(ManifestModel):
    uri: str
    revision: str | None = None
    """The resolved revision the weights were trained on (hub commit or local digest)."""


class ManifestMethod(ManifestModel):
    requested: str
    resolved: str
    """What `auto` resolved to (equal to `requested` otherwise)."""
    settings: dict[str, Any] = Field(default_factory=dict)
    """The method block as the job spelled it (wire form)."""


class ManifestDataset(ManifestModel):
    digest: str | None = None
    prep_report: dict[str, Any] = Field(default_factory=dict)


class ManifestTokenizer(ManifestModel):
    added_token_ids: list[int] = Field(default_factory=list)


class ManifestGate(ManifestModel):
    passed: bool = True
    message: str | None = None


class ManifestMergeSource(ManifestModel):
    name: str
    weight: float
    uri: str


class ManifestMerge(ManifestModel):
    sources: list[ManifestMergeSource]
    combination: str
    density: float | None = None


class FileDigest(ManifestModel):
    sha256: str
    size: int


class ArtifactManifest(ManifestModel):
    """`kubetune.json`; `method` .. `notes` describe a training run, `merge` a composition of adapters."""

    api_version: Literal["kubetune.io/v1alpha1"] = "kubetune.io/v1alpha1"
    kind: Literal["Artifact"] = "Artifact"
    name: str
    format: ManifestFormat
    base_model: ManifestBaseModel
    method: ManifestMethod | None = None
    objective: dict[str, Any] | None = None
    """The objective block of the job (wire form)."""
    precision: str | None = None
    seed: int | None = None
    """`training.seed` of the run: with the same spec, data and hardware it reproduces the weights."""
    dataset: ManifestDataset | None = None
    tokenizer: ManifestTokenizer | None = None
    metrics: dict[str, float] | None = None
    evaluations: dict[str, Any] | None = None
    """lm-evaluation-harness suites by name: the harness's per-task results (every metric, stderr, n-shot)."""
    gate: ManifestGate | None = None
    merged: bool | None = None
    """A `merged/` directory holds full weights with the adapter folded in."""
    notes: list[str] | None = None
    merge: ManifestMerge | None = None
    libraries: dict[str, str] = Field(default_factory=dict)
    files: dict[str, FileDigest] = Field(default_factory=dict)
    """Every other file of the artifact by relative path."""
    config: dict[str, Any] = Field(default_factory=dict)
    """The TrainerConfig of the run (wire form)."""

    def to_document(self) -> dict[str, Any]:
        """The JSON document: sections of the other mode left out, nulls inside a section kept."""
        return {k: v for k, v in self.model_dump(mode="json", by_alias=True).items() if v is not None}
