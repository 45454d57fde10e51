"""Fixtures for every test that trains: the cached tiny model, toy data files and a pipeline runner.

Conftests import the fixtures they need from here (tests/unit/trainer, tests/integration/storage),
so there is one definition of each. Every test of a session shares one tiny model build, so the
transformers import and the model build are paid once, not per test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kubetune_dev.tiny import (
    alpaca_rows,
    kto_rows,
    preference_rows,
    prompt_rows,
    text_rows,
    tiny_model_dir,
    write_jsonl,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return tiny_model_dir()


@pytest.fixture(scope="session")
def data_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One JSONL file per toy format the objectives train on."""
    root = tmp_path_factory.mktemp("data")
    rows = {
        "text": text_rows(),
        "alpaca": alpaca_rows(),
        "preference": preference_rows(),
        "kto": kto_rows(),
        "prompt": prompt_rows(),
    }
    return {name: write_jsonl(root / f"{name}.jsonl", data) for name, data in rows.items()}


@pytest.fixture
def termination_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the entrypoint writes its termination message (a pod's /dev/termination-log)."""
    path = tmp_path / "termination-log"
    monkeypatch.setenv("KUBETUNE_TERMINATION_LOG", str(path))
    return path


@pytest.fixture
def pvc_root(tmp_path: Path) -> Path:
    """Stands in for /mnt/pvc, where the operator mounts each claim."""
    root = tmp_path / "mnt-pvc"
    root.mkdir()
    return root


class LogRecorder:
    """A TrainerCallback (built lazily, so importing this module stays cheap) that keeps every log dict."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        self.logs: list[dict[str, float]] = []
        recorder = self

        class _Callback(TrainerCallback):
            def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **_: Any) -> None:
                if logs:
                    recorder.logs.append({k: float(v) for k, v in logs.items() if isinstance(v, int | float)})

        self.callback = _Callback()

    def series(self, key: str) -> list[float]:
        values = [log[key] for log in self.logs if key in log]
        assert values, f"{key} never logged; keys: {sorted({k for log in self.logs for k in log})}"
        return values


RunJob = Callable[..., tuple[Any, Any, LogRecorder]]


def at_step(step: int, action: Callable[[], Any]) -> Any:
    """Hooks that call `action` at the end of optimizer step `step`, after the trackers logged the step before it
    (a crash or a SIGTERM mid-run)."""
    from transformers import TrainerCallback

    from kubetune_trainer.context import Hooks

    class At(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            if state.global_step == step:
                action()

    return Hooks(before_train=[lambda ctx: ctx.callbacks.append(At())])


def new_pod(tmp: Path) -> None:
    """A replacement pod starts with an empty scratch volume: only the durable store remains (trainer_config's
    layout under `tmp`)."""
    shutil.rmtree(tmp / "checkpoints", ignore_errors=True)
    shutil.rmtree(tmp / "work", ignore_errors=True)


@pytest.fixture
def weights_never_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests of checks that must fail before any weights load: loading them fails the test instead."""
    from kubetune_trainer import pipeline

    def refuse(_ctx: object) -> None:
        raise AssertionError("weights loaded before the check that should have stopped the run")

    monkeypatch.setattr(pipeline, "load_weights", refuse)


@pytest.fixture
def run_job(tmp_path: Path, model_dir: Path) -> RunJob:
    """Run the real pipeline on the tiny model; returns (RunContext, RunResult, LogRecorder)."""
    from kubetune.api.v1alpha1.trainer_config import TrainerConfig
    from kubetune_trainer.context import Hooks, RunContext
    from kubetune_trainer.pipeline import run
    from support.trainer_job import trainer_config

    def _run(data: Path, *, method: str | dict[str, Any] = "lora", hooks: Hooks | None = None, **blocks: Any) -> Any:
        recorder = LogRecorder()
        seen: dict[str, Any] = {}
        hooks = hooks or Hooks()

        def attach(ctx: RunContext) -> None:
            ctx.callbacks.append(recorder.callback)

        def keep(ctx: RunContext, result: Any) -> None:
            seen["ctx"], seen["result"] = ctx, result

        hooks.before_train.insert(0, attach)
        hooks.after_result.append(keep)
        # a fresh root per run: a later run in the same test must not resume from an earlier checkpoint
        root = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
        config = TrainerConfig.model_validate(trainer_config(root, model_dir, data, method, **blocks))
        run(config, hooks=hooks)
        return seen["ctx"], seen["result"], recorder

    return _run
