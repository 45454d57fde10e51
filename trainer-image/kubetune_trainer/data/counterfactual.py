"""Counterfactual data augmentation (`dataset.prep.counterfactual`) and the term swap the bias-gap suite shares.

A row that mentions a declared term (e.g. "he") is added once more with every declared term swapped
for its counterpart ("she", and "she" for "he" in the same pass), so the model sees each context
with both sides equally often. Matching is on whole words and case-insensitive, and the swap keeps
the original's case (He -> She, HE -> SHE). Rows without any term are not duplicated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from kubetune_trainer.data.prep_rows import TEXT_COLUMNS

if TYPE_CHECKING:
    from datasets import Dataset

_SWAPS = "_counterfactual_swaps"


class TermSwapper:
    """Swaps each declared term for its counterpart, both ways, in one regex pass."""

    def __init__(self, term_pairs: Sequence[Sequence[str]]) -> None:
        # the API model guarantees each term (case-insensitively) is in one pair only
        self.counterpart = {term.lower(): other for a, b in term_pairs for term, other in ((a, b), (b, a))}
        terms = sorted(self.counterpart, key=len, reverse=True)  # longest first: "he" must not eat "her"
        self.pattern = re.compile(r"(?<!\w)(" + "|".join(map(re.escape, terms)) + r")(?!\w)", re.IGNORECASE)

    def swap(self, text: str) -> tuple[str, int]:
        """(text with every term swapped, number of swaps)."""
        return self.pattern.subn(self._replace, text)

    def _replace(self, match: re.Match[str]) -> str:
        original = match.group(0)
        other = self.counterpart[original.lower()]
        if len(original) > 1 and original.isupper():
            return other.upper()
        if original[0].isupper():
            return other[0].upper() + other[1:]
        return other

    def swap_row(self, row: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
        """(row with the text columns swapped, swaps); message lists swap each turn's content."""
        out = dict(row)
        total = 0
        for column in TEXT_COLUMNS:
            value = row.get(column)
            if isinstance(value, str):
                out[column], count = self.swap(value)
                total += count
            elif isinstance(value, list):
                turns = []
                for turn in value:
                    if isinstance(turn, dict) and isinstance(turn.get("content"), str):
                        content, count = self.swap(turn["content"])
                        turns.append({**turn, "content": content})
                        total += count
                    else:
                        turns.append(turn)
                out[column] = turns
        return out, total


@dataclass(frozen=True)
class AugmentationReport:
    """What augmentation added: one row per source row that mentions a term, and the swaps made."""

    rows_added: int
    swaps: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def augment(dataset: Dataset, term_pairs: Sequence[Sequence[str]]) -> tuple[Dataset, AugmentationReport]:
    """The dataset followed by the counterfactual twin of every row that mentions a declared term."""
    from datasets import concatenate_datasets

    swapper = TermSwapper(term_pairs)

    def twin(row: dict[str, Any]) -> dict[str, Any]:
        swapped, count = swapper.swap_row(row)
        return {**swapped, _SWAPS: count}

    twins = dataset.map(twin, desc="counterfactual augmentation")
    twins = twins.filter(lambda row: row[_SWAPS] > 0)
    swaps = sum(twins[_SWAPS])
    twins = twins.remove_columns(_SWAPS).cast(dataset.features)
    report = AugmentationReport(rows_added=len(twins), swaps=swaps)
    return concatenate_datasets([dataset, twins]), report
