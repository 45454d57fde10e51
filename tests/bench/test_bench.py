"""Benchmarks, run by `make bench` only. Each reports a ratio against a baseline measured in the same
run on the same data, because absolute times on shared 2-core machines mean little.

- Data prep cost: near-duplicate removal (MinHash LSH) and PII scanning against exact dedup, per row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.bench


def best_of(fn: Callable[[], Any], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def report(name: str, baseline: float, measured: float, unit: str) -> float:
    ratio = measured / baseline
    print(f"\nBENCH {name}: baseline {baseline * 1e3:.2f} ms, measured {measured * 1e3:.2f} ms per {unit}, "
          f"ratio {ratio:.2f}x")  # fmt: skip
    return ratio


def test_prep_near_dedup_and_pii_against_exact_dedup() -> None:
    from datasets import Dataset

    from kubetune_trainer.data.prep import prepare

    rows = [
        {"text": f"row {i} about topic {i % 97} with words {' '.join(str(j) for j in range(i % 40))}"}
        for i in range(3000)
    ]
    dataset = Dataset.from_list(rows)
    exact = best_of(lambda: prepare(dataset, dedup="exact"), repeats=3)
    near = best_of(lambda: prepare(dataset, dedup="near"), repeats=3)
    pii = best_of(lambda: prepare(dataset, dedup="exact", pii_enabled=True), repeats=3)
    assert report("prep near-dedup vs exact", exact, near, "3000 rows") > 0
    assert report("prep PII scan vs exact", exact, pii, "3000 rows") > 0
