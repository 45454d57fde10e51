"""The work queue: one reconcile per key at a time, bursts coalesced, nothing missed, failures retried with backoff."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from kubetune.handlers.workqueue import Key, WorkQueue

pytestmark = pytest.mark.unit

A: Key = ("FineTuneJob", "ml", "a")
B: Key = ("FineTuneJob", "ml", "b")
C: Key = ("FineTuneJob", "ml", "c")


def wait_for(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


class Recorder:
    """A process function that records calls and can be held inside a call until released."""

    def __init__(self, fail: int = 0) -> None:
        self.calls: list[Key] = []
        self.running: dict[Key, int] = {}
        self.overlap = False
        self.fail = fail
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()
        self._guard = threading.Lock()

    def __call__(self, key: Key) -> bool:
        with self._guard:
            self.calls.append(key)
            self.running[key] = self.running.get(key, 0) + 1
            self.overlap |= self.running[key] > 1
        self.entered.set()
        self.hold.wait(10)
        with self._guard:
            self.running[key] -= 1
            failed = self.fail > 0
            self.fail -= 1
        return not failed


@pytest.fixture
def started() -> Iterator[Callable[..., WorkQueue]]:
    queues: list[WorkQueue] = []

    def start(
        process: Callable[[Key], bool],
        workers: int = 4,
        backoff: float = 0.05,
        gate: Callable[[], bool] | None = None,
        hold: float = 1.0,
    ) -> WorkQueue:
        queue = WorkQueue(process, workers, backoff, gate=gate, hold=hold)
        queues.append(queue)
        return queue

    yield start
    for queue in queues:
        queue.stop()


def test_a_burst_for_one_key_waiting_in_the_queue_is_one_reconcile(started: Callable[..., WorkQueue]) -> None:
    record = Recorder()
    queue = started(record)
    for _ in range(50):
        queue.add(A)
    queue.add(B)
    assert queue.pending() == 2
    queue.start()
    wait_for(lambda: len(record.calls) == 2 and queue.pending() == 0)
    time.sleep(0.05)
    assert sorted(record.calls) == [A, B]


def test_an_event_during_a_reconcile_brings_exactly_one_more_and_never_two_at_once(
    started: Callable[..., WorkQueue],
) -> None:
    record = Recorder()
    record.hold.clear()
    queue = started(record, workers=8)
    queue.start()
    queue.add(A)
    assert record.entered.wait(5)
    for _ in range(20):  # arrive while A is being reconciled: not lost, not run concurrently
        queue.add(A)
    record.hold.set()
    wait_for(lambda: len(record.calls) == 2)
    time.sleep(0.05)
    assert record.calls == [A, A]
    assert not record.overlap


def test_other_keys_are_not_held_up_by_a_slow_one(started: Callable[..., WorkQueue]) -> None:
    slow = threading.Event()
    done: list[Key] = []

    def process(key: Key) -> bool:
        if key == A:
            slow.wait(10)
        done.append(key)
        return True

    queue = started(process, workers=2)
    queue.start()
    queue.add(A)
    queue.add(B)
    wait_for(lambda: B in done)
    assert A not in done
    slow.set()
    wait_for(lambda: A in done)


def test_a_failure_is_retried_with_a_growing_backoff_until_it_succeeds(started: Callable[..., WorkQueue]) -> None:
    record = Recorder(fail=3)
    times: list[float] = []

    def process(key: Key) -> bool:
        times.append(time.monotonic())
        return record(key)

    queue = started(process, backoff=0.05)
    queue.start()
    queue.add(A)
    wait_for(lambda: len(record.calls) == 4)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert gaps[0] >= 0.05
    assert gaps[1] >= 0.1
    assert gaps[2] >= 0.2
    time.sleep(0.3)
    assert len(record.calls) == 4  # succeeded: no more retries
    assert queue.pending() == 0


def test_an_exception_is_logged_and_retried_and_the_worker_survives(
    started: Callable[..., WorkQueue], caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[Key] = []

    def process(key: Key) -> bool:
        calls.append(key)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return True

    queue = started(process, workers=1, backoff=0.01)
    queue.start()
    queue.add(A)
    wait_for(lambda: len(calls) == 2)
    assert "a bug" in caplog.text
    queue.add(B)
    wait_for(lambda: calls[-1] == B)


def test_an_event_supersedes_a_pending_retry(started: Callable[..., WorkQueue]) -> None:
    record = Recorder(fail=1)
    queue = started(record, backoff=0.5)
    queue.start()
    queue.add(A)
    wait_for(lambda: len(record.calls) == 1 and queue.pending() == 1)  # the retry, due in 0.5 s
    queue.add(A)
    wait_for(lambda: len(record.calls) == 2)
    time.sleep(0.7)
    assert len(record.calls) == 2  # the superseded retry did not run as well


def test_stop_lets_the_running_reconcile_finish_and_takes_no_more(started: Callable[..., WorkQueue]) -> None:
    record = Recorder()
    record.hold.clear()
    queue = started(record, workers=1)
    queue.start()
    queue.add(A)
    assert record.entered.wait(5)
    queue.add(B)
    threading.Timer(0.1, record.hold.set).start()
    queue.stop(timeout=5)
    assert record.calls == [A]


def test_delayed_adds_are_batched_and_an_immediate_add_does_not_wait(started: Callable[..., WorkQueue]) -> None:
    record = Recorder()
    queue = started(record)
    queue.start()
    began = time.monotonic()
    for _ in range(10):  # a burst of child events
        queue.add(A, delay=0.2)
    queue.add(B, delay=5)
    queue.add(B)  # the owner's own change: now
    wait_for(lambda: B in record.calls)
    assert time.monotonic() - began < 2
    wait_for(lambda: A in record.calls)
    assert time.monotonic() - began >= 0.2
    time.sleep(0.3)
    assert sorted(record.calls) == [A, B]


def test_a_key_added_first_goes_ahead_of_those_waiting(started: Callable[..., WorkQueue]) -> None:
    record = Recorder()
    queue = started(record, workers=1)
    waiting = [("FineTuneJob", "ml", f"w{i}") for i in range(5)]
    for key in waiting:
        queue.add(key)
    queue.add(A, first=True)
    queue.add(B, first=True)  # behind A: first come, first served among them too
    queue.add(waiting[2], first=True)  # already waiting: keeps its place, is not run twice
    assert queue.pending() == 7
    queue.start()
    wait_for(lambda: len(record.calls) == 7 and queue.pending() == 0)
    assert record.calls == [A, B, *waiting]


def test_a_paused_replica_holds_its_keys_and_reconciles_them_once_active(started: Callable[..., WorkQueue]) -> None:
    record = Recorder(fail=1)
    active = threading.Event()
    asked: list[bool] = []

    def gate() -> bool:
        asked.append(active.is_set())
        return active.is_set()

    queue = started(record, gate=gate, hold=0.02)
    queue.start()
    queue.add(A)
    queue.add(B)
    wait_for(lambda: len(asked) >= 10)  # asked again and again: held, not dropped
    assert record.calls == []
    assert queue.pending() == 2
    active.set()
    wait_for(lambda: sorted(record.calls) == [A, B])
    wait_for(lambda: len(record.calls) == 3)  # the one failure comes back after the backoff, not a longer one
    assert queue.pending() == 0


def test_a_gate_that_cannot_tell_holds_the_keys_and_the_workers_survive(started: Callable[..., WorkQueue]) -> None:
    record = Recorder()
    reachable = threading.Event()

    def gate() -> bool:
        if not reachable.is_set():
            raise OSError("connection refused")
        return True

    queue = started(record, workers=1, gate=gate, hold=0.02)
    queue.start()
    queue.add(A)
    time.sleep(0.2)
    assert record.calls == []
    reachable.set()
    wait_for(lambda: record.calls == [A])


def test_idle_means_nothing_waiting_scheduled_or_running(started: Callable[..., WorkQueue]) -> None:
    """The resync gives free memory back only then: trimming the heap stalls busy workers' allocations."""
    recorder = Recorder()
    recorder.hold.clear()
    queue = started(recorder)
    assert queue.idle()
    queue.start()
    queue.add(A)
    assert recorder.entered.wait(5)
    assert not queue.idle(), "being reconciled"
    recorder.hold.set()
    wait_for(queue.idle)
    queue.add(B, delay=60)
    assert not queue.idle(), "scheduled"


def test_a_key_added_first_keeps_its_place_when_held_by_a_paused_replica() -> None:
    """A new object's user sees no status until its first reconcile: held while this replica was paused, it still
    goes ahead of the keys that waited beside it once it is ready again."""
    queue = WorkQueue(Recorder(), workers=1, backoff=1.0, hold=0.0)  # not started: taken by hand, in order
    queue.add(A)
    queue.add(B, first=True)
    taken = queue._next()
    assert taken == B
    queue._held(B)
    queue.add(C)
    assert queue._next() == B
    queue._done(B, succeeded=True)
    assert [queue._next(), queue._next()] == [A, C]
