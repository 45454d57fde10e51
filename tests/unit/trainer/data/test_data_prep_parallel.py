"""Prep on worker processes gives exactly what one process gives, and runs once per job through the
content-addressed cache: other ranks and a retried run load the result instead of preparing again."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from datasets import Dataset

from kubetune_trainer.data import prep as prep_module
from kubetune_trainer.data.dedup import lsh_bands
from kubetune_trainer.data.prep import available_cpus, prepare
from kubetune_trainer.data.prep_cache import CachedPrep, PrepCache, is_local_leader, local_ranks, prep_key
from kubetune_trainer.data.prep_report import PrepReport
from kubetune_trainer.data_stage import STATUS_KEYS, flatten_report

pytestmark = pytest.mark.unit

PARAGRAPH = "The tenant shall pay the rent on the first day of each month to the landlord at the office."


def _rows(n: int) -> list[str]:
    rows = []
    for i in range(n):
        if i % 7 == 3:
            rows.append(rows[i - 3].upper())  # exact repeat
        elif i % 11 == 5:
            rows.append(PARAGRAPH.replace("first", "second"))  # near repeat of row 0
        elif i % 13 == 6:
            rows.append(f"Row {i}: write to person{i}@example.com or call (212) 555-01{i % 90:02d}.")
        else:
            rows.append(PARAGRAPH if i == 0 else f"Row {i} talks about topic {i * 7919 % 1000} in its own words.")
    return rows


def test_two_workers_give_what_one_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prep_module, "CHUNK_ROWS", 25)  # several chunks per worker, results merged in order
    dataset = Dataset.from_dict(
        {"text": _rows(300), "license": ["GPL-3.0-only" if i % 9 == 1 else "MIT" for i in range(300)]}
    )
    settings = {
        "dedup": "near",
        "near_threshold": 0.75,
        "pii_enabled": True,
        "allowed_licenses": ["MIT"],
        "max_seq_length": 80,
    }
    one = prepare(dataset, workers=1, **settings)
    two = prepare(dataset, workers=2, **settings)
    assert two.report.workers == 2
    assert two.dataset["text"] == one.dataset["text"]
    for field in ("rows_in", "rows_out", "removed", "pii_found", "license_refused", "license_allowed"):
        assert getattr(two.report, field) == getattr(one.report, field), field
    assert one.report.removed["near_duplicate"] > 0
    assert one.report.removed["duplicate"] > 0
    assert one.report.removed["license"] > 0
    assert one.report.pii_found["email"] > 0


def test_worker_count_follows_the_rows_and_the_cpus() -> None:
    assert prep_module._worker_count(3, 10_000, prep_module.PrepSettings()) == 3
    assert prep_module._worker_count(8, 100, prep_module.PrepSettings()) == 1  # one chunk
    assert prep_module._worker_count(0, 1_000, prep_module.PrepSettings()) == 1  # too few rows to share
    auto = prep_module._worker_count(0, 10_000_000, prep_module.PrepSettings())
    assert auto == available_cpus() >= 1


def test_lsh_bands_find_pairs_at_the_threshold() -> None:
    for threshold in (0.5, 0.7, 0.85, 0.95):
        bands = lsh_bands(threshold)
        rows = 128 // bands
        assert 1 - (1 - threshold**rows) ** bands >= 0.99
    assert lsh_bands(0.85) == 16


# --- once per job: the cache --------------------------------------------------------------------------


def _prepared(texts: list[str]) -> CachedPrep:
    result = prepare(Dataset.from_dict({"text": texts}))
    return CachedPrep({"train": result.dataset}, {"train": result.report})


def test_cache_key_changes_with_data_and_settings() -> None:
    key = prep_key("sha256:aa", {"train": {"dedup": "exact"}})
    assert key == prep_key("sha256:aa", {"train": {"dedup": "exact"}})
    assert key != prep_key("sha256:ab", {"train": {"dedup": "exact"}})
    assert key != prep_key("sha256:aa", {"train": {"dedup": "near"}})


def test_a_retried_run_loads_the_prepared_data(tmp_path: Path) -> None:
    cache = PrepCache(tmp_path / "prep")
    calls: list[int] = []

    def compute() -> CachedPrep:
        calls.append(1)
        return _prepared(["a row", "a row", "another row"])

    first = cache.get_or_prepare("k1", compute, leader=True)
    second = cache.get_or_prepare("k1", compute, leader=True)
    assert len(calls) == 1
    assert (first.from_cache, second.from_cache) == (False, True)
    assert second.datasets["train"]["text"] == ["a row", "another row"]
    assert second.reports["train"].removed["duplicate"] == 1
    assert not list((tmp_path / "prep").glob(".*.tmp"))


def test_other_ranks_wait_for_local_rank_zero(tmp_path: Path) -> None:
    cache = PrepCache(tmp_path / "prep")
    seen: list[CachedPrep] = []

    def follower() -> None:
        seen.append(cache.get_or_prepare("k2", _never, leader=False, poll_seconds=0.05))

    thread = threading.Thread(target=follower)
    thread.start()
    time.sleep(0.3)
    assert not seen  # still waiting: nothing written yet
    cache.get_or_prepare("k2", lambda: _prepared(["only row"]), leader=True)
    thread.join(timeout=30)
    assert seen[0].datasets["train"]["text"] == ["only row"]
    assert seen[0].from_cache


def _never() -> CachedPrep:
    raise AssertionError("a follower never prepares")


def test_a_cache_that_cannot_be_written_fails_only_when_ranks_wait(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    cache = PrepCache(blocked / "prep")
    assert cache.get_or_prepare("k3", lambda: _prepared(["x y"]), leader=True).datasets["train"]["text"] == ["x y"]
    with pytest.raises(OSError, match="Not a directory"):
        cache.get_or_prepare("k3", lambda: _prepared(["x y"]), leader=True, ranks_waiting=True)


def test_local_rank_decides_who_prepares() -> None:
    assert is_local_leader({})
    assert is_local_leader({"LOCAL_RANK": "0"})
    assert not is_local_leader({"LOCAL_RANK": "1"})
    assert local_ranks({}) == 1
    assert local_ranks({"LOCAL_WORLD_SIZE": "8"}) == 8


def test_status_report_stays_within_the_crd_limit() -> None:
    report = PrepReport(
        rows_in=10,
        rows_out=1,
        pii_found={f"secret_kind_{i}": i + 1 for i in range(40)},
        license_refused={f"LicenseRef-{i}": 100 + i for i in range(40)},
    )
    flat = flatten_report(report)
    assert len(flat) == STATUS_KEYS
    assert sum(v for k, v in flat.items() if k.startswith("pii_")) == sum(report.pii_found.values())
    refused = sum(v for k, v in flat.items() if k.startswith("license_refused_"))
    assert refused == sum(report.license_refused.values())
    assert flat["pii_other"] > 0
    assert flat["license_refused_other"] > 0
    assert all(len(k) <= 64 for k in flat)
