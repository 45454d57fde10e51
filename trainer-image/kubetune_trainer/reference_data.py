"""Datasets the spec names outside `dataset` (EWC reference, replay, evaluation suites), loaded alike.

They go through the same URI resolution, cache and format normalisation as the training data, so a
replay set or a suite can be any format the trainer reads. Prep is not applied here: EWC references
and evaluation suites are curated sets whose rows must stay what the user chose, while replay rows,
which are trained on, are prepped by `continual` like the training data.
"""

from __future__ import annotations

from typing import Any

from kubetune_trainer.context import RunContext
from kubetune_trainer.data.formats import FormatSetting, normalize
from kubetune_trainer.data.load import load_dataset_uri


def load_reference(ctx: RunContext, uri: str, fmt: FormatSetting = "auto", *, raw: bool = False) -> Any:
    """Load `uri` through the run's cache; normalised to TRL columns unless `raw` (e.g. multiple choice)."""
    loaded = load_dataset_uri(
        uri, cache_dir=ctx.paths.cache_dir, pvc_root=ctx.paths.pvc_root, token_env=ctx.config.runtime.model_token_env
    )
    return loaded.dataset if raw else normalize(loaded.dataset, fmt).dataset
