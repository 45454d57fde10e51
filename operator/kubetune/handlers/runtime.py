"""What every handler shares while the operator runs, and the one wrapper every reconcile goes through.

The wrapper gives each kind the same behaviour: one reconcile at a time per object (a spec change and
its pods' events never race), counted and timed in metrics, and API errors turned into a kopf retry
after the configured backoff.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import kopf

from kubetune import metrics
from kubetune.handlers.resync import Reconciler, Resync
from kubetune.k8s.interface import KubeClient, KubeError
from kubetune.settings import OperatorSettings

MEMO_KEY = "runtime"
T = TypeVar("T")


class KeyedLocks:
    """One lock per object, so a FineTuneJob change and its pod events never reconcile it concurrently."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str, str], threading.Lock] = {}

    def lock(self, kind: str, namespace: str, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((kind, namespace, name), threading.Lock())

    def forget(self, kind: str, namespace: str, name: str) -> None:
        with self._guard:
            self._locks.pop((kind, namespace, name), None)


@dataclass
class Runtime:
    """Built once at startup and carried in kopf's memo (kopf copies it shallowly into each object's memo)."""

    settings: OperatorSettings
    kube: KubeClient
    reconcilers: dict[str, Reconciler] = field(default_factory=dict)
    """kind -> reconcile(namespace, name): how the resync loop and child events reach an owner."""
    locks: KeyedLocks = field(default_factory=KeyedLocks)
    resync: Resync | None = None


def runtime_of(memo: kopf.Memo) -> Runtime:
    """The typed runtime from a handler's memo; a handler running before startup finished is a bug."""
    runtime = memo.get(MEMO_KEY)
    if not isinstance(runtime, Runtime):
        raise kopf.PermanentError("the operator runtime is not set up: the startup handler did not run")
    return runtime


def locked_and_metered(runtime: Runtime, kind: str, namespace: str, name: str, sync: Callable[[], T]) -> T:
    """Runs one reconcile serialized per object and counted; API errors become a kopf retry."""
    started = time.monotonic()
    metrics.RECONCILES.labels(kind=kind).inc()
    try:
        with runtime.locks.lock(kind, namespace, name):
            return sync()
    except KubeError as error:
        metrics.RECONCILE_ERRORS.labels(kind=kind).inc()
        raise kopf.TemporaryError(
            f"reconcile of {namespace}/{name}: {error}", delay=runtime.settings.handler_backoff
        ) from None
    finally:
        metrics.RECONCILE_SECONDS.labels(kind=kind).observe(time.monotonic() - started)
