"""Operator metrics (prometheus-client) with low-cardinality labels only.

Counters and histograms never carry a per-object label: namespace, phase, reason and method are
bounded sets, object names are not. The phase gauges are recomputed from a small in-memory index
of the objects this process has seen, so they equal "how many are in each phase right now" (and, from
creation timestamps, "since when the oldest one exists": the queue-wait alert needs it).
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from kubetune.api.resources import KUBETUNE_RESOURCES

REGISTRY = CollectorRegistry(auto_describe=True)
DURATION_BUCKETS = (30, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400, 259200, float("inf"))

FINETUNEJOBS = Gauge(
    "kubetune_finetunejobs", "FineTuneJobs by namespace and phase.", ["namespace", "phase"], registry=REGISTRY
)
OLDEST_CREATED = Gauge(
    "kubetune_finetunejobs_oldest_creation_timestamp_seconds",
    "Creation time (unix seconds) of the oldest FineTuneJob in each namespace and phase: time() minus it is "
    "the longest a run in that phase has existed, e.g. the longest queue wait for phase Pending or Queued.",
    ["namespace", "phase"],
    registry=REGISTRY,
)
ADAPTERS = Gauge("kubetune_adapters", "Adapters by namespace and phase.", ["namespace", "phase"], registry=REGISTRY)
TRANSITIONS = Counter(
    "kubetune_finetunejob_transitions", "Phase transitions of FineTuneJobs.", ["phase", "reason"], registry=REGISTRY
)
FAILURES = Counter(
    "kubetune_finetunejob_failures", "FineTuneJobs that failed, by reason.", ["reason"], registry=REGISTRY
)
TIME_TO_RUNNING = Histogram(
    "kubetune_finetunejob_time_to_running_seconds",
    "From creation to the first Running phase.",
    ["method"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
DURATION = Histogram(
    "kubetune_finetunejob_duration_seconds",
    "From creation to Succeeded or Failed.",
    ["method", "phase"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
RECONCILES = Counter("kubetune_reconciles", "Reconciles by kind.", ["kind"], registry=REGISTRY)
RECONCILE_ERRORS = Counter("kubetune_reconcile_errors", "Reconciles that raised, by kind.", ["kind"], registry=REGISTRY)
RECONCILE_SECONDS = Histogram("kubetune_reconcile_duration_seconds", "Reconcile latency.", ["kind"], registry=REGISTRY)
for _kind in KUBETUNE_RESOURCES:  # 0 from the start, not absent until the first error: the error-ratio alert
    RECONCILE_ERRORS.labels(kind=_kind)  # and the dashboard then read a series a healthy operator really serves


class PhaseIndex:
    """(namespace, name) -> (phase, creation time) for one kind, exported as gauges of counts and, when
    given `oldest`, of the earliest creation time per (namespace, phase)."""

    def __init__(self, gauge: Gauge, oldest: Gauge | None = None) -> None:
        self._gauge = gauge
        self._oldest = oldest
        self._phases: dict[tuple[str, str], tuple[str, float | None]] = {}
        self._lock = threading.Lock()

    def set(self, namespace: str, name: str, phase: str | None, created: str | None = None) -> None:
        with self._lock:
            if phase is None:
                self._phases.pop((namespace, name), None)
            else:
                self._phases[(namespace, name)] = (phase, _unix(created))
            counts = Tally((ns, ph) for (ns, _), (ph, _) in self._phases.items())
            self._gauge.clear()  # series that went to zero disappear instead of lingering
            for (ns, ph), count in counts.items():
                self._gauge.labels(namespace=ns, phase=ph).set(count)
            if self._oldest is not None:
                self._export_oldest(self._oldest)

    def _export_oldest(self, gauge: Gauge) -> None:
        oldest: dict[tuple[str, str], float] = {}
        for (ns, _), (ph, created) in self._phases.items():
            if created is not None:
                oldest[(ns, ph)] = min(created, oldest.get((ns, ph), created))
        gauge.clear()
        for (ns, ph), created in oldest.items():
            gauge.labels(namespace=ns, phase=ph).set(created)


FINETUNEJOB_PHASES = PhaseIndex(FINETUNEJOBS, OLDEST_CREATED)
ADAPTER_PHASES = PhaseIndex(ADAPTERS)


def _unix(stamp: str | None) -> float | None:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else None


def _seconds(start: str | None, end: str | None) -> float | None:
    begin, finish = _unix(start), _unix(end)
    if begin is None or finish is None:
        return None
    return max(finish - begin, 0.0)


def record_finetunejob(
    *,
    namespace: str,
    name: str,
    method: str,
    before: str | None,
    after: str,
    reason: str,
    created: str | None,
    start_time: str | None,
    completion_time: str | None,
) -> None:
    """Called once per reconcile with its outcome; counts only real transitions."""
    FINETUNEJOB_PHASES.set(namespace, name, after, created)
    if before == after:
        return
    TRANSITIONS.labels(phase=after, reason=reason or after).inc()
    if after == "Failed":
        FAILURES.labels(reason=reason or "Unknown").inc()
    if after == "Running" and before not in ("Running", "Succeeded", "Failed"):
        waited = _seconds(created, start_time)
        if waited is not None:
            TIME_TO_RUNNING.labels(method=method).observe(waited)
    if after in ("Succeeded", "Failed"):
        took = _seconds(created, completion_time)
        if took is not None:
            DURATION.labels(method=method, phase=after).observe(took)
