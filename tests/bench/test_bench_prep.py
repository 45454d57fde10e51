"""Data-prep throughput, run by `make bench` only: exact dedup, near dedup and the PII scan on short rows,
with a worker-count sweep, as ratios against exact dedup on one worker measured in the same run.

Goal (issue 13): near dedup and the PII scan at >= 20,000 rows/s per core on short rows. As a ratio: on
the reference machine (the 2-core CI kind, docs/benchmarks.md), exact dedup through `prepare` runs at
REFERENCE_EXACT_ROWS_PER_S on one core, so the goal is a rows/s ratio >= 20,000 / that against exact dedup
on one worker measured in the same run. The benchmark fails only when a one-worker ratio misses it or a
configuration cannot run. Repeats are interleaved (every configuration once per round, best of the rounds)
so that load from other processes on a shared machine hits all of them alike.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prep_corpus import rows as corpus_rows

from kubetune_trainer.data.prep import available_cpus, prepare

pytestmark = pytest.mark.bench

ROWS = 20_000
ROUNDS = 3
GOAL_ROWS_PER_S_PER_CORE = 20_000
REFERENCE_EXACT_ROWS_PER_S = 100_000
"""Exact dedup on one core of the 2-core CI machine: 121-169k rows/s at load average ~5, 50-69k at 8-13
(docs/benchmarks.md); 100k makes the goal ratio 0.20."""
GOAL_RATIO = GOAL_ROWS_PER_S_PER_CORE / REFERENCE_EXACT_ROWS_PER_S
STAGES: dict[str, dict[str, Any]] = {
    "exact dedup": {"dedup": "exact"},
    "near dedup": {"dedup": "near"},
    "PII scan (+ exact dedup)": {"dedup": "exact", "pii_enabled": True},
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The rows as a file-backed dataset, as prep sees them in a run (workers memory-map it)."""
    from datasets import Dataset, load_from_disk

    path = Path(tmp_path_factory.mktemp("prep-bench")) / "corpus"
    Dataset.from_list(corpus_rows(ROWS)).save_to_disk(str(path))
    return load_from_disk(str(path))


def _seconds(dataset: Any, settings: dict[str, Any], workers: int) -> float:
    started = time.perf_counter()
    result = prepare(dataset, workers=workers, **settings)
    elapsed = time.perf_counter() - started
    assert result.report.workers == workers
    return elapsed


def test_prep_throughput_against_exact_dedup(corpus: Any) -> None:
    sweep = sorted({1, 2, min(4, available_cpus())})
    # a job pays the worker pool's start (the forkserver importing datasets, detect-secrets, ...) once
    pool_start = _seconds(corpus.select(range(4000)), STAGES["PII scan (+ exact dedup)"], 2)
    configs = [(stage, workers) for workers in sweep for stage in STAGES]
    best = {config: float("inf") for config in configs}
    for _ in range(ROUNDS):
        for stage, workers in configs:
            best[(stage, workers)] = min(best[(stage, workers)], _seconds(corpus, STAGES[stage], workers))
    baseline = ROWS / best[("exact dedup", 1)]
    lines = [
        f"\nBENCH data prep: {ROWS} short rows (avg {sum(len(r['text']) for r in corpus_rows(200)) // 200} chars), "
        f"best of {ROUNDS} interleaved rounds; baseline exact dedup, 1 worker: {baseline:,.0f} rows/s",
        f"goal: one-worker ratio >= {GOAL_RATIO:.2f} (= {GOAL_ROWS_PER_S_PER_CORE:,} rows/s/core where exact dedup "
        f"runs {REFERENCE_EXACT_ROWS_PER_S:,} rows/s); worker pool start, once per job: {pool_start:.1f} s",
        f"{'stage':<26} {'workers':>7} {'rows/s':>10} {'rows/s/worker':>14} {'ratio':>7}  goal",
    ]
    missed = []
    for stage, workers in configs:
        rate = ROWS / best[(stage, workers)]
        ratio = rate / baseline
        judged = workers == 1 and stage != "exact dedup"
        verdict = ("ok" if ratio >= GOAL_RATIO else "MISSED") if judged else "-"
        if verdict == "MISSED":
            missed.append(f"{stage}: ratio {ratio:.2f} < {GOAL_RATIO:.2f}")
        lines.append(f"{stage:<26} {workers:>7} {rate:>10,.0f} {rate / workers:>14,.0f} {ratio:>7.2f}  {verdict}")
    print("\n".join(lines))
    assert not missed, "; ".join(missed)
