"""Held-out evaluation split: sizes, determinism, no overlap, clear errors."""

from __future__ import annotations

import pytest
from datasets import Dataset

from kubetune_trainer.data.splits import holdout
from kubetune_trainer.errors import DataConfigError, EmptyDataError

pytestmark = pytest.mark.unit


def test_holdout_is_seeded_and_disjoint() -> None:
    data = Dataset.from_dict({"text": [f"row {i}" for i in range(100)]})
    train, evaluation = holdout(data, 0.05, seed=7)
    assert (len(train), len(evaluation)) == (95, 5)
    assert not set(train["text"]) & set(evaluation["text"])
    assert set(train["text"]) | set(evaluation["text"]) == set(data["text"])
    assert holdout(data, 0.05, seed=7)[1]["text"] == evaluation["text"]
    assert holdout(data, 0.05, seed=8)[1]["text"] != evaluation["text"]


def test_tiny_fraction_still_holds_out_one_row() -> None:
    train, evaluation = holdout(Dataset.from_dict({"text": ["a", "b", "c"]}), 0.01)
    assert (len(train), len(evaluation)) == (2, 1)


def test_nothing_left_to_train_on() -> None:
    with pytest.raises(EmptyDataError, match=r"fraction 0.5 of 1 rows leaves no training rows"):
        holdout(Dataset.from_dict({"text": ["only"]}), 0.5)
    with pytest.raises(DataConfigError, match="between 0 and 1"):
        holdout(Dataset.from_dict({"text": ["a", "b"]}), 1.0)
