"""Data prep (`spec.dataset.prep`): license allow-list, empty rows, PII, duplicates, length - in parallel.

Runs on a normalised dataset (see `formats.normalize`) so it knows which columns hold text. Checks
apply in the order that is cheapest and most correct: license and emptiness first, PII next (redaction
can turn near-identical rows into identical ones), then dedup, then the length check. Everything that
depends on one row only (`prep_rows.RowAnalyzer`: PII, MinHash, token counts) runs on `workers`
processes over chunks of rows; this process applies the results in row order, since for duplicates
the first occurrence is kept, and logs progress with rows/s. Every removal is counted by reason in a
`PrepReport`. If nothing is left, that is a config error carrying the counts.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
import uuid
from collections import Counter, deque
from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetune_trainer.data.dedup import ExactDeduplicator, NearDeduplicator
from kubetune_trainer.data.formats import LICENSE_COLUMN
from kubetune_trainer.data.licenses import LicensePolicy
from kubetune_trainer.data.prep_report import REMOVAL_REASONS, PrepReport
from kubetune_trainer.data.prep_rows import ChunkResult, DedupMode, LengthFn, PiiAction, PrepSettings, RowAnalyzer
from kubetune_trainer.errors import EmptyDataError

if TYPE_CHECKING:
    from datasets import Dataset

    from kubetune.api.v1alpha1.data import DatasetPrep

__all__ = [
    "REMOVAL_REASONS",
    "PrepReport",
    "PrepResult",
    "PrepSettings",
    "available_cpus",
    "prepare",
    "prepare_from_spec",
    "settings_from_spec",
]

log = logging.getLogger(__name__)

CHUNK_ROWS = 2000
ROWS_PER_WORKER = 20_000
"""Below this many rows per worker, starting a process costs more than it saves."""
NER_ROWS_PER_WORKER = 500
LOG_INTERVAL_SECONDS = 10.0
WORKER_PRELOAD = (
    "datasets",
    "rensa",
    "re2",
    "license_expression",
    "detect_secrets.core.scan",
    "kubetune_trainer.data.prep_rows",
    "kubetune_trainer.data.pii",
)
"""Imported once by the forkserver (seconds each on a busy node) instead of once per worker."""


@dataclass(frozen=True)
class PrepResult:
    """The prepared dataset and its report."""

    dataset: Dataset
    report: PrepReport


def available_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota (a pod's CPU limit)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return cpus
    return cpus if quota == "max" else max(1, min(cpus, int(quota) // int(period)))


def prepare(
    dataset: Dataset,
    *,
    dedup: DedupMode = "exact",
    near_threshold: float = 0.85,
    pii_enabled: bool = False,
    pii_action: PiiAction = "redact",
    pii_ner: bool = False,
    ner_model: str | None = None,
    allowed_licenses: Collection[str] | None = None,
    declared_license: str | None = None,
    card_license: str | None = None,
    max_seq_length: int | None = None,
    lengths: LengthFn | None = None,
    length_unit: str | None = None,
    phone_regions: Sequence[str] = ("US",),
    keep_license_column: bool = False,
    workers: int = 1,
) -> PrepResult:
    """Clean a normalised dataset; see the module docstring for the order of checks.

    `max_seq_length` is measured with `lengths` (a batch function: the tokenizer's, so it is in tokens
    as in the spec, named by `length_unit`); without one it counts characters. Rows over the limit are
    removed (`too_long`) rather than truncated, so no example silently loses its answer.
    `allowed_licenses` None disables the license check; a `declared_license` outside the list raises
    `LicenseError` before any row is read; `card_license` applies to rows without their own.
    `workers` 0 means as many as `available_cpus()` allows for this many rows.
    """
    settings = PrepSettings(
        dedup=dedup,
        near_threshold=near_threshold,
        pii_enabled=pii_enabled,
        pii_action=pii_action,
        pii_ner=pii_enabled and pii_ner,
        ner_model=ner_model,
        phone_regions=tuple(phone_regions),
        allowed_licenses=tuple(sorted(allowed_licenses)) if allowed_licenses is not None else None,
        declared_license=declared_license,
        card_license=card_license,
        max_seq_length=max_seq_length,
        length_unit=length_unit or ("tokens" if lengths is not None else "characters"),
    )
    return run_prep(dataset, settings, lengths=lengths, workers=workers, keep_license_column=keep_license_column)


def run_prep(
    dataset: Dataset,
    settings: PrepSettings,
    *,
    lengths: LengthFn | None = None,
    workers: int = 1,
    keep_license_column: bool = False,
) -> PrepResult:
    """`prepare` with its settings already collected (what the cache keys on)."""
    started = time.monotonic()
    report = PrepReport(rows_in=len(dataset), settings=settings.to_dict())
    if report.rows_in == 0:
        raise EmptyDataError("the dataset has no rows; check dataset.train.uri points at the right file")
    report.workers = _worker_count(workers, report.rows_in, settings)
    if settings.allowed_licenses is not None:  # a refused declaration fails before any row is read
        LicensePolicy(settings.allowed_licenses, settings.declared_license, settings.card_license)
    deduplicator = _deduplicator(settings)
    kept: list[int] = []
    patches: dict[int, dict[str, Any]] = {}
    pii_found: Counter[str] = Counter()
    licenses: Counter[tuple[str, str]] = Counter()
    last_log = started
    for chunk in _analyze(dataset, settings, lengths, report.workers):
        pii_found.update(chunk.pii_found)
        licenses.update(chunk.licenses)
        for offset, row_reason in enumerate(chunk.reasons):
            reason = row_reason
            if reason is None and deduplicator is not None:
                reason = _duplicate(deduplicator, chunk, offset)
            if reason is None and chunk.too_long[offset]:
                reason = "too_long"
            if reason is not None:
                report.removed[reason] += 1
                continue
            if offset in chunk.patches:
                patches[len(kept)] = chunk.patches[offset]
            kept.append(chunk.start + offset)
        done = chunk.start + len(chunk.reasons)
        if time.monotonic() - last_log >= LOG_INTERVAL_SECONDS and done < report.rows_in:
            last_log = time.monotonic()
            rate = done / max(last_log - started, 1e-9)
            log.info(
                "prep: %d/%d rows (%d%%), %.0f rows/s on %d worker(s), removed %s",
                *(done, report.rows_in, 100 * done // report.rows_in, rate, report.workers, _nonzero(report.removed)),
            )
    report.rows_out = len(kept)
    report.pii_found = dict(sorted(pii_found.items()))
    report.rows_without_license = licenses[("unknown", "")]
    report.license_refused = _by_expression(licenses, "refused")
    report.license_allowed = _by_expression(licenses, "allowed")
    report.seconds = round(time.monotonic() - started, 3)
    report.rows_per_second = round(report.rows_in / max(report.seconds, 1e-3), 1)
    log.info("%s (%.0f rows/s on %d worker(s))", report.summary(), report.rows_per_second, report.workers)
    if report.rows_out == 0:
        refused = f" (license refused: {report.license_refused})" if report.license_refused else ""
        raise EmptyDataError(
            f"no rows left after dataset.prep ({report.rows_in} in, removed {_nonzero(report.removed)}){refused}; "
            "relax prep (dedup, piiFilter, licenses, maxSeqLength) or fix the data"
        )
    return PrepResult(dataset=_assemble(dataset, kept, patches, keep_license_column), report=report)


def settings_from_spec(
    spec: DatasetPrep, *, card_license: str | None = None, length_unit: str = "characters"
) -> PrepSettings:
    """The prep settings of a FineTuneJob's `spec.dataset.prep` (the pydantic model)."""
    return PrepSettings(
        dedup=spec.dedup,
        near_threshold=spec.near_duplicate_threshold,
        pii_enabled=spec.pii_filter.enabled,
        pii_action=spec.pii_filter.action,
        pii_ner=spec.pii_filter.enabled and spec.pii_filter.ner,
        ner_model=spec.pii_filter.ner_model,
        allowed_licenses=tuple(sorted(spec.licenses.allow)) if spec.licenses is not None else None,
        declared_license=spec.licenses.declared if spec.licenses is not None else None,
        card_license=card_license,
        max_seq_length=spec.max_seq_length,
        length_unit=length_unit,
    )


