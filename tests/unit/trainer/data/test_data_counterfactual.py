"""Counterfactual augmentation: both directions, whole words, case kept, twins counted."""

from __future__ import annotations

import pytest
from datasets import Dataset

from kubetune.api.v1alpha1.constraints import CounterfactualAugmentation
from kubetune_trainer.data.counterfactual import TermSwapper, augment

pytestmark = pytest.mark.unit

PAIRS = [["he", "she"], ["him", "her"]]


def test_swap_goes_both_ways_on_whole_words_and_keeps_case() -> None:
    swapper = TermSwapper(PAIRS)
    assert swapper.swap("He told her that she saw him.") == ("She told him that he saw her.", 4)
    assert swapper.swap("HE said: the shed, hers, theme") == ("SHE said: the shed, hers, theme", 1)
    assert swapper.swap("nothing here") == ("nothing here", 0)


def test_a_term_in_two_pairs_is_refused_whatever_its_case() -> None:
    with pytest.raises(ValueError, match=r"only one pair.*'she' appears twice"):
        CounterfactualAugmentation.model_validate({"termPairs": [["he", "she"], ["She", "they"]]})
    with pytest.raises(ValueError, match="the two terms of a pair must differ"):
        CounterfactualAugmentation.model_validate({"termPairs": [["He", "he"]]})


def test_augment_adds_one_twin_per_row_with_a_term_and_counts_it() -> None:
    rows = [
        {"prompt": "Is he a nurse?", "completion": " yes, he is"},
        {"prompt": "What colour?", "completion": " red"},
        {"prompt": "Ask her", "completion": " she said no"},
    ]
    augmented, report = augment(Dataset.from_list(rows), PAIRS)
    assert (report.rows_added, report.swaps) == (2, 4)
    assert augmented.to_list() == [
        *rows,
        {"prompt": "Is she a nurse?", "completion": " yes, she is"},
        {"prompt": "Ask him", "completion": " he said no"},
    ]


def test_augment_swaps_message_turns() -> None:
    rows = [{"messages": [{"role": "user", "content": "Thank him"}, {"role": "assistant", "content": "Thanks!"}]}]
    augmented, report = augment(Dataset.from_list(rows), PAIRS)
    assert report.rows_added == 1
    assert augmented[1]["messages"][0] == {"role": "user", "content": "Thank her"}
    assert augmented[1]["messages"][1]["content"] == "Thanks!"
