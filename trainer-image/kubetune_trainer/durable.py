"""Durable checkpoints for one run: copy each to durable storage in the background, resume from the newest.

The Trainer writes `checkpoint-N/` into the pod's checkpoint directory as usual. At `on_save` every rank
waits for the others (so the folder holds every local rank's files), then the first process of each node
hard-links the folder into an outbox (the Trainer's rotation may delete the original while it uploads) and
hands it to `CheckpointSync`, whose thread uploads it while training goes on. When the store is down the
upload is retried with backoff (1 s doubling to a minute), and a newer checkpoint replaces one still
waiting: training never blocks on storage, and the newest checkpoint lands once the store is back. After
each complete checkpoint, node 0 deletes those beyond `keepLast` from the store.

On start, rank 0 picks the newest complete checkpoint on the store, every node downloads it into its
checkpoint directory, and the Trainer resumes from there. On SIGTERM the last checkpoint is uploaded
within the grace period before the process exits. After a successful run the run's folder is deleted
(`checkpointing.storage.deleteOnSuccess`). Without a durable location (`kubetune run` of a file) the
Trainer resumes from its own checkpoint directory, as it always did.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubetune_trainer.checkpoint_store import CHECKPOINT_PREFIX, CheckpointStore
from kubetune_trainer.context import RunContext
from kubetune_trainer.termination import SAFETY_SECONDS, Terminated, TerminationRequest, stop_on_termination

log = logging.getLogger(__name__)

BACKOFF_SECONDS = (1.0, 60.0)
"""First retry delay of a failed upload, and the cap it doubles up to."""
FINAL_UPLOAD_SECONDS = 300.0
"""How long a finished run waits for its last upload when it keeps its checkpoints."""


def node_rank() -> int:
    """torchrun's GROUP_RANK, else the pod's NODE_RANK (the completion index), else 0."""
    return int(os.environ.get("GROUP_RANK") or os.environ.get("NODE_RANK") or 0)


def first_on_node() -> bool:
    return int(os.environ.get("LOCAL_RANK", "0")) == 0


def snapshot(source: Path, outbox: Path) -> Path:
    """Hard links of every file of `source` under `outbox/<name>` (a copy where links are not possible)."""
    target = outbox / source.name
    shutil.rmtree(target, ignore_errors=True)
    for path in sorted(source.rglob("*")):
        destination = target / path.relative_to(source)
        if path.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, destination)
        except OSError:
            shutil.copy2(path, destination)
    return target


class CheckpointSync:
    """One uploader thread per node; it holds at most one checkpoint waiting (the newest)."""

    def __init__(
        self,
        store: CheckpointStore,
        *,
        node: int,
        nodes: int,
        keep_last: int,
        on_complete: Callable[[int], None] | None = None,
        backoff: tuple[float, float] = BACKOFF_SECONDS,
    ) -> None:
        self.store = store
        self.node, self.nodes, self.keep_last = node, nodes, keep_last
        self.on_complete = on_complete
        self.backoff = backoff
        self.last_upload_seconds: float | None = None
        self.synced_step: int | None = None
        self.failures = 0
        self._waiting: tuple[int, Path] | None = None
        self._busy = False
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="checkpoint-sync", daemon=True)
        self._thread.start()

    def submit(self, step: int, folder: Path) -> None:
        with self._cond:
            if self._waiting is not None:
                log.info("checkpoint %d replaced by %d before it was uploaded", self._waiting[0], step)
                shutil.rmtree(self._waiting[1], ignore_errors=True)
            self._waiting = (step, folder)
            self._cond.notify_all()

    def drain(self, timeout: float) -> bool:
        """Waits until nothing is waiting or uploading; False when `timeout` passed first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._waiting is not None or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        """Stops after the current upload; what is still waiting is dropped."""
        with self._cond:
            self._closed = True
            if self._waiting is not None:
                shutil.rmtree(self._waiting[1], ignore_errors=True)
                self._waiting = None
            self._cond.notify_all()
        self._thread.join(timeout=60)

    def _loop(self) -> None:
        delay = self.backoff[0]
        while True:
            with self._cond:
                while self._waiting is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                assert self._waiting is not None
                step, folder = self._waiting
                self._waiting, self._busy = None, True
            ok = self._upload(step, folder)
            with self._cond:
                self._busy = False
                if ok:
                    shutil.rmtree(folder, ignore_errors=True)
                    delay = self.backoff[0]
                elif self._waiting is None and not self._closed:
                    self._waiting = (step, folder)  # retry it, unless a newer one arrives meanwhile
                    self._cond.wait(delay)
                    delay = min(delay * 2, self.backoff[1])
                else:
                    shutil.rmtree(folder, ignore_errors=True)
                self._cond.notify_all()

    def _upload(self, step: int, folder: Path) -> bool:
        started = time.monotonic()
        try:
            self.store.upload(folder, step, node=self.node, nodes=self.nodes)
        except Exception as error:  # the store is down or refusing: training goes on, the upload is retried
            self.failures += 1
            log.warning("checkpoint %d: upload to %s failed, will retry: %s", step, self.store.uri, _short(error))
            return False
        self.last_upload_seconds = time.monotonic() - started
        log.info("checkpoint %d uploaded to %s in %.1f s", step, self.store.uri, self.last_upload_seconds)
        if self.node == 0:
            self._completed(step)
        return True

    def _completed(self, step: int) -> None:
        """Node 0, after its upload: report the checkpoint once every node's part is there, prune older ones.
        A store that fails here only delays both to the next checkpoint; the upload itself has landed."""
        try:
            if self.nodes > 1 and step not in self.store.complete_steps():
                return  # another node's part is still on its way; the next checkpoint is reported instead
            self.synced_step = step
            if self.on_complete is not None:
                self.on_complete(step)
            deleted = self.store.prune(self.keep_last)
        except Exception as error:
            log.warning("checkpoint %d: cannot list or prune %s: %s", step, self.store.uri, _short(error))
            return
        if deleted:
            log.info("deleted checkpoints %s from %s (keepLast %d)", deleted, self.store.uri, self.keep_last)


