"""Evaluation split: `dataset.eval.fraction` holds out part of the prepared training data.

Run it after prep, so deduplication has already removed copies that would otherwise sit on both
sides of the split and inflate eval scores. The split is seeded, so a restarted pod (resume) sees
the same train and eval rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubetune_trainer.errors import DataConfigError, EmptyDataError

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = ["holdout"]


def holdout(dataset: Dataset, fraction: float, seed: int = 42) -> tuple[Dataset, Dataset]:
    """(train, eval): a seeded random `fraction` of rows (at least one) for eval, the rest for training."""
    if not 0 < fraction < 1:
        raise DataConfigError(f"dataset.eval.fraction must be between 0 and 1 (exclusive), got {fraction}")
    eval_rows = max(1, round(len(dataset) * fraction))
    if eval_rows >= len(dataset):
        raise EmptyDataError(
            f"dataset.eval.fraction {fraction} of {len(dataset)} rows leaves no training rows; "
            "use more data, a smaller fraction, or a separate dataset.eval.uri"
        )
    split = dataset.train_test_split(test_size=eval_rows, shuffle=True, seed=seed)
    return split["train"], split["test"]
