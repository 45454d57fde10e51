"""Level-based resync without finalizers.

kopf timers put a finalizer on every object (to stop the timer before deletion), so a run could not
be deleted while the operator is down, and finalizer removal could stall behind a running timer.
Instead, watch events record which objects still need attention, and one thread re-reconciles
those every `resync_seconds`. Settled objects (failed, or succeeded and published) are not polled.
The thread runs outside kopf, so kopf's peering pause does not stop it: each pass first asks its `gate`
(`peering.PeeringGate`), and a paused replica skips the pass.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

Reconciler = Callable[[str, str], None]


class Resync:
    """(kind, namespace, name) of unsettled objects, reconciled periodically by a daemon thread."""

    def __init__(
        self, interval: float, reconcilers: dict[str, Reconciler], gate: Callable[[], bool] | None = None
    ) -> None:
        self.interval = interval
        self.reconcilers = reconcilers
        self.gate = gate or (lambda: True)
        self._known: set[tuple[str, str, str]] = set()
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kubetune-resync", daemon=True)

    def track(self, kind: str, namespace: str, name: str, wanted: bool) -> None:
        with self._guard:
            if wanted:
                self._known.add((kind, namespace, name))
            else:
                self._known.discard((kind, namespace, name))

    def tracked(self) -> list[tuple[str, str, str]]:
        with self._guard:
            return sorted(self._known)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.run_once()

    def run_once(self) -> None:
        """One pass: every tracked object, unless the gate says this replica is paused (or cannot tell)."""
        try:
            active = self.gate()
        except Exception as error:  # the thread must outlive an unreachable API server
            log.warning("resync skipped: cannot tell whether this replica is paused: %s", error)
            return
        if not active:
            return
        for kind, namespace, name in self.tracked():
            if self._stop.is_set():
                return
            try:
                self.reconcilers[kind](namespace, name)
            except Exception as error:  # one bad object must not stop the resync of the others
                log.warning("resync of %s %s/%s failed: %s", kind, namespace, name, error)
