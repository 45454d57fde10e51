"""Data prep (`spec.dataset.prep`): license allow-list, empty rows, PII, duplicates, length - one pass.

Runs on a normalised dataset (see `formats.normalize`) so it knows which columns hold text. Each row
goes through the checks in the order that is cheapest and most correct: license and emptiness first
(free), PII next (redaction can turn near-identical rows into identical ones), then dedup, then the
length check (the tokenizer is the most expensive step, so it sees the fewest rows). Every removal
is counted by reason in a `PrepReport`, which the caller saves with the artifacts and summarises in
the job's result. If nothing is left, that is a config error carrying the counts.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kubetune_trainer.data.dedup import ExactDeduplicator, NearDeduplicator
from kubetune_trainer.data.formats import LICENSE_COLUMN, row_sequences, row_text
from kubetune_trainer.data.licenses import LicensePolicy
from kubetune_trainer.data.pii import ALL_KINDS, find_pii, redact
from kubetune_trainer.errors import EmptyDataError

if TYPE_CHECKING:
    from datasets import Dataset

    from kubetune.api.v1alpha1.data import DatasetPrep

__all__ = [
    "REMOVAL_REASONS",
    "DedupMode",
    "PiiAction",
    "PrepReport",
    "PrepResult",
    "prepare",
    "prepare_from_spec",
]

log = logging.getLogger(__name__)

DedupMode = Literal["none", "exact", "near"]
PiiAction = Literal["redact", "drop"]
RemovalReason = Literal["license", "empty", "pii", "duplicate", "near_duplicate", "too_long"]
REMOVAL_REASONS: tuple[RemovalReason, ...] = ("license", "empty", "pii", "duplicate", "near_duplicate", "too_long")
TEXT_COLUMNS = ("text", "messages", "prompt", "completion", "chosen", "rejected")
"""Columns whose strings are scanned for PII (after normalisation these hold all the model sees)."""


@dataclass
class PrepReport:
    """What prep did: rows in and out, removals by reason, PII findings by kind, and the settings used."""

    rows_in: int = 0
    rows_out: int = 0
    removed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REMOVAL_REASONS, 0))
    pii_found: dict[str, int] = field(default_factory=dict)
    """Findings by kind: replaced by a placeholder (action redact) or the cause of a drop (action drop)."""
    rows_without_license: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (for the artifact manifest and `status.result`)."""
        return asdict(self)

    def to_json(self) -> str:
        """Stable, indented JSON (what `save` writes)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def save(self, path: Path) -> None:
        """Write the report as JSON next to the artifacts."""
        Path(path).write_text(self.to_json() + "\n")

    def summary(self) -> str:
        """One line for logs and status, e.g. `prep: 1000 in, 940 out; removed duplicate=50 pii=10`."""
        removed = " ".join(f"{k}={v}" for k, v in self.removed.items() if v)
        found = " ".join(f"{k}={v}" for k, v in sorted(self.pii_found.items()))
        line = f"prep: {self.rows_in} in, {self.rows_out} out; removed {removed or 'none'}"
        return line + (f"; pii {found}" if found else "")


@dataclass(frozen=True)
class PrepResult:
    """The prepared dataset and its report."""

    dataset: Dataset
    report: PrepReport


def prepare(
    dataset: Dataset,
    *,
    dedup: DedupMode = "exact",
    near_threshold: float = 0.85,
    pii_enabled: bool = False,
    pii_action: PiiAction = "redact",
    allowed_licenses: Collection[str] | None = None,
    declared_license: str | None = None,
    max_seq_length: int | None = None,
    token_length: Callable[[str], int] | None = None,
    phone_regions: Sequence[str] = ("US",),
    keep_license_column: bool = False,
    log_every: int = 10_000,
) -> PrepResult:
    """Clean a normalised dataset; see the module docstring for the order of checks.

    `max_seq_length` is measured with `token_length` (pass the tokenizer's length function so it is in
    tokens, as in the spec); without one it counts characters. Rows over the limit are removed
    (`too_long`) rather than truncated, so no example silently loses its answer. `allowed_licenses`
    None disables the license check; a `declared_license` outside the list raises `LicenseError`
    before any row is read.
    """
    started = time.monotonic()
    settings: dict[str, Any] = {
        "dedup": dedup,
        "near_threshold": near_threshold if dedup == "near" else None,
        "pii": {"enabled": pii_enabled, "action": pii_action} if pii_enabled else {"enabled": False},
        "allowed_licenses": sorted(allowed_licenses) if allowed_licenses is not None else None,
        "declared_license": declared_license,
        "max_seq_length": max_seq_length,
        "length_unit": "tokens" if token_length is not None else "characters",
    }
    report = PrepReport(rows_in=len(dataset), settings=settings)
    if report.rows_in == 0:
        raise EmptyDataError("the dataset has no rows; check dataset.train.uri points at the right file")
    policy = LicensePolicy(allowed_licenses, declared_license) if allowed_licenses is not None else None
    deduplicator = _deduplicator(dedup, near_threshold)
    measure = token_length or len
    pii_found: Counter[str] = Counter()

    output_columns = [c for c in dataset.column_names if keep_license_column or c != LICENSE_COLUMN]
    kept: dict[str, list[Any]] = {c: [] for c in output_columns}
    for index, source_row in enumerate(_rows(dataset), start=1):
        row = source_row
        reason = _check_row(row, report, policy)
        if reason is None and pii_enabled:
            row, found = _scan_pii(row, pii_action, phone_regions)
            pii_found.update(found)
            if found and pii_action == "drop":
                reason = "pii"
        if reason is None and deduplicator is not None:
            reason = deduplicator.check(row_text(row))
        if reason is None and max_seq_length is not None and _longest(row, measure) > max_seq_length:
            reason = "too_long"
        if reason is None:
            for column in output_columns:
                kept[column].append(row[column])
        else:
            report.removed[reason] += 1
        if log_every and index % log_every == 0:
            log.info("prep: %d/%d rows, removed %s", index, report.rows_in, _nonzero(report.removed))

    report.rows_out = len(kept[output_columns[0]]) if output_columns else 0
    report.pii_found = dict(sorted(pii_found.items()))
    report.seconds = round(time.monotonic() - started, 3)
    log.info("%s", report.summary())
    if report.rows_out == 0:
        raise EmptyDataError(
            f"no rows left after dataset.prep ({report.rows_in} in, removed {_nonzero(report.removed)}); "
            "relax prep (dedup, piiFilter, licenses, maxSeqLength) or fix the data"
        )
    features = dataset.features.copy()
    for column in set(features) - set(output_columns):
        del features[column]
    from datasets import Dataset as HfDataset

    return PrepResult(dataset=HfDataset.from_dict(kept, features=features), report=report)


def prepare_from_spec(
    dataset: Dataset,
    spec: DatasetPrep,
    *,
    token_length: Callable[[str], int] | None = None,
    phone_regions: Sequence[str] = ("US",),
) -> PrepResult:
    """`prepare` with the settings of the FineTuneJob's `spec.dataset.prep` (the pydantic model)."""
    return prepare(
        dataset,
        dedup=spec.dedup,
        near_threshold=spec.near_duplicate_threshold,
        pii_enabled=spec.pii_filter.enabled,
        pii_action=spec.pii_filter.action,
        allowed_licenses=list(spec.licenses.allow) if spec.licenses is not None else None,
        declared_license=spec.licenses.declared if spec.licenses is not None else None,
        max_seq_length=spec.max_seq_length,
        token_length=token_length,
        phone_regions=phone_regions,
    )


