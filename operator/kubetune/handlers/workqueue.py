"""The work queue every reconcile goes through, as controller-runtime's: watch events, child events and the resync
only add keys; a fixed pool of worker threads reconciles them.

A key is reconciled by one worker at a time, and waits in the queue at most once: a burst of events for one object
(its Job and pods change several times while it starts) becomes one reconcile, and an event that arrives while the
object is being reconciled brings one more reconcile afterwards, so no change is missed. Workers never block on
each other, and no thread of kopf's executor waits on a lock. A failed reconcile comes back after an exponential
backoff (base, 2 x base, ... up to `max_backoff`), reset by its next success.

`add(key, delay)` batches: the key becomes ready after `delay` seconds unless something adds it sooner, so the
several Job and pod events of one change (a pod is scheduled, starts, its Job counts it) cost one reconcile.
`add(key, first=True)` puts it ahead of the other keys waiting (behind earlier `first` ones: first come, first
served, so none starves in a burst of creates): an object never reconciled yet (its user sees no status at all
until then) does not wait behind the child events of hundreds of running ones.

The workers are threads outside kopf, so kopf's peering pause does not stop them: a key taken while the `gate`
(`peering.PeeringGate`) says this replica is paused, or cannot tell, is held, and comes back after `hold`
seconds, without counting as a failure and keeping its place ahead of the others if it was added `first`. A replica
that kopf pauses with keys still queued (enqueued during the moments before the peers settled, or just before a
higher-priority peer appeared) reconciles none of them until it is active again, and then none is lost.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from kubetune import metrics

log = logging.getLogger(__name__)

Key = tuple[str, str, str]
"""(kind, namespace, name)"""


class WorkQueue:
    def __init__(
        self,
        process: Callable[[Key], bool],
        workers: int,
        backoff: float,
        max_backoff: float = 300.0,
        *,
        gate: Callable[[], bool] | None = None,
        hold: float = 1.0,
    ) -> None:
        """`process(key)` reconciles one key and returns False when it should be retried; `gate()` says whether
        this replica may reconcile now (always, without one)."""
        self.process = process
        self.workers = workers
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.gate = gate or (lambda: True)
        self.hold = hold
        self._cond = threading.Condition()
        self._ready: deque[Key] = deque()
        self._first: deque[Key] = deque()
        """Keys added with `first`, taken before those in `_ready` (each deque in the order added)."""
        self._added: dict[Key, float] = {}
        """Keys in `_ready` or `_first`, with when they were added (for the wait-time metric)."""
        self._processing: set[Key] = set()
        self._dirty: set[Key] = set()
        """Keys added again while being processed."""
        self._scheduled: dict[Key, float] = {}
        """Keys scheduled for later (a retry, or a batched add), with when they become ready."""
        self._delayed: list[tuple[float, int, Key]] = []
        self._order = itertools.count()
        self._failures: dict[Key, int] = {}
        self._taken_first: set[Key] = set()
        """Keys being reconciled that were taken from `_first`."""
        self._held_first: set[Key] = set()
        """Keys held while paused that go back into `_first` when they are ready again."""
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._work, name=f"kubetune-worker-{i}", daemon=True) for i in range(workers)
        ]

    def add(self, key: Key, delay: float = 0.0, first: bool = False) -> None:
        with self._cond:
            if delay <= 0:
                self._add(key, first)
            elif key in self._processing:
                self._dirty.add(key)
            elif key not in self._added:
                self._schedule(key, time.monotonic() + delay)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stops taking keys; reconciles in progress finish (each worker is joined for up to `timeout`)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))

    def pending(self) -> int:
        """Keys waiting: ready, or scheduled for later."""
        with self._cond:
            return len(self._first) + len(self._ready) + len(self._scheduled)

    def idle(self) -> bool:
        """Nothing waiting, scheduled or being reconciled."""
        with self._cond:
            return not (self._first or self._ready or self._scheduled or self._processing)

    def _add(self, key: Key, first: bool = False) -> None:
        self._scheduled.pop(key, None)  # ready now: a later schedule is moot
        if key in self._held_first:
            self._held_first.discard(key)
            first = True
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._added:
            self._added[key] = time.monotonic()
            (self._first if first else self._ready).append(key)
            metrics.WORKQUEUE_DEPTH.set(len(self._first) + len(self._ready))
            self._cond.notify()

    def _promote_due(self) -> float | None:
        """Moves retries that are due into the ready queue; returns the seconds until the next one."""
        now = time.monotonic()
        while self._delayed:
            due, _, key = self._delayed[0]
            if self._scheduled.get(key) != due:  # superseded: added since, or scheduled again
                heapq.heappop(self._delayed)
                continue
            if due > now:
                return due - now
            heapq.heappop(self._delayed)
            self._add(key)
        return None

    def _next(self) -> Key | None:
        with self._cond:
            while not self._stopped:
                wait = self._promote_due()
                if self._first or self._ready:
                    taken_first = bool(self._first)
                    key = (self._first or self._ready).popleft()
                    if taken_first:
                        self._taken_first.add(key)
                    metrics.WORKQUEUE_DEPTH.set(len(self._first) + len(self._ready))
                    metrics.WORKQUEUE_WAIT_SECONDS.observe(time.monotonic() - self._added.pop(key))
                    self._processing.add(key)
                    return key
                self._cond.wait(wait)
            return None

    def _done(self, key: Key, succeeded: bool) -> None:
        with self._cond:
            self._processing.discard(key)
            self._taken_first.discard(key)
            if succeeded:
                self._failures.pop(key, None)
            if key in self._dirty:
                self._dirty.discard(key)
                self._add(key)
            elif not succeeded:
                failures = self._failures[key] = self._failures.get(key, 0) + 1
                self._schedule(key, time.monotonic() + min(self.backoff * 2 ** (failures - 1), self.max_backoff))

    def _schedule(self, key: Key, due: float) -> None:
        """Ready at `due`, or at the earlier time it is already scheduled for."""
        if key in self._scheduled and self._scheduled[key] <= due:
            return
        self._scheduled[key] = due
        heapq.heappush(self._delayed, (due, next(self._order), key))
        self._cond.notify()

    def _may_work(self) -> bool:
        try:
            return self.gate()
        except Exception as error:  # an unreachable API server must not kill the worker
            log.warning("holding the work queue: cannot tell whether this replica is paused: %s", error)
            return False

    def _held(self, key: Key) -> None:
        """Back in `hold` seconds (sooner if added again), its failure count untouched."""
        with self._cond:
            self._processing.discard(key)
            self._dirty.discard(key)
            if key in self._taken_first:
                self._taken_first.discard(key)
                self._held_first.add(key)
            self._schedule(key, time.monotonic() + self.hold)

    def _work(self) -> None:
        while (key := self._next()) is not None:
            if not self._may_work():
                self._held(key)
                continue
            try:
                succeeded = self.process(key)
            except Exception:  # a bug in one reconcile must not kill the worker
                log.exception("reconcile of %s %s/%s failed", *key)
                succeeded = False
            self._done(key, succeeded)
