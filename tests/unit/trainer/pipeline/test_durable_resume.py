"""Durable checkpoints with the real pipeline: a replacement pod (a fresh checkpoint directory) resumes from the
newest complete checkpoint on durable storage, and SIGTERM saves one at the current step before the process exits.

The durable store is a file:// folder here (a mounted claim in a pod); S3 is in tests/integration/storage and
tests/e2e/test_recovery.py runs the same through the operator, with real pods stopped and killed.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from kubetune.api.v1alpha1.trainer_config import TERMINATED_EXIT_CODE, TrainerConfig
from kubetune_trainer import __main__ as entrypoint
from kubetune_trainer.checkpoint_store import CheckpointStore
from kubetune_trainer.context import Hooks
from kubetune_trainer.pipeline import run
from kubetune_trainer.termination import Terminated, TerminationRequest
from support.trainer_fixtures import at_step, new_pod
from support.trainer_job import trainer_config

pytestmark = [pytest.mark.unit, pytest.mark.trainer]


def steps_seen() -> tuple[list[int], Any]:
    from transformers import TrainerCallback

    seen: list[int] = []

    class Steps(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            seen.append(state.global_step)

    return seen, Steps()


def config(tmp: Path, model_dir: Path, data: Path, **checkpointing: Any) -> TrainerConfig:
    wire = trainer_config(
        tmp,
        model_dir,
        data,
        "lora",
        job={"checkpointing": {"everySteps": 2, "keepLast": 2} | checkpointing},
        runtime={"checkpointUri": f"file://{tmp}/durable/uid-1/"},
    )
    return TrainerConfig.model_validate(wire)


def test_a_new_pod_resumes_from_the_newest_complete_checkpoint(
    tmp_path: Path, model_dir: Path, data_files: dict[str, Path]
) -> None:
    cfg = config(tmp_path, model_dir, data_files["text"])
    store = CheckpointStore.open(f"file://{tmp_path}/durable/uid-1/", tmp_path)

    def crash() -> None:
        raise RuntimeError("the node went away")

    with pytest.raises(RuntimeError, match="the node went away"):
        run(cfg, hooks=at_step(5, crash))
    assert store.complete_steps() == [2, 4]
    (Path(store.root) / "checkpoint-4" / "adapter_model.safetensors").write_bytes(b"truncated")
    assert store.complete_steps() == [2]

    new_pod(tmp_path)
    seen, callback = steps_seen()
    result = run(cfg, hooks=Hooks(before_train=[lambda ctx: ctx.callbacks.append(callback)]))
    assert seen == [3, 4, 5, 6, 7, 8], "resumed from checkpoint 2: the truncated checkpoint 4 is never picked"
    assert result.metrics["train.steps"] == 8
    assert not Path(store.root).exists(), "deleteOnSuccess (the default) removes the run's checkpoints"


def test_sigterm_saves_at_the_current_step_and_the_next_pod_resumes_there(
    tmp_path: Path, model_dir: Path, data_files: dict[str, Path]
) -> None:
    cfg = config(
        tmp_path, model_dir, data_files["text"], everySteps=100, keepLast=1, storage={"deleteOnSuccess": False}
    )
    store = CheckpointStore.open(f"file://{tmp_path}/durable/uid-1/", tmp_path)
    termination = TerminationRequest(grace_seconds=60)
    with pytest.raises(Terminated):
        run(cfg, hooks=at_step(3, termination.handle), termination=termination)
    assert store.complete_steps() == [3], "the only checkpoint is the one saved on SIGTERM"
    assert not (tmp_path / "out" / "job").exists(), "a stopped run publishes nothing"

    new_pod(tmp_path)
    seen, callback = steps_seen()
    run(cfg, hooks=Hooks(before_train=[lambda ctx: ctx.callbacks.append(callback)]))
    assert seen == [4, 5, 6, 7, 8], "no step is lost"
    assert store.complete_steps() == [8], "kept (deleteOnSuccess: false), keepLast 1"


def test_sigterm_without_time_to_save_stops_at_once(
    tmp_path: Path, model_dir: Path, data_files: dict[str, Path]
) -> None:
    cfg = config(tmp_path, model_dir, data_files["text"], everySteps=100)
    termination = TerminationRequest(grace_seconds=5)  # less than the safety margin: no save fits
    with pytest.raises(Terminated):
        run(cfg, hooks=at_step(2, termination.handle), termination=termination)
    assert CheckpointStore.open(f"file://{tmp_path}/durable/uid-1/", tmp_path).complete_steps() == []


def test_the_entrypoint_exits_143_on_a_real_sigterm(
    tmp_path: Path, model_dir: Path, data_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(tmp_path, model_dir, data_files["text"], everySteps=100)
    path = tmp_path / "trainer.json"
    path.write_text(
        json.dumps(cfg.model_copy(update={"runtime": cfg.runtime.model_copy(update={"metrics_port": 0})}).to_wire())
    )
    monkeypatch.setattr(entrypoint, "default_hooks", lambda: at_step(2, lambda: os.kill(os.getpid(), signal.SIGTERM)))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        code = entrypoint.main(["--config", str(path)])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == TERMINATED_EXIT_CODE
    assert CheckpointStore.open(f"file://{tmp_path}/durable/uid-1/", tmp_path).complete_steps() == [2]
