"""How a trainer process ends when Kubernetes stops it, and what it leaves in the termination message.

Kubernetes sends SIGTERM to the container's PID 1 when the pod is deleted, evicted or preempted, or its Job
suspended (which is how Kueue preempts), and SIGKILL `terminationGracePeriodSeconds` later. As PID 1 the
trainer would not even see SIGTERM without a handler, and the grace period would pass doing nothing.

`TerminationRequest` is that handler. Inside the training loop it only records the request:
`StopOnTermination` turns it into a checkpoint and a stop at the next step boundary, agreed by every rank
(saving is collective), when the last save took less than the grace period left; the pipeline then waits
for the checkpoint to reach durable storage and raises `Terminated`. Outside the loop (loading, evaluation,
publishing) there is nothing to save, so the handler raises `Terminated` at once. Either way the process
exits with `TERMINATED_EXIT_CODE`, which the Job's pod failure policy does not count as a failure.

Under torchrun or the DeepSpeed launcher the trainer is not PID 1: `kubetune_trainer.launch` is, and it
touches the stop file (`STOP_FILE_ENV`) instead of signalling the launcher, whose own SIGTERM handling would
kill the workers 30 s later; a watcher thread here turns the file into the same SIGTERM in every worker.
"""

from __future__ import annotations

import _thread
import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from kubetune.api.v1alpha1.pod_contract import (
    RESULT_MESSAGE_PREFIX,
    TERMINATION_LOG_ENV,
    TERMINATION_MESSAGE_LIMIT,
)

log = logging.getLogger(__name__)

DEFAULT_TERMINATION_LOG = "/dev/termination-log"
CONFIG_ERROR_PREFIX = "kubetune-trainer: config error: "
"""The one line a config error leaves on stderr and in the termination log (the operator shows what follows)."""
STOP_FILE_ENV = "KUBETUNE_STOP_FILE"
"""Set by `kubetune_trainer.launch` for the processes it starts: the file whose appearance means SIGTERM."""
SAFETY_SECONDS = 10.0
"""Kept free of the grace period: the exit itself, and the launcher's reaction to it."""
SAVE_MARGIN = 1.5
"""A save is attempted when 1.5x the last save (and upload) fits in what is left of the grace period."""


class Terminated(BaseException):
    """Kubernetes asked the pod to stop; the entrypoint exits with TERMINATED_EXIT_CODE. A BaseException, like
    KeyboardInterrupt: raised from the signal handler anywhere, it must not be swallowed by `except Exception`."""


class TerminationRequest:
    """Records SIGTERM; raises `Terminated` from the handler unless the training loop defers it."""

    def __init__(self, grace_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.grace_seconds = grace_seconds
        self.clock = clock
        self.received_at: float | None = None
        self._deferred = False

    @property
    def requested(self) -> bool:
        return self.received_at is not None

    def remaining(self) -> float:
        """Seconds of the grace period left (all of it before any request)."""
        if self.received_at is None:
            return self.grace_seconds
        return self.grace_seconds - (self.clock() - self.received_at)

    def install(self, environ: dict[str, str] | None = None) -> None:
        """Handle SIGTERM in this (main) thread, and watch the launcher's stop file when there is one."""
        signal.signal(signal.SIGTERM, self.handle)
        stop_file = (environ if environ is not None else os.environ).get(STOP_FILE_ENV)
        if stop_file:
            threading.Thread(target=_watch, args=(Path(stop_file),), name="stop-file", daemon=True).start()

    def handle(self, signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        if self.received_at is None:
            self.received_at = self.clock()
            log.warning("SIGTERM: stopping (grace period %.0f s)", self.grace_seconds)
        if not self._deferred:
            raise Terminated()

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """While training: a request waits for the next step boundary instead of raising."""
        if self.requested:
            raise Terminated()
        self._deferred = True
        try:
            yield
        finally:
            self._deferred = False


def _watch(stop_file: Path, interval: float = 0.5) -> None:
    while not stop_file.exists():
        time.sleep(interval)
    _thread.interrupt_main(signal.SIGTERM)  # runs the SIGTERM handler in the main thread, like the real signal


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on any (one tiny all-reduce; no-op in a single process)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def stop_on_termination(request: TerminationRequest, upload_seconds: Callable[[], float | None]) -> Any:
    """A TrainerCallback: at the first step boundary after SIGTERM (on any rank), save if it fits, then stop.

    It times every save it sees (`on_step_end` with `should_save` to `on_save`) to decide whether one more fits
    in the grace period; the first save is always attempted. `upload_seconds` is the last upload's duration.
    """
    from transformers import TrainerCallback

    class StopOnTermination(TrainerCallback):
        def __init__(self) -> None:
            self.save_seconds: float | None = None
            self.save_started: float | None = None
            self.stopped_at: int | None = None
            self.saved = False

        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            if any_rank(request.requested):
                needed = ((self.save_seconds or 0.0) + (upload_seconds() or 0.0)) * SAVE_MARGIN
                fits = not any_rank(needed > request.remaining() - SAFETY_SECONDS)
                control.should_save = control.should_save or fits
                control.should_evaluate = False
                control.should_training_stop = True
                self.stopped_at, self.saved = state.global_step, control.should_save
                log.warning(
                    "stopping at step %d on SIGTERM; %s",
                    state.global_step,
                    "saving a checkpoint" if self.saved else f"no time to save ({needed:.0f} s needed)",
                )
            if control.should_save:
                self.save_started = time.monotonic()

        def on_save(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            if self.save_started is not None:
                self.save_seconds = time.monotonic() - self.save_started
                self.save_started = None

    return StopOnTermination()


def write_termination_message(text: str, environ: dict[str, str] | None = None) -> None:
    """What the kubelet reports as the container's termination message (it keeps the first 4 KiB)."""
    target = Path((environ if environ is not None else os.environ).get(TERMINATION_LOG_ENV, DEFAULT_TERMINATION_LOG))
    try:
        with target.open("w") as handle:
            handle.write(text[:TERMINATION_MESSAGE_LIMIT])
    except OSError:
        pass  # not in a pod (or not writable): the log has the same line


def result_message(result: dict[str, Any]) -> str:
    """`status.result` as one line under the limit: the fields an Adapter needs always, the rest while they fit."""
    budget = TERMINATION_MESSAGE_LIMIT - len(RESULT_MESSAGE_PREFIX) - 1
    slim = dict(result)
    for optional in ("prepReport", "metrics", "gateMessage"):
        line = json.dumps(slim, separators=(",", ":"), sort_keys=True)
        if len(line.encode()) <= budget:
            break
        slim.pop(optional, None)
    line = json.dumps(slim, separators=(",", ":"), sort_keys=True)
    return f"{RESULT_MESSAGE_PREFIX}{line}\n"
