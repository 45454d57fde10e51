"""The per-row half of prep: everything that depends on one row only, so worker processes can share it.

For a range of rows, `RowAnalyzer.analyze` decides license and emptiness, scans and redacts PII,
computes dedup keys and measures length. What needs rows in order (which duplicate came first) is
left to `prep.py`, which applies the results in the order the checks are documented in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from kubetune_trainer.data.dedup import dedup_keys
from kubetune_trainer.data.formats import LICENSE_COLUMN, row_sequences, row_text
from kubetune_trainer.data.licenses import LicensePolicy

if TYPE_CHECKING:
    from datasets import Dataset

    from kubetune_trainer.data.pii import PiiScanner

__all__ = ["TEXT_COLUMNS", "ChunkResult", "PrepSettings", "RowAnalyzer", "TokenLengths"]

DedupMode = Literal["none", "exact", "near"]
PiiAction = Literal["redact", "drop"]
TEXT_COLUMNS = ("text", "messages", "prompt", "completion", "chosen", "rejected")
"""Columns whose strings are scanned for PII (after normalisation these hold all the model sees)."""
LengthFn = Callable[[list[str]], list[int]]


@dataclass(frozen=True)
class PrepSettings:
    """Everything that decides prep's output for given data (so also the cache key of that output)."""

    dedup: DedupMode = "exact"
    near_threshold: float = 0.85
    pii_enabled: bool = False
    pii_action: PiiAction = "redact"
    pii_ner: bool = False
    ner_model: str | None = None
    phone_regions: tuple[str, ...] = ("US",)
    allowed_licenses: tuple[str, ...] | None = None
    declared_license: str | None = None
    card_license: str | None = None
    max_seq_length: int | None = None
    length_unit: str = "characters"
    """`characters`, or what `lengths` counts (e.g. `tokens:<tokenizer fingerprint>`)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ChunkResult:
    """What the row analysis found for rows [start, start + len(reasons))."""

    start: int
    reasons: list[str | None]
    """`license`, `empty` or `pii` (decided per row), else None."""
    too_long: list[bool]
    exact_keys: list[bytes | None]
    signatures: list[Any] | None
    patches: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Redacted column values by row offset, for rows whose text changed."""
    pii_found: Counter[str] = field(default_factory=Counter)
    licenses: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(decision, expression) -> rows; rows without any license are counted as ("unknown", "")."""


class RowAnalyzer:
    """Built once per process from the settings (detectors load models); analyses chunks of a dataset."""

    def __init__(self, settings: PrepSettings, lengths: LengthFn | None = None) -> None:
        self.settings = settings
        self._lengths: LengthFn = lengths or _character_lengths
        self._policy = (
            LicensePolicy(settings.allowed_licenses, settings.declared_license, settings.card_license)
            if settings.allowed_licenses is not None
            else None
        )
        self._scanner: PiiScanner | None = None
        if settings.pii_enabled:
            from kubetune_trainer.data.pii import PiiScanner

            ner = None
            if settings.pii_ner:
                from kubetune_trainer.data.ner import DEFAULT_NER_MODEL, NerDetector

                ner = NerDetector(settings.ner_model or DEFAULT_NER_MODEL)
            self._scanner = PiiScanner(phone_regions=settings.phone_regions, ner=ner)

    def analyze(self, dataset: Dataset, start: int, stop: int) -> ChunkResult:
        columns: dict[str, list[Any]] = dataset[start:stop]
        names = list(columns)
        rows = [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]
        result = ChunkResult(start, [None] * len(rows), [False] * len(rows), [None] * len(rows), None)
        live: list[int] = []
        for i, row in enumerate(rows):
            result.reasons[i] = self._admit(row, result)
            if result.reasons[i] is None:
                live.append(i)
        if self._scanner is not None and live:
            live = self._scan(rows, live, result)
        if self.settings.dedup != "none" and live:
            near = self.settings.dedup == "near"
            keys, minhashes = dedup_keys([row_text(rows[i]) for i in live], near=near)
            for i, key in zip(live, keys, strict=True):
                result.exact_keys[i] = key
            if minhashes is not None:
                result.signatures = [None] * len(rows)
                for i, signature in zip(live, minhashes, strict=True):
                    result.signatures[i] = signature
        if self.settings.max_seq_length is not None and live:
            self._measure(rows, live, result)
        return result

    def _admit(self, row: Mapping[str, Any], result: ChunkResult) -> str | None:
        if self._policy is not None:
            verdict = self._policy.decide(row.get(LICENSE_COLUMN))
            result.licenses[(verdict.decision, verdict.expression or "")] += 1
            if verdict.decision == "refused":
                return "license"
        return "empty" if _is_empty(row) else None

    def _scan(self, rows: list[dict[str, Any]], live: list[int], result: ChunkResult) -> list[int]:
        assert self._scanner is not None
        present = [c for c in TEXT_COLUMNS if c in rows[live[0]]]
        places = [(i, column, turn) for i in live for column, turn in _text_places(rows[i], present)]
        texts = [_get(rows[i], column, turn) for i, column, turn in places]
        drop = self.settings.pii_action == "drop"
        found_rows: set[int] = set()
        for (i, column, turn), (redacted, counts) in zip(places, self._scanner.redact_batch(texts), strict=True):
            if not counts:
                continue
            result.pii_found.update(counts)
            found_rows.add(i)
            if not drop:
                _set(rows[i], column, turn, redacted)
                result.patches.setdefault(i, {})[column] = rows[i][column]
        if not drop:
            return live
        for i in found_rows:
            result.reasons[i] = "pii"
        return [i for i in live if i not in found_rows]

    def _measure(self, rows: list[dict[str, Any]], live: list[int], result: ChunkResult) -> None:
        limit = self.settings.max_seq_length
        assert limit is not None
        owners = [(i, sequence) for i in live for sequence in row_sequences(rows[i])]
        for (i, _), length in zip(owners, self._lengths([s for _, s in owners]), strict=True):
            if length > limit:
                result.too_long[i] = True


def _character_lengths(texts: list[str]) -> list[int]:
    return [len(t) for t in texts]


def _is_empty(row: Mapping[str, Any]) -> bool:
    """A row is empty when the part the model learns from has no text (e.g. a blank completion)."""

    def blank(column: str) -> bool:
        value = row.get(column)
        if isinstance(value, list):
            return not any(str(turn.get("content") or "").strip() for turn in value)
        return not str(value or "").strip()

    if "chosen" in row:
        return blank("chosen") or blank("rejected")
    if "completion" in row:
        return blank("completion")
    for column in ("messages", "text", "prompt"):
        if column in row:
            return blank(column)
    return not row_text(row).strip()


def _text_places(row: Mapping[str, Any], columns: Sequence[str]) -> list[tuple[str, int | None]]:
    """(column, turn index or None) of every string the model sees in a row (`columns`: its text columns)."""
    places: list[tuple[str, int | None]] = []
    for column in columns:
        value = row[column]
        if isinstance(value, str):
            places.append((column, None))
        elif isinstance(value, list):
            places += [(column, t) for t, turn in enumerate(value) if isinstance(turn.get("content"), str)]
    return places


def _get(row: Mapping[str, Any], column: str, turn: int | None) -> str:
    value = row[column]
    return str(value if turn is None else value[turn]["content"])


def _set(row: dict[str, Any], column: str, turn: int | None, text: str) -> None:
    if turn is None:
        row[column] = text
    else:
        row[column][turn] = {**row[column][turn], "content": text}


class TokenLengths:
    """Token counts of a batch of texts with a (fast) tokenizer: picklable, so worker processes get one."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __call__(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=True)["input_ids"]]
