"""What every handler shares while the operator runs, and the one wrapper every reconcile goes through.

Handlers and the resync only enqueue (`Runtime.enqueue`); the work queue's workers run `Runtime.process`, which
gives each kind the same behaviour: counted and timed in metrics, and a failure retried after a backoff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import kopf

from kubetune import metrics
from kubetune.handlers.resync import Reconciler, Resync
from kubetune.handlers.workqueue import Key, WorkQueue
from kubetune.k8s.cache import CachedKube
from kubetune.k8s.interface import KubeClient, KubeError, Obj
from kubetune.k8s.writes import AppliedOnce
from kubetune.settings import OperatorSettings

MEMO_KEY = "runtime"
T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Built once at startup and carried in kopf's memo (kopf copies it shallowly into each object's memo)."""

    settings: OperatorSettings
    kube: KubeClient
    reconcilers: dict[str, Reconciler] = field(default_factory=dict)
    """kind -> reconcile(namespace, name), run by the work queue's workers."""
    queue: WorkQueue | None = None
    resync: Resync | None = None
    cache: CachedKube | None = None
    """What the watches delivered, when `kube` reads through it (`observe` feeds it)."""
    applied: AppliedOnce = field(default_factory=AppliedOnce)
    """The namespace identities this process applied (each once)."""

    def observe(self, kind: str, event_type: str | None, body: Obj) -> None:
        """A watch event, put in the read cache before its reconcile is enqueued."""
        if self.cache is not None:
            self.cache.observe(kind, event_type, body)

    def enqueue(self, kind: str, namespace: str, name: str, delay: float = 0.0, first: bool = False) -> None:
        """Reconcile now, or after `delay` seconds unless something enqueues it sooner (at once when no queue runs:
        unit tests drive the runtime without threads); `first`: ahead of the keys waiting."""
        if self.queue is None:
            self.process((kind, namespace, name))
        else:
            self.queue.add((kind, namespace, name), delay, first)

    def enqueuers(self) -> dict[str, Reconciler]:
        """kind -> enqueue(namespace, name), for the resync loop."""

        def enqueuer(kind: str) -> Reconciler:
            return lambda namespace, name: self.enqueue(kind, namespace, name)

        return {kind: enqueuer(kind) for kind in self.reconcilers}

    def process(self, key: Key) -> bool:
        """One reconcile; False (retry after the backoff) when the API server failed it."""
        kind, namespace, name = key
        reconcile = self.reconcilers.get(kind)
        if reconcile is None:
            return True
        try:
            reconcile(namespace, name)
        except KubeError as error:
            log.warning("reconcile of %s %s/%s: %s (retried after a backoff)", kind, namespace, name, error)
            return False
        if self.resync is not None:
            self.resync.reconciled(kind, namespace, name)
        return True


def runtime_of(memo: kopf.Memo) -> Runtime:
    """The typed runtime from a handler's memo; a handler running before startup finished is a bug."""
    runtime = memo.get(MEMO_KEY)
    if not isinstance(runtime, Runtime):
        raise kopf.PermanentError("the operator runtime is not set up: the startup handler did not run")
    return runtime


def metered(kind: str, sync: Callable[[], T]) -> T:
    """Runs one reconcile, counted and timed; a failure is counted and raised."""
    started = time.monotonic()
    metrics.RECONCILES.labels(kind=kind).inc()
    try:
        return sync()
    except Exception:
        metrics.RECONCILE_ERRORS.labels(kind=kind).inc()
        raise
    finally:
        metrics.RECONCILE_SECONDS.labels(kind=kind).observe(time.monotonic() - started)
