"""lm-evaluation-harness suites (`evaluation.suites[].lmEval`): standard tasks on the in-memory trained model.

The harness's `HFLM` wraps the model object the trainer already holds (a PEFT model included), so
nothing is saved or reloaded, and `compareToBase` scores the base the same way builtin suites do
(adapter disabled, or base weights reloaded). The suite's score is the mean of one metric over its
tasks; the direction (higher or lower is better) comes from the harness, which knows it per task and
metric (a custom task declares it in its YAML). Tasks under `include` are loaded by the harness's
own TaskManager; data files they name by relative path resolve against that directory, which is why
the evaluation runs with it as the working directory. The task index is built before weights load
(`task_index`, called by the suites' preflight), so an unknown task fails the run in seconds.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetune.api.v1alpha1.training import LmEvalSuite
from kubetune_trainer.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HarnessScore:
    """One harness run: the suite's score, its direction, and the harness's per-task results."""

    score: float
    higher_is_better: bool
    tasks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@contextlib.contextmanager
def working_directory(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@dataclass(frozen=True)
class TaskIndex:
    """The harness's index of a suite's tasks, and the resolved `include` directory they may come from."""

    include: Path | None
    manager: Any


def task_index(settings: LmEvalSuite, include: Path | None) -> TaskIndex:
    """The harness's task index: only `include` when it defines every task (indexing the 14k built-ins takes
    seconds), the built-ins too otherwise; unknown names are a config error before anything is scored."""
    try:
        from lm_eval.tasks import TaskManager
    except ImportError as exc:
        raise ConfigError(
            "evaluation lmEval needs lm-evaluation-harness, which this trainer image lacks (the kubetune[eval] extra)"
        ) from exc

    manager = TaskManager(include_path=str(include), include_defaults=False) if include else None
    if manager is None or not set(settings.tasks) <= set(manager.all_tasks):
        manager = TaskManager(include_path=str(include) if include else None)
    unknown = [name for name in settings.tasks if name not in manager.all_tasks]
    if unknown:
        where = f" or under {include}" if include else ""
        raise ConfigError(
            f"evaluation lmEval.tasks: {', '.join(unknown)} is not an lm-evaluation-harness task{where} "
            "(`lm-eval ls tasks` lists them)"
        )
    return TaskIndex(include=include, manager=manager)


def metric_value(task: str, results: Mapping[str, Any], metric: str) -> float:
    """`metric` of one task's results, under the harness's `METRIC,FILTER` keys (filter `none` preferred)."""
    keys = [k for k in results if k.split(",", 1)[0] == metric and "_stderr" not in k]
    if not keys:
        reported = sorted({k.split(",", 1)[0] for k in results if "," in k and "_stderr" not in k})
        raise ConfigError(
            f"evaluation lmEval.metric: task {task} reports no {metric}; it reports {', '.join(reported)}"
        )
    key = f"{metric},none" if f"{metric},none" in keys else sorted(keys)[0]
    return float(results[key])


def summarize(settings: LmEvalSuite, results: Mapping[str, Any]) -> HarnessScore:
    """Pure: the suite's score from `simple_evaluate`'s results document."""
    values = [metric_value(task, results["results"][task], settings.metric) for task in settings.tasks]
    directions = {
        bool(results.get("higher_is_better", {}).get(task, {}).get(settings.metric, True)) for task in settings.tasks
    }
    if len(directions) > 1:
        raise ConfigError(
            f"evaluation lmEval.metric {settings.metric} is better higher in some tasks and lower in others; "
            "put those tasks in separate suites"
        )
    details = {
        task: {
            "metrics": {k: v for k, v in results["results"][task].items() if isinstance(v, int | float)},
            "n_shot": results.get("n-shot", {}).get(task),
            "version": results.get("versions", {}).get(task),
        }
        for task in settings.tasks
    }
    return HarnessScore(score=sum(values) / len(values), higher_is_better=directions.pop(), tasks=details)


def run_harness(
    model: Any, tokenizer: Any, settings: LmEvalSuite, index: TaskIndex, *, max_length: int
) -> HarnessScore:
    """Score `model` on the suite's tasks with the harness, from the index `task_index` built."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    was_training = model.training
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=settings.batch_size, max_length=max_length)
    try:
        with working_directory(index.include):
            results = simple_evaluate(
                model=lm,
                tasks=list(settings.tasks),
                num_fewshot=settings.num_fewshot,
                limit=settings.limit,
                task_manager=index.manager,
                log_samples=False,
                bootstrap_iters=0,  # stderr by bootstrap takes minutes per metric; closed-form ones still come
            )
    finally:
        model.train(was_training)
    if results is None:  # only on ranks other than 0 in the harness's own distributed mode, which is not used
        raise RuntimeError("lm-evaluation-harness returned no results")
    return summarize(settings, results)
