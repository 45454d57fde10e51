"""Small value types shared by several resources (URIs, references, conditions, metadata)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from kubetune.api.base import KubeModel

_HF_REPO = r"[A-Za-z0-9][\w.\-]*/[\w.\-]+"
_STORAGE = r"(s3|pvc)://[a-z0-9][a-z0-9.\-]*(/\S*)?|file:///\S*"
MODEL_URI_PATTERN = rf"^(hf://{_HF_REPO}|{_STORAGE})$"
DATASET_URI_PATTERN = rf"^(hf://(datasets/)?{_HF_REPO}|{_STORAGE})$"
"""Datasets follow huggingface_hub's `hf://datasets/ORG/NAME`; the short `hf://ORG/NAME` also names a dataset."""
OUTPUT_URI_PATTERN = rf"^(hf://{_HF_REPO}|{_STORAGE})$"
STORAGE_URI_PATTERN = rf"^({_STORAGE})$"
"""A folder kubetune writes many files into over time (checkpoints): a claim, a bucket or a local path, not the Hub."""

ModelUri = Annotated[str, StringConstraints(max_length=512, pattern=MODEL_URI_PATTERN)]
DatasetUri = Annotated[str, StringConstraints(max_length=512, pattern=DATASET_URI_PATTERN)]
OutputUri = Annotated[str, StringConstraints(max_length=512, pattern=OUTPUT_URI_PATTERN)]
StorageUri = Annotated[str, StringConstraints(max_length=512, pattern=STORAGE_URI_PATTERN)]
ResourceName = Annotated[
    str,
    StringConstraints(max_length=253, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"),
]
ModuleName = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Quantity = Annotated[str, StringConstraints(max_length=32, pattern=r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$")]
Timestamp = Annotated[str, StringConstraints(max_length=64)]
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
"""What the API server takes as a Secret key: a Job whose secretKeyRef names anything else is refused."""
Sha256 = Annotated[str, StringConstraints(max_length=71, pattern=r"^(sha256:)?[0-9a-f]{64}$")]


class SecretKeyRef(KubeModel):
    """Where a credential lives; the operator passes it to the trainer as an env var, never in status."""

    name: ResourceName = Field(description="Name of a Secret in the FineTuneJob's namespace.")
    key: Annotated[str, StringConstraints(max_length=253, pattern=SECRET_KEY_PATTERN)] = Field(
        default="token", description="Key inside the Secret that holds the credential (letters, digits, -, _ and .)."
    )


class SecretRef(KubeModel):
    """A whole Secret whose keys the trainer receives as environment variables of the same names."""

    name: ResourceName = Field(description="Name of a Secret in the FineTuneJob's namespace.")


class LocalObjectRef(KubeModel):
    """Reference to another kubetune object in the same namespace."""

    name: ResourceName = Field(description="Name of the object in the same namespace.")


class DataSource(KubeModel):
    """A dataset location: JSONL, Parquet or a saved HF `datasets` directory."""

    uri: DatasetUri = Field(
        description="hf://datasets/ORG/NAME, s3://BUCKET/KEY, pvc://CLAIM/PATH or file:///PATH "
        "(JSONL, Parquet or a datasets directory)."
    )


class Condition(KubeModel):
    """Standard Kubernetes condition (metav1.Condition shape)."""

    type: Annotated[str, StringConstraints(max_length=64)] = Field(description="Condition type, e.g. Ready.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: Annotated[str, StringConstraints(max_length=128)] = Field(
        default="", description="CamelCase machine-readable reason."
    )
    message: Annotated[str, StringConstraints(max_length=2048)] = Field(
        default="", description="Human-readable, actionable explanation."
    )
    last_transition_time: Timestamp | None = Field(default=None, description="When status last changed.")
    observed_generation: int | None = Field(default=None, description="Generation this condition reflects.")


class ObjectMeta(KubeModel):
    """The part of metadata kubetune reads; everything else passes through untouched."""

    model_config = KubeModel.model_config | {"extra": "allow"}

    name: Annotated[str, StringConstraints(max_length=253)] | None = None
    namespace: Annotated[str, StringConstraints(max_length=63)] | None = None
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
