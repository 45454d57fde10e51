"""Level-based resync without finalizers.

kopf timers put a finalizer on every object (to stop the timer before deletion), so a run could not
be deleted while the operator is down, and finalizer removal could stall behind a running timer.
Instead, watch events record which objects still need attention, and one thread re-reconciles
those every `resync_seconds`. Settled objects (failed, or succeeded and published) are not polled, and neither
is an object reconciled (for any reason) within the last `resync_seconds`: the resync is for objects nothing
else brought up, and under load it would otherwise add a reconcile of every busy object per interval.
The thread runs outside kopf, so kopf's peering pause does not stop it: each pass first asks its `gate`
(`peering.PeeringGate`), and a paused replica skips the pass.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

Reconciler = Callable[[str, str], None]


class Resync:
    """(kind, namespace, name) of unsettled objects, reconciled periodically by a daemon thread."""

    def __init__(
        self,
        interval: float,
        reconcilers: dict[str, Reconciler],
        gate: Callable[[], bool] | None = None,
        after_pass: Callable[[], None] | None = None,
    ) -> None:
        """`after_pass` runs after each pass, paused or not (the operator's: give free memory back when idle)."""
        self.interval = interval
        self.reconcilers = reconcilers
        self.gate = gate or (lambda: True)
        self.after_pass = after_pass or (lambda: None)
        self._known: dict[tuple[str, str, str], float] = {}
        """Tracked keys -> when they were last reconciled (monotonic; -inf before the first)."""
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kubetune-resync", daemon=True)

    def track(self, kind: str, namespace: str, name: str, wanted: bool) -> None:
        with self._guard:
            if wanted:
                self._known.setdefault((kind, namespace, name), -math.inf)
            else:
                self._known.pop((kind, namespace, name), None)

    def reconciled(self, kind: str, namespace: str, name: str) -> None:
        """A reconcile of a tracked object finished: its next resync is one interval from now."""
        with self._guard:
            if (kind, namespace, name) in self._known:
                self._known[(kind, namespace, name)] = time.monotonic()

    def tracked(self) -> list[tuple[str, str, str]]:
        with self._guard:
            return sorted(self._known)

    def due(self) -> list[tuple[str, str, str]]:
        """Tracked keys not reconciled within the last interval."""
        now = time.monotonic()
        with self._guard:
            return sorted(key for key, last in self._known.items() if now - last >= self.interval)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.run_once()
            try:
                self.after_pass()
            except Exception as error:  # the thread must outlive it
                log.warning("after the resync pass: %s", error)

    def run_once(self) -> None:
        """One pass: every tracked object not reconciled within the interval, unless the gate says this replica is
        paused (or cannot tell)."""
        try:
            active = self.gate()
        except Exception as error:  # the thread must outlive an unreachable API server
            log.warning("resync skipped: cannot tell whether this replica is paused: %s", error)
            return
        if not active:
            return
        for kind, namespace, name in self.due():
            if self._stop.is_set():
                return
            try:
                self.reconcilers[kind](namespace, name)
            except Exception as error:  # one bad object must not stop the resync of the others
                log.warning("resync of %s %s/%s failed: %s", kind, namespace, name, error)
