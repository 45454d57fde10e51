"""Replay (rehearsal): mix a fraction of an earlier dataset into the training set.

`fraction` is relative to the training rows: 0.1 on 1000 rows adds 100 replay rows (drawn without
replacement while the replay set lasts, then repeated), and the mixture is shuffled with the run's
seed so every epoch interleaves old and new data. The replay set must normalise to the same columns
as the training data, because one trainer consumes both.
"""

from __future__ import annotations

from typing import Any

from kubetune_trainer.errors import DataFormatError


def replay_count(train_rows: int, fraction: float) -> int:
    return round(train_rows * fraction)


def mix(train: Any, replay: Any, *, fraction: float, seed: int) -> Any:
    """`train` plus `round(fraction * len(train))` rows of `replay`, shuffled."""
    from datasets import concatenate_datasets

    missing = sorted(set(train.column_names) - set(replay.column_names))
    if missing:
        raise DataFormatError(
            f"continual.replay.dataset lacks the training data's columns {missing} "
            f"(has {sorted(replay.column_names)}); replay data must be in the same format as dataset.train"
        )
    if len(replay) == 0:
        raise DataFormatError("continual.replay.dataset is empty")
    wanted = replay_count(len(train), fraction)
    if wanted == 0:
        return train
    shuffled = replay.shuffle(seed=seed).select_columns(train.column_names)
    repeats = [shuffled] * (wanted // len(shuffled)) + [shuffled.select(range(wanted % len(shuffled)))]
    drawn = concatenate_datasets(repeats).cast(train.features)
    return concatenate_datasets([train, drawn]).shuffle(seed=seed)