def _short(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error)[:300]}"


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def _broadcast(value: int | None) -> int | None:
    """Rank 0's value on every rank."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    box: list[int | None] = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def upload_on_save(sync: CheckpointSync | None, outbox: Path) -> Any:
    """A TrainerCallback: after every save, all ranks meet, then each node's first process hands it over."""
    from transformers import TrainerCallback

    class UploadOnSave(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            _barrier()
            if sync is None:
                return
            folder = Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{state.global_step}"
            if folder.is_dir():
                sync.submit(state.global_step, snapshot(folder, outbox))

    return UploadOnSave()


class DurableCheckpoints:
    """The run's durable store (None without one) and this node's uploader (None on the other processes)."""

    def __init__(self, ctx: RunContext, store: CheckpointStore | None) -> None:
        self.ctx = ctx
        self.store = store
        self.sync: CheckpointSync | None = None

    @classmethod
    def open(cls, ctx: RunContext) -> DurableCheckpoints:
        """Fails fast (a config error) on a location that can never be written, before any data or model loads."""
        uri = ctx.config.runtime.checkpoint_uri
        store = CheckpointStore.open(uri, ctx.paths.pvc_root) if uri else None
        if store is not None and first_on_node():
            store.probe(node_rank())
        return cls(ctx, store)

    def attach(self, trainer: Any, termination: TerminationRequest) -> Any:
        """Adds the upload and SIGTERM callbacks to the Trainer; returns the SIGTERM one (it knows if it stopped)."""
        if self.store is not None and first_on_node():
            self.sync = CheckpointSync(
                self.store,
                node=node_rank(),
                nodes=self.ctx.config.runtime.nodes,
                keep_last=self.ctx.spec.checkpointing.keep_last,
                on_complete=self.ctx.extras.get("on_checkpoint"),
            )
        trainer.add_callback(upload_on_save(self.sync, self.ctx.paths.work_dir / "checkpoint-outbox"))
        stop = stop_on_termination(termination, lambda: self.sync.last_upload_seconds if self.sync else None)
        trainer.add_callback(stop)
        return stop

    def resume_point(self, trainer: Any) -> str | None:
        """The local folder the Trainer resumes from: the newest complete durable checkpoint, downloaded."""
        checkpoint_dir = self.ctx.paths.checkpoint_dir
        if self.store is None:
            if not checkpoint_dir.is_dir():
                return None
            from transformers.trainer_utils import get_last_checkpoint

            last: str | None = get_last_checkpoint(str(checkpoint_dir))  # type: ignore[no-untyped-call]
            if last:
                log.info("resuming from %s", last)
            return last
        step = _broadcast(max(self.store.complete_steps(), default=None) if trainer.is_world_process_zero() else None)
        if step is None:
            log.info("no complete checkpoint on %s: starting at step 0", self.store.uri)
            return None
        folder = checkpoint_dir / f"{CHECKPOINT_PREFIX}{step}"
        if first_on_node():
            partial = checkpoint_dir / f".{CHECKPOINT_PREFIX}{step}.download"
            shutil.rmtree(partial, ignore_errors=True)
            shutil.rmtree(folder, ignore_errors=True)
            self.store.download(step, partial)
            partial.rename(folder)
        _barrier()
        log.info("resuming from checkpoint %d of %s", step, self.store.uri)
        return str(folder)

    def stop_for_termination(self, termination: TerminationRequest, *, saved: bool) -> None:
        """SIGTERM stopped training: let the checkpoint just saved reach the store in the time left, then stop."""
        if saved and self.sync is not None:
            left = termination.remaining() - SAFETY_SECONDS
            if self.sync.drain(max(left, 0.0)):
                log.warning("checkpoint %s is on %s; exiting", self.sync.synced_step, self.store_uri)
            else:
                log.warning("the last checkpoint did not reach %s within the grace period", self.store_uri)
        raise Terminated()

    @property
    def store_uri(self) -> str:
        return self.store.uri if self.store is not None else str(self.ctx.paths.checkpoint_dir)

    def finish_uploads(self, trainer: Any) -> None:
        """The artifact is published, so checkpoints are no longer needed to finish: stop uploading (keeping
        them, the last upload may finish first), and meet so no node uploads while rank 0 deletes them."""
        if self.sync is not None:
            if not self.ctx.spec.checkpointing.storage.delete_on_success:
                self.sync.drain(FINAL_UPLOAD_SECONDS)
            self.sync.close()
        _barrier()

    def after_success(self, trainer: Any) -> None:
        """Deletes the run's checkpoints from the store (rank 0), unless the spec keeps them."""
        if self.store is None or not trainer.is_world_process_zero():
            return
        if not self.ctx.spec.checkpointing.storage.delete_on_success:
            log.info("checkpoints kept on %s (checkpointing.storage.deleteOnSuccess: false)", self.store.uri)
            return
        try:
            self.store.delete_all()
        except Exception as error:  # the run succeeded; a leftover folder is only storage
            log.warning("could not delete the checkpoints on %s: %s", self.store.uri, _short(error))
        else:
            log.info("deleted the run's checkpoints from %s", self.store.uri)
