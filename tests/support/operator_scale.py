"""Pieces of the operator-at-scale benchmark: watches that time when objects appear or change, the operator's peak
RSS, and its API requests from the apiserver's audit log (the operator process itself: support.operator_process).
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from kubetune_dev.controlplane.client import AdminClient, ApiError
from support.operator_process import OperatorProcess

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
Write = tuple[str, str]
"""('verb resource[/subresource]', object name)"""


def by_request(writes: Counter[Write]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for (request, _), count in writes.items():
        counts[request] += count
    return counts


def by_run(writes: Counter[Write], runs: Iterable[str]) -> tuple[dict[str, int], int]:
    """Each run's writes: to its own objects and to those named after it (`<run>-train`, `<run>-preflight-<digest>`),
    and the count of writes no run's name covers (the namespace's trainer identity, shared by all)."""
    counts = dict.fromkeys(runs, 0)
    shared = 0
    for (_, name), count in writes.items():
        parts = name.split("-")
        owner = next(("-".join(parts[:n]) for n in range(len(parts), 0, -1) if "-".join(parts[:n]) in counts), None)
        if owner is None:
            shared += count
        else:
            counts[owner] += count
    return counts, shared


class PeakRss:
    """The highest RSS of the operator, sampled every 0.2 s while in the `with` block."""

    def __init__(self, operator: OperatorProcess) -> None:
        self.operator = operator
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self.operator.rss_mib())


class Watch:
    """List-then-watch of one collection in a background thread; `on_event(type, object, monotonic time)` runs for
    every object listed (as ADDED) and every later change, in order, on that thread."""

    def __init__(self, api: AdminClient, path: str, on_event: Callable[[str, dict[str, Any], float], None]) -> None:
        self.api = api
        self.path = path
        self.on_event = on_event
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watch:
        listed = self.api.get(self.path)
        for item in listed.get("items") or []:
            self.on_event("ADDED", item, time.monotonic())
        self._version = listed["metadata"]["resourceVersion"]
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=20)

    def check(self) -> None:
        if self.failure is not None:
            raise AssertionError(f"watch of {self.path} failed: {self.failure!r}")

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for event in self.api.watch(self.path, self._version, timeout_seconds=5):
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        raise ApiError(int(obj.get("code") or 0), json.dumps(obj))
                    self._version = obj["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self.on_event(event["type"], obj, time.monotonic())
                    if self._stop.is_set():
                        return
        except BaseException as error:  # surfaced by check(): a silent watch would look like a slow operator
            self.failure = error


class AuditLog:
    """Write requests of one user, read from the apiserver's JSON audit log from a mark (a byte offset) on."""

    def __init__(self, path: Path, username: str) -> None:
        self.path = path
        self.username = username

    def mark(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def writes(self, since: int) -> tuple[Counter[Write], int]:
        """('verb resource[/subresource]', object name) -> count of the user's write requests in the complete lines
        after `since`, and the offset after the last of them."""
        counts: Counter[Write] = Counter()
        with self.path.open("rb") as log:
            log.seek(since)
            data = log.read()
        complete = data[: data.rfind(b"\n") + 1]
        for line in complete.splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("user", {}).get("username") != self.username or entry.get("verb") not in WRITE_VERBS:
                    continue
                ref = entry.get("objectRef") or {}
                resource = ref.get("resource", "?") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
                counts[(f"{entry['verb']} {resource}", str(ref.get("name", "")))] += 1
        return counts, since + len(complete)

    def quiet_writes(self, since: int, quiet_seconds: float, timeout: float) -> Counter[Write]:
        """The writes since `since`, once none has been added for `quiet_seconds` (the operator settled)."""
        deadline = time.monotonic() + timeout
        total, offset = self.writes(since)
        stable_since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - stable_since < quiet_seconds:
            time.sleep(1)
            more, offset = self.writes(offset)
            if more:
                total.update(more)
                stable_since = time.monotonic()
        return total


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (the value at or above `fraction` of the sorted values)."""
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(fraction * len(ordered)))) - 1]
