"""Fixtures for objective, continual, evaluation and merge tests: tiny model, toy data, a pipeline runner.

Every test here runs in one process and shares one tiny model build, so the transformers import and
the model build are paid once per session, not per test.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

TESTS_ROOT = Path(__file__).resolve().parents[2]
if str(TESTS_ROOT) not in sys.path:
    sys.path.insert(0, str(TESTS_ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

from kubetune_dev.tiny import COLORS, NUMBERS, text_rows, tiny_model_dir, write_jsonl  # noqa: E402


def preference_rows(n: int = 48) -> list[dict[str, str]]:
    """Echo the two colours (chosen) versus an unrelated pair of numbers (rejected)."""
    rows = []
    for i in range(n):
        a, b = COLORS[i % len(COLORS)], COLORS[(i // len(COLORS) + i + 1) % len(COLORS)]
        x, y = NUMBERS[i % len(NUMBERS)], NUMBERS[(i + 5) % len(NUMBERS)]
        rows.append({"prompt": f"repeat {a} {b}", "chosen": f" {a} {b} {a} {b}", "rejected": f" {x} {y} {x} {y}"})
    return rows


def kto_rows(n: int = 48) -> list[dict[str, Any]]:
    rows = []
    for row in preference_rows(n // 2):
        rows.append({"prompt": row["prompt"], "completion": row["chosen"], "label": True})
        rows.append({"prompt": row["prompt"], "completion": row["rejected"], "label": False})
    return rows


def prompt_rows(n: int = 32) -> list[dict[str, str]]:
    """Distinct prompts (prep's exact dedup would otherwise shrink the set below one generation batch)."""
    return [{"prompt": f"count {NUMBERS[i % 6]} {NUMBERS[i % 6 + 1]} {COLORS[i // 6 % len(COLORS)]}"} for i in range(n)]


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return tiny_model_dir()


@pytest.fixture(scope="session")
def data_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("objective-data")
    return {
        "text": write_jsonl(root / "text.jsonl", text_rows()),
        "preference": write_jsonl(root / "preference.jsonl", preference_rows()),
        "kto": write_jsonl(root / "kto.jsonl", kto_rows()),
        "prompt": write_jsonl(root / "prompt.jsonl", prompt_rows()),
    }


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
