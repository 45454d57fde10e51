"""Prep once per job, cached by content: a retried or resumed run, and every other rank, loads the result.

The key is a digest over the dataset digest (the source files) and the prep settings (which include
the tokenizer's fingerprint when lengths are in tokens), so a changed byte or setting is a miss and
nothing stale is ever reused. An entry (`<root>/<key>/`: the prepared splits as `datasets` Arrow
directories and their reports) is written under a temporary name and renamed into place, so a reader
sees a whole entry or none, also on a cache volume shared by several nodes.

Who prepares: local rank 0 of each node (`LOCAL_RANK`, set by torchrun and the DeepSpeed launcher; a
single process is rank 0). The other ranks wait for the entry and load it, memory-mapped. If rank 0
fails, the launcher stops the other ranks, so they never wait for nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetune_trainer.data.prep_report import PrepReport

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = ["PREP_FORMAT", "CachedPrep", "PrepCache", "is_local_leader", "local_ranks", "prep_key"]

log = logging.getLogger(__name__)

PREP_FORMAT = 2
"""Bumped when prep's output for the same settings changes, so older entries stop matching."""
_REPORTS = "reports.json"


@dataclass(frozen=True)
class CachedPrep:
    """Prepared splits by name (`train`, and `eval` for a separate eval dataset) with their reports."""

    datasets: Mapping[str, Dataset]
    reports: Mapping[str, PrepReport]
    from_cache: bool = False


def prep_key(data_digest: str, settings: Mapping[str, Any]) -> str:
    """The entry name of prep's output for this data and these settings."""
    document = json.dumps({"format": PREP_FORMAT, "data": data_digest, "settings": settings}, sort_keys=True)
    return hashlib.sha256(document.encode()).hexdigest()[:40]


def is_local_leader(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process prepares the data for its node (local rank 0)."""
    return (environ if environ is not None else os.environ).get("LOCAL_RANK", "0") == "0"


def local_ranks(environ: Mapping[str, str] | None = None) -> int:
    """How many processes of this job run on this node (`LOCAL_WORLD_SIZE`, 1 outside a launcher)."""
    return int((environ if environ is not None else os.environ).get("LOCAL_WORLD_SIZE", "1"))


class PrepCache:
    """Entries under `root` (the durable cache volume's `prep/`), keyed by `prep_key`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def load(self, key: str) -> CachedPrep | None:
        """The entry, memory-mapped, or None if no complete entry exists."""
        from datasets import load_from_disk

        entry = self.root / key
        if not (entry / _REPORTS).is_file():
            return None
        reports = {name: PrepReport.from_dict(r) for name, r in json.loads((entry / _REPORTS).read_text()).items()}
        datasets = {name: load_from_disk(str(entry / name)) for name in reports}
        return CachedPrep(datasets=datasets, reports=reports, from_cache=True)

    def store(self, key: str, prepared: CachedPrep) -> None:
        """Write an entry atomically; if another process finished the same entry first, keep that one."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".{key}.{os.getpid()}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        for name, dataset in prepared.datasets.items():
            dataset.save_to_disk(str(staging / name))
        reports = {name: report.to_dict() for name, report in prepared.reports.items()}
        (staging / _REPORTS).write_text(json.dumps(reports, indent=2, sort_keys=True))
        try:
            staging.rename(self.root / key)
        except OSError:  # the entry exists: another node on a shared volume wrote the same content
            shutil.rmtree(staging, ignore_errors=True)

    def get_or_prepare(
        self,
        key: str,
        prepare: Callable[[], CachedPrep],
        *,
        leader: bool,
        ranks_waiting: bool = False,
        poll_seconds: float = 1.0,
        log_every_seconds: float = 60.0,
    ) -> CachedPrep:
        """A cached entry; else prepare it (leader) or wait for the leader to (everyone else).

        A leader that cannot write the entry fails when other ranks wait for it (they would wait forever),
        and otherwise only warns: the next run prepares again.
        """
        cached = self.load(key)
        if cached is not None:
            log.info("prep: reusing the prepared data of an earlier run (%s)", self.root / key)
            return cached
        if leader:
            prepared = prepare()
            try:
                self.store(key, prepared)
            except OSError as exc:
                if ranks_waiting:
                    raise
                log.warning("prep: could not cache the prepared data in %s: %s", self.root, exc)
            return prepared
        started = last_log = time.monotonic()
        while (cached := self.load(key)) is None:
            if time.monotonic() - last_log >= log_every_seconds:
                last_log = time.monotonic()
                log.info("prep: waiting %.0f s for local rank 0 to prepare the data", last_log - started)
            time.sleep(poll_seconds)
        return cached