def _rows(dataset: Dataset, batch_size: int = 1000) -> Iterator[dict[str, Any]]:
    for batch in dataset.iter(batch_size=batch_size):
        columns = list(batch)
        for values in zip(*(batch[c] for c in columns), strict=True):
            yield dict(zip(columns, values, strict=True))


def _longest(row: Mapping[str, Any], measure: Callable[[str], int]) -> int:
    return max(measure(sequence) for sequence in row_sequences(row))


def _deduplicator(mode: DedupMode, threshold: float) -> ExactDeduplicator | NearDeduplicator | None:
    if mode == "none":
        return None
    if mode == "exact":
        return ExactDeduplicator()
    if mode == "near":
        return NearDeduplicator(threshold=threshold)
    raise ValueError(f"unknown dedup mode {mode!r}; use none, exact or near")


def _check_row(row: Mapping[str, Any], report: PrepReport, policy: LicensePolicy | None) -> RemovalReason | None:
    if policy is not None:
        decision = policy.decide(row.get(LICENSE_COLUMN))
        if decision == "refused":
            return "license"
        if decision == "unknown":
            report.rows_without_license += 1
    if _is_empty(row):
        return "empty"
    return None


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


def _scan_pii(
    row: dict[str, Any], action: PiiAction, phone_regions: Sequence[str]
) -> tuple[dict[str, Any], Counter[str]]:
    found: Counter[str] = Counter()

    def clean(text: str) -> str:
        if action == "drop":
            found.update(m.kind for m in find_pii(text, ALL_KINDS, phone_regions))
            return text
        redacted, counts = redact(text, ALL_KINDS, phone_regions)
        found.update(counts)
        return redacted

    out = dict(row)
    for column in TEXT_COLUMNS:
        value = row.get(column)
        if isinstance(value, str):
            out[column] = clean(value)
        elif isinstance(value, list):
            out[column] = [
                {**turn, "content": clean(turn["content"])} if isinstance(turn.get("content"), str) else turn
                for turn in value
            ]
    return out, found


def _nonzero(counts: Mapping[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in counts.items() if v) or "none"