def prepare_from_spec(
    dataset: Dataset,
    spec: DatasetPrep,
    *,
    lengths: LengthFn | None = None,
    length_unit: str = "characters",
    card_license: str | None = None,
) -> PrepResult:
    """`prepare` with the settings of `spec.dataset.prep`."""
    settings = settings_from_spec(spec, card_license=card_license, length_unit=length_unit)
    return run_prep(dataset, settings, lengths=lengths, workers=spec.workers)


# --- parallel row analysis ---------------------------------------------------------------------------

_WORKER: tuple[RowAnalyzer, Dataset] | None = None


def _init_worker(settings: PrepSettings, lengths: LengthFn | None, dataset: Dataset) -> None:
    global _WORKER  # noqa: PLW0603 - one analyzer per worker process, built once
    _WORKER = (RowAnalyzer(settings, lengths), dataset)


def _analyze_range(start: int, stop: int) -> ChunkResult:
    assert _WORKER is not None, "worker used before _init_worker"
    analyzer, dataset = _WORKER
    return analyzer.analyze(dataset, start, stop)


def _analyze(dataset: Dataset, settings: PrepSettings, lengths: LengthFn | None, workers: int) -> Iterator[ChunkResult]:
    """Chunk results in row order: here for one worker, else from a pool with a bounded queue."""
    ranges = [(start, min(start + CHUNK_ROWS, len(dataset))) for start in range(0, len(dataset), CHUNK_ROWS)]
    if workers <= 1:
        local = RowAnalyzer(settings, lengths)
        for start, stop in ranges:
            yield local.analyze(dataset, start, stop)
        return
    # forkserver: the trainer process has torch and tokenizer threads by now, which fork would copy broken;
    # the server imports the libraries once and every worker forks from it with them loaded
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(WORKER_PRELOAD))
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(settings, lengths, dataset)
    ) as pool:
        todo = iter(ranges)
        pending: deque[Future[ChunkResult]] = deque(
            pool.submit(_analyze_range, *r) for _, r in zip(range(2 * workers), todo, strict=False)
        )
        while pending:
            result = pending.popleft().result()
            for start, stop in todo:
                pending.append(pool.submit(_analyze_range, start, stop))
                break
            yield result


