"""ScoreRequest: what `python -m kubetune_trainer.score` evaluates, and the shape of its answer.

Evaluation suites run inside a training job, on the model it just trained. The code labs also need
to score models no job trains in that moment: merged adapters, intermediate checkpoints, several
runs against one reference. The lab runner (operator package) writes this request; the trainer
image scores it with the same log-likelihood code as the suites and writes a `ScoreResult`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from kubetune.api.base import KubeModel

LocalPath = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=128)]
ScoreMetric = Literal["loss", "accuracy", "preference"]
"""loss: mean NLL per target token (prompt/completion, text or chat rows); accuracy: multiple choice by
log-likelihood; preference: on (prompt, chosen, rejected) rows, the DPO implicit reward against the
base, reported as `NAME.accuracy` (share of pairs whose log-ratio margin is positive, ties half) and
`NAME.margin` (mean margin in nats, before any beta)."""


class ScoredModel(KubeModel):
    name: Name
    artifact: LocalPath | None = Field(
        default=None,
        description="A trained or merged artifact, or a checkpoint directory; none scores the base model itself.",
    )


class ScoreSuite(KubeModel):
    name: Name
    metric: ScoreMetric
    data: LocalPath = Field(description="A local JSONL (or any dataset path the trainer reads).")


class ScoreRequest(KubeModel):
    api_version: Literal["kubetune.io/v1alpha1"] = "kubetune.io/v1alpha1"
    kind: Literal["ScoreRequest"] = "ScoreRequest"
    base_model: LocalPath = Field(description="URI of the base model every artifact was trained from (as in a job).")
    cache_dir: LocalPath = Field(description="Where the base model is cached when it must be fetched.")
    pvc_root: LocalPath = Field(description="The directory pvc://CLAIM/PATH URIs resolve under.")
    models: Annotated[list[ScoredModel], Field(min_length=1)]
    suites: Annotated[list[ScoreSuite], Field(min_length=1)]
    max_length: int = Field(default=512, ge=16, le=131072)


class ScoreResult(KubeModel):
    api_version: Literal["kubetune.io/v1alpha1"] = "kubetune.io/v1alpha1"
    kind: Literal["ScoreResult"] = "ScoreResult"
    scores: dict[Name, dict[str, float]] = Field(description="Model name -> `SUITE.METRIC` -> value.")