def _worker_count(requested: int, rows: int, settings: PrepSettings) -> int:
    chunks = -(-rows // CHUNK_ROWS)
    if requested > 0:
        return max(1, min(requested, chunks))
    per_worker = NER_ROWS_PER_WORKER if settings.pii_ner else ROWS_PER_WORKER
    return max(1, min(available_cpus(), rows // per_worker, chunks))


# --- applying results in order -----------------------------------------------------------------------


def _deduplicator(settings: PrepSettings) -> ExactDeduplicator | NearDeduplicator | None:
    if settings.dedup == "none":
        return None
    if settings.dedup == "exact":
        return ExactDeduplicator()
    if settings.dedup == "near":
        return NearDeduplicator(threshold=settings.near_threshold)
    raise ValueError(f"unknown dedup mode {settings.dedup!r}; use none, exact or near")


def _duplicate(deduplicator: ExactDeduplicator | NearDeduplicator, chunk: ChunkResult, offset: int) -> str | None:
    key = chunk.exact_keys[offset]
    assert key is not None
    if isinstance(deduplicator, NearDeduplicator):
        assert chunk.signatures is not None
        return deduplicator.check_key(key, chunk.signatures[offset])
    return deduplicator.check_key(key)


def _assemble(dataset: Dataset, kept: list[int], patches: dict[int, dict[str, Any]], keep_license: bool) -> Dataset:
    """The kept rows (Arrow `select`, no copy through Python) with redacted values written over."""
    # fresh fingerprints: datasets would otherwise hash every index and patch to name the results
    out = dataset.select(kept, new_fingerprint=uuid.uuid4().hex)
    if patches:
        out = out.map(
            _apply_patches,
            with_indices=True,
            batched=True,
            fn_kwargs={"patches": patches},
            new_fingerprint=uuid.uuid4().hex,
            load_from_cache_file=False,
            desc="prep: writing redactions",
        )
    if not keep_license and LICENSE_COLUMN in out.column_names:
        out = out.remove_columns(LICENSE_COLUMN)
    return out


def _apply_patches(
    batch: dict[str, list[Any]], indices: list[int], patches: dict[int, dict[str, Any]]
) -> dict[str, list[Any]]:
    for position, index in enumerate(indices):
        for column, value in patches.get(index, {}).items():
            batch[column][position] = value
    return batch


def _by_expression(licenses: Counter[tuple[str, str]], decision: str) -> dict[str, int]:
    return dict(sorted((expression, n) for (d, expression), n in licenses.items() if d == decision))


def _nonzero(counts: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in counts.items() if v) or "none"
